"""The Fig. 3 phase-diagram figure: final train and validation accuracy over (T, A)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _grid(rows: list[dict], key: str):
    As = sorted({r["A"] for r in rows})
    Ts = sorted({r["T"] for r in rows})
    Z = np.full((len(As), len(Ts)), np.nan)
    for r in rows:
        if r[key] is not None:
            Z[As.index(r["A"]), Ts.index(r["T"])] = r[key]
    return np.asarray(Ts, float), np.asarray(As, float), Z


ANNOTATE_MAX = 64  # grids with at most this many points are drawn as annotated heat maps


def limits(rows: list[dict], unit_scale: bool = False) -> tuple[float, float]:
    """The colour scale shared by both panels: fitted to the plotted means (0-1 with unit_scale)."""
    vals = [r[k] for r in rows for k in ("train_acc_mean", "val_acc_mean") if r[k] is not None]
    if unit_scale or not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-3:  # a flat grid: a small window around the value
        lo, hi = lo - 0.01, hi + 0.01
    return lo, hi


def plot(path: Path, rows: list[dict], title: str, unit_scale: bool = False) -> None:
    """Fig. 3 style: final train and validation accuracy over (T, A), A on the y axis, T on the x
    axis. Small grids (<= ANNOTATE_MAX points, or a single A or T) are heat maps with each
    cell's mean, std and seed count written in it; larger ones filled contours (log T when T spans
    a decade) with the grid points marked. The colour scale is fitted to the data, shared by both
    panels (0-1 with unit_scale). Points where every seed diverged are crossed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmin, vmax = limits(rows, unit_scale)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
    levels = np.linspace(vmin, vmax, 21)
    for ax, key, name in zip(axes, ("train_acc_mean", "val_acc_mean"), ("train", "validation")):
        T, A, Z = _grid(rows, key)
        _, _, S = _grid(rows, key.replace("_mean", "_std"))
        heat = len(T) * len(A) <= ANNOTATE_MAX or len(T) == 1 or len(A) == 1 or np.isfinite(Z).sum() < 4
        if heat:  # evenly spaced cells, labelled with the grid values
            im = ax.imshow(np.ma.masked_invalid(Z), origin="lower", aspect="auto", cmap="viridis",
                           vmin=vmin, vmax=vmax)
            ax.set_xticks(range(len(T)), [f"{t:g}" for t in T])
            ax.set_yticks(range(len(A)), [f"{a:g}" for a in A])
            n = {(r["A"], r["T"]): r["n"] for r in rows}
            for i, a in enumerate(A):
                for j, t in enumerate(T):
                    if np.isfinite(Z[i, j]):
                        spread = f"\n±{S[i, j]:.2f}" if n[a, t] > 1 and np.isfinite(S[i, j]) else ""
                        dark = (Z[i, j] - vmin) / max(vmax - vmin, 1e-12) < 0.6
                        ax.text(j, i, f"{Z[i, j]:.2f}{spread}", ha="center", va="center", fontsize=8,
                                color="w" if dark else "k")
            dead = [(T.tolist().index(r["T"]), A.tolist().index(r["A"])) for r in rows if r["n"] == 0]
        else:
            im = ax.contourf(T, A, np.ma.masked_invalid(Z), levels=levels, cmap="viridis", extend="both")
            TT, AA = np.meshgrid(T, A)
            ax.plot(TT.ravel(), AA.ravel(), "k.", ms=2)
            if T.max() / T.min() >= 10:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xticks(T, [f"{t:g}" for t in T])
            if len(A) <= 12:
                ax.set_yticks(A, [f"{a:g}" for a in A])
            dead = [(r["T"], r["A"]) for r in rows if r["n"] == 0]
        if dead:
            ax.plot(*zip(*dead), "rx", ms=8, label="all seeds diverged")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("T (steps)")
        ax.set_ylabel("A")
        ax.set_title(f"final {name} accuracy")
        fig.colorbar(im, ax=ax, label=f"mean accuracy ({'0-1' if unit_scale else 'fitted to the data'})")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
