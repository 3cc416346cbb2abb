"""The Fig. 3 phase-diagram figure: final train and validation accuracy over (T, A), and the paired
difference of every cell to its baseline; one row of panels per value of the other keys a sweep
varies; an error-bar chart where A and T do not vary."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dlf.analysis.phase_table import cell_keys

ANNOTATE_MAX = 64  # grids with at most this many points are drawn as annotated heat maps


def _facets(rows: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """(values of the other keys, their rows) in the rows' order."""
    keys = cell_keys(rows[0]) if rows else []
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple((k, r[k]) for k in keys), []).append(r)
    return list(out.items())


def _grid(rows: list[dict], key: str, As=None, Ts=None):
    As = sorted({r["A"] for r in rows}) if As is None else As
    Ts = sorted({r["T"] for r in rows}) if Ts is None else Ts
    Z = np.full((len(As), len(Ts)), np.nan)
    for r in rows:
        if r.get(key) is not None:
            Z[As.index(r["A"]), Ts.index(r["T"])] = r[key]
    return np.asarray(Ts, float), np.asarray(As, float), Z


def limits(rows: list[dict], unit_scale: bool = False) -> tuple[float, float]:
    """The colour scale shared by the accuracy panels: fitted to the plotted means (0-1 with unit_scale)."""
    vals = [r[k] for r in rows for k in ("train_acc_mean", "val_acc_mean") if r[k] is not None]
    if unit_scale or not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-3:  # a flat grid: a small window around the value
        lo, hi = lo - 0.01, hi + 0.01
    return lo, hi


def _label(facet: tuple) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in facet)


def _accuracy(ax, fig, rows, key, name, vmin, vmax, unit_scale, matplotlib):
    T, A, Z = _grid(rows, key)
    _, _, H = _grid(rows, key.replace("_mean", "_ci95"))
    heat = len(T) * len(A) <= ANNOTATE_MAX or len(T) == 1 or len(A) == 1 or np.isfinite(Z).sum() < 4
    if heat:  # evenly spaced cells, labelled with the grid values, mean and 95% interval
        im = ax.imshow(np.ma.masked_invalid(Z), origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(T)), [f"{t:g}" for t in T])
        ax.set_yticks(range(len(A)), [f"{a:g}" for a in A])
        for i in range(len(A)):
            for j in range(len(T)):
                if np.isfinite(Z[i, j]):
                    spread = f"\n±{H[i, j]:.2f}" if np.isfinite(H[i, j]) else ""
                    dark = (Z[i, j] - vmin) / max(vmax - vmin, 1e-12) < 0.6
                    ax.text(j, i, f"{Z[i, j]:.2f}{spread}", ha="center", va="center", fontsize=8,
                            color="w" if dark else "k")
        dead = [(T.tolist().index(r["T"]), A.tolist().index(r["A"])) for r in rows if r["n"] == 0]
    else:
        im = ax.contourf(T, A, np.ma.masked_invalid(Z), levels=np.linspace(vmin, vmax, 21), cmap="viridis",
                         extend="both")
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
    ax.set_title(f"final {name} accuracy")
    fig.colorbar(im, ax=ax, label=f"mean accuracy ({'0-1' if unit_scale else 'fitted to the data'}; ±: 95% CI)")


def _difference(ax, fig, rows, comparison, metric):
    """The paired difference to the baseline over (T, A); cells whose 95% interval contains 0 hatched."""
    from matplotlib.patches import Rectangle

    As, Ts = sorted({r["A"] for r in rows}), sorted({r["T"] for r in rows})
    T, A, D = _grid(comparison, "diff", As, Ts)
    _, _, LO = _grid(comparison, "lo", As, Ts)
    _, _, HI = _grid(comparison, "hi", As, Ts)
    span = float(np.nanmax(np.abs(D))) if np.isfinite(D).any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(D), origin="lower", aspect="auto", cmap="RdBu", vmin=-span, vmax=span)
    ax.set_xticks(range(len(T)), [f"{t:g}" for t in T])
    ax.set_yticks(range(len(A)), [f"{a:g}" for a in A])
    for i in range(len(A)):
        for j in range(len(T)):
            if not np.isfinite(D[i, j]):
                ax.text(j, i, "base" if As[i] == 1.0 else "", ha="center", va="center", fontsize=7, color="0.4")
                continue
            unsure = not (np.isfinite(LO[i, j]) and (LO[i, j] > 0 or HI[i, j] < 0))
            if unsure:  # the interval contains 0 (or there is none): no effect shown
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.5", lw=0))
            ax.text(j, i, f"{D[i, j]:+.2f}", ha="center", va="center", fontsize=8)
    base = comparison[0]["baseline"] if comparison else "the baseline"
    ax.set_title(f"{metric}: paired difference to {base}")
    fig.colorbar(im, ax=ax, label="mean paired difference (hatched: 95% CI holds 0)")


