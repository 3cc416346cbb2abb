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


def plot(path: Path, rows: list[dict], title: str) -> None:
    """Fig. 3 style: final train and validation accuracy over (T, A), A on the y axis, T on the x
    axis (log scale when T spans a decade), filled contours from 0 to 1 with the grid points
    marked; points where every seed diverged are crossed. Falls back to a colour map when the
    grid has a single A or T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
    levels = np.linspace(0.0, 1.0, 21)
    for ax, key, name in zip(axes, ("train_acc_mean", "val_acc_mean"), ("train", "validation")):
        T, A, Z = _grid(rows, key)
        if len(T) > 1 and len(A) > 1 and np.isfinite(Z).sum() >= 4:
            im = ax.contourf(T, A, np.ma.masked_invalid(Z), levels=levels, cmap="viridis", extend="neither")
        else:
            im = ax.pcolormesh(_edges(T), _edges(A), np.ma.masked_invalid(Z), cmap="viridis", vmin=0, vmax=1)
        TT, AA = np.meshgrid(T, A)
        ax.plot(TT.ravel(), AA.ravel(), "k.", ms=2)
        dead = [(r["T"], r["A"]) for r in rows if r["n"] == 0]
        if dead:
            ax.plot(*zip(*dead), "rx", ms=6, label="all seeds diverged")
            ax.legend(loc="upper right", fontsize=8)
        if len(T) > 1 and T.max() / T.min() >= 10:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(T, [f"{t:g}" for t in T])
        if len(A) <= 12:
            ax.set_yticks(A, [f"{a:g}" for a in A])
        ax.set_xlabel("T (steps)")
        ax.set_ylabel("A")
        ax.set_title(f"final {name} accuracy")
        fig.colorbar(im, ax=ax, ticks=np.linspace(0, 1, 6))
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _edges(v: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (for pcolormesh)."""
    if len(v) == 1:
        return np.array([v[0] * 0.9, v[0] * 1.1]) if v[0] else np.array([-0.5, 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
