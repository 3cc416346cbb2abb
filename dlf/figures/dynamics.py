"""Figures written next to a run's metrics."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _band(ax, steps, values, label, color):
    v = np.array([[np.nan if x is None else x for x in row] for row in values], dtype=float)
    with np.errstate(all="ignore"):
        mean, std = np.nanmean(v, axis=1), np.nanstd(v, axis=1)
    ax.plot(steps, mean, color=color, label=label)
    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def _per_seed(rows: list[dict], key: str) -> np.ndarray:
    """(rows, seeds) of a per-seed metric; NaN where null or absent (the start row has no range)."""
    n = len(rows[0]["loss"])
    return np.array([[np.nan if x is None else x for x in r.get(key, [None] * n)] for r in rows], dtype=float)


# One layout for every run, as constrained layout places a typical one (a two-line accuracy title, the
# legends beside and below): computing it per figure is paid by every run (BENCHMARKS.md, setup-costs).
# tests/test_figures.py::test_no_text_of_the_dynamics_figure_is_cut_or_overlaps holds it to the extremes.
FIGSIZE = (12.5, 7.5)
MARGINS = dict(left=0.06, right=0.905, bottom=0.115, top=0.915, wspace=0.17, hspace=0.36)
ENVELOPE_CYCLES = 20  # more cycles than this in the whole-run panel: each cycle's min-max, not every wiggle


def _envelope(g: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres, min, max) of g over consecutive windows of `period` steps (a last partial one too)."""
    starts = np.arange(0, g.shape[0], period)
    mn = np.array([g[s:s + period].min() for s in starts])
    mx = np.array([g[s:s + period].max() for s in starts])
    return starts + np.minimum(period, g.shape[0] - starts) / 2, mn, mx


def dynamics(path: Path, rows: list[dict], gamma_dense: np.ndarray, zoom_steps: int,
             off_step: int | None, title: str, steps_per_epoch: int | None = None, period: int | None = None,
             seeds: list[int] | None = None, layout: str = "fixed") -> None:
    """dynamics.png: Gamma_i(t) over the whole run and its first `zoom_steps`, F, and accuracies;
    a dashed line where the oscillations stop. gamma_dense is (steps+1, C): Gamma at every step.
    Over more than ENVELOPE_CYCLES cycles (C periods of `period` steps: each class emphasised once)
    the whole-run panel draws each cycle's min-max of Gamma_i (the envelope), not every oscillation. F: the first seed
    highlighted, with the band between the smallest and largest F of each interval where the
    rows carry it (full-batch runs), so the oscillation shows whatever the sampling; with several
    seeds also their median at the log points and the range over all of them. Legends sit beside
    or below the panels, never over the data. Mini-batch runs (steps_per_epoch) are drawn over
    epochs, and their titles count the epochs the run has. layout: "fixed" (MARGINS) or
    "constrained" (matplotlib's layout engine: adapts to unusual content at a cost,
    BENCHMARKS.md section setup-costs)."""
    unit = steps_per_epoch or 1
    xlabel = "epoch" if steps_per_epoch else "step"
    steps = np.array([r["step"] for r in rows]) / unit
    t = np.arange(gamma_dense.shape[0]) / unit
    C = gamma_dense.shape[1]
    if layout not in ("fixed", "constrained"):
        raise ValueError(f"layout={layout!r} is not allowed; expected fixed or constrained")
    fig, axes = plt.subplots(2, 2, figsize=FIGSIZE, layout=None if layout == "fixed" else "constrained")
    if layout == "fixed":
        fig.subplots_adjust(**MARGINS)  # no layout engine: its cost would be paid by every run
    zoom = min(zoom_steps / unit, t[-1])
    cycle = C * period if period else 0  # every class is emphasised once per cycle of C periods
    n_cycles = gamma_dense.shape[0] / cycle if cycle else 0
    ax = axes[0, 0]
    if n_cycles > ENVELOPE_CYCLES:
        for i in range(C):
            x, mn, mx = _envelope(gamma_dense[:, i], cycle)
            ax.fill_between(x / unit, mn, mx, color=f"C{i % 10}", alpha=0.25, lw=0, step="mid")
            ax.plot(x / unit, mx, color=f"C{i % 10}", lw=0.8)
        ax.set_title(f"whole run: min-max of each cycle ({n_cycles:.0f} cycles of {C} x T={period} steps)")
    else:
        for i in range(C):
            ax.plot(t, gamma_dense[:, i], lw=0.8, color=f"C{i % 10}")
        ax.set_title("whole run")
    ax.set(xlabel=xlabel, ylabel=r"$\Gamma_i(t)$")
    ax = axes[0, 1]
    for i in range(C):
        ax.plot(t, gamma_dense[:, i], lw=0.8, color=f"C{i % 10}", label=str(i))
    ax.set(xlabel=xlabel, ylabel=r"$\Gamma_i(t)$", title=f"first {zoom:g} {xlabel}s",
           xlim=(0, max(1 / unit, zoom)))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="class", title_fontsize=7,
              ncol=1 if C <= 12 else 2)
    off = None if off_step is None else off_step / unit
    if off is not None and off <= t[-1]:
        for a in (axes[0, 0], axes[1, 0], axes[1, 1]):
            a.axvline(off, color="k", ls="--", lw=0.8)
        axes[0, 0].text(off, 1.0, " oscillations off", rotation=90, va="bottom", ha="right", fontsize=7)
    _loss_panel(axes[1, 0], rows, steps, xlabel, seeds)
    ax = axes[1, 1]
    _band(ax, steps, [r["train_acc"] for r in rows], "train", "C0")
    _band(ax, steps, [r["val_acc"] for r in rows], "validation", "C1")
    every = int(rows[1]["step"] - rows[0]["step"]) if len(rows) > 1 else 0
    phases = cycle and every and not steps_per_epoch and every % cycle
    ax.set(xlabel=xlabel, ylabel="accuracy (mean ± std over seeds)", ylim=(0, 1.02),
           title="accuracy at the log points" + (f"\n(every {every} steps, not a multiple of the {cycle}-step cycle: "
                                                 "the points fall at different phases)" if phases else ""))
    ax.title.set_fontsize(9 if phases else 10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, **({"y": 0.985} if layout == "fixed" else {}))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _loss_panel(ax, rows: list[dict], steps: np.ndarray, xlabel: str, seeds: list[int] | None) -> None:
    loss, lo, hi = _per_seed(rows, "loss"), _per_seed(rows, "loss_min"), _per_seed(rows, "loss_max")
    band = np.isfinite(lo).any()
    n = loss.shape[1]
    name = seeds[0] if seeds else 0
    low, high = (np.fmin(lo, loss), np.fmax(hi, loss)) if band else (loss, loss)
    with np.errstate(all="ignore"):
        if n > 1:
            ax.fill_between(steps, np.nanmin(low, axis=1), np.nanmax(high, axis=1), step="pre" if band else None,
                            color="0.6", alpha=0.25, lw=0, label=f"range of all {n} seeds")
            ax.plot(steps, np.nanmedian(loss, axis=1), color="k", lw=1.0, label=f"median of {n} seeds")
    if band:
        ax.fill_between(steps, lo[:, 0], hi[:, 0], step="pre", color="C3", alpha=0.3, lw=0,
                        label=f"seed {name}: min-max of F in each interval")
    ax.plot(steps, loss[:, 0], color="C3", lw=0.8, label=f"seed {name} at the log points")
    bottom = np.nanmin(low, initial=np.inf)
    top = np.nanmax(high, initial=-np.inf)
    if bottom > 0 and top / bottom > 10:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel="F", title="dynamical loss F")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