def _chart(axes, rows, comparison, facets):
    """A and T do not vary: one error bar per cell (mean ± 95% CI), and the differences."""
    labels = [_label(f) or f"A={rs[0]['A']:g} T={rs[0]['T']}" for f, rs in facets]
    x = np.arange(len(facets))
    for ax, key, name in zip(axes[:2], ("train_acc", "val_acc"), ("train", "validation")):
        m = [rs[0][f"{key}_mean"] if rs[0][f"{key}_mean"] is not None else np.nan for _, rs in facets]
        h = [rs[0][f"{key}_ci95"] or 0.0 for _, rs in facets]
        ax.errorbar(x, m, yerr=h, fmt="o", capsize=4)
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_title(f"final {name} accuracy (mean ± 95% CI)")
    if len(axes) > 2:
        cells = {tuple(r[k] for k, _ in f): r for f, _ in facets for r in comparison if all(r[k] == v for k, v in f)}
        d = [cells.get(tuple(v for _, v in f), {}) for f, _ in facets]
        axes[2].errorbar(x, [c.get("diff", np.nan) for c in d], yerr=[c.get("ci95") or 0.0 for c in d], fmt="o",
                         capsize=4, color="C3")
        axes[2].axhline(0, color="0.5", lw=1)
        axes[2].set_xticks(x, labels, rotation=30, ha="right")
        axes[2].set_title(f"paired difference to {comparison[0]['baseline'] if comparison else 'the baseline'}")


def plot(path: Path, rows: list[dict], title: str, unit_scale: bool = False, comparison: list[dict] | None = None,
         reading: str | None = None, metric: str = "val_acc") -> None:
    """Fig. 3 style: final train and validation accuracy over (T, A), A on the y axis, T on the x
    axis, and (with `comparison`, compare.csv rows) the paired difference of `metric` to the
    baseline, hatched where its 95% interval contains 0. Small grids (<= ANNOTATE_MAX points, or a
    single A or T) are heat maps with each cell's mean and 95% interval written in it; larger ones
    filled contours (log T when T spans a decade) with the grid points marked. One row of panels
    per value of the other keys a sweep varies; where A and T do not vary, error bars per cell.
    The colour scale is fitted to the data, shared by the accuracy panels (0-1 with unit_scale).
    Points where every seed diverged are crossed; `reading` is written under the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparison = [c for c in (comparison or []) if c["metric"] == metric]
    facets = _facets(rows)
    ncol = 3 if comparison else 2
    chart = len(facets) > 1 and all(len(rs) == 1 for _, rs in facets)
    nrow = 1 if chart else len(facets)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.6 * ncol, 4.3 * nrow + (0.4 if reading else 0)),
                             constrained_layout=True, squeeze=False)
    vmin, vmax = limits(rows, unit_scale)
    if chart:
        _chart(axes[0], rows, comparison, facets)
    for r, (facet, frows) in enumerate([] if chart else facets):
        for c, (key, name) in enumerate((("train_acc_mean", "train"), ("val_acc_mean", "validation"))):
            _accuracy(axes[r, c], fig, frows, key, name, vmin, vmax, unit_scale, matplotlib)
        if comparison:
            fc = [x for x in comparison if all(x[k] == v for k, v in facet)]
            _difference(axes[r, 2], fig, frows, fc, metric)
        for ax in axes[r]:
            ax.set_xlabel("T (steps)")
            ax.set_ylabel("A" if not facet else f"A ({_label(facet)})")
    fig.suptitle(title if not reading else f"{title}\n{reading}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
