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


def dynamics(path: Path, rows: list[dict], gamma_dense: np.ndarray, zoom_steps: int,
             off_step: int | None, title: str, steps_per_epoch: int | None = None) -> None:
    """dynamics.png: Gamma_i(t) over the whole run and its first `zoom_steps`, F per seed, and
    accuracies (mean +- std over seeds); a dashed line where the oscillations stop. gamma_dense is
    (steps+1, C): Gamma at every step, so the period is drawn without aliasing. F is drawn at the
    log points and, where the rows carry it (full-batch runs), as the band between the smallest
    and largest F of each interval, so the oscillation shows whatever the sampling. Mini-batch
    runs (steps_per_epoch) are drawn over epochs."""
    unit = steps_per_epoch or 1
    xlabel = "epoch" if steps_per_epoch else "step"
    steps = np.array([r["step"] for r in rows]) / unit
    t = np.arange(gamma_dense.shape[0]) / unit
    C = gamma_dense.shape[1]
    fig, axes = plt.subplots(2, 2, figsize=(11 if C <= 4 else 12.5, 7), constrained_layout=True)
    zoom = zoom_steps / unit
    for ax, sub in ((axes[0, 0], "whole run"), (axes[0, 1], f"first {zoom:g} {xlabel}s")):
        for i in range(C):
            ax.plot(t, gamma_dense[:, i], lw=0.8, label=f"class {i}")
        ax.set(xlabel=xlabel, ylabel=r"$\Gamma_i(t)$", title=sub)
    axes[0, 1].set_xlim(0, max(1 / unit, min(zoom, t[-1])))
    off = None if off_step is None else off_step / unit
    if off is not None and off <= t[-1]:
        for ax in (axes[0, 0], axes[1, 0], axes[1, 1]):
            ax.axvline(off, color="k", ls="--", lw=0.8)
        axes[0, 0].text(off, 1.0, " oscillations off", rotation=90, va="bottom", ha="right", fontsize=7)
    if C <= 4:
        axes[0, 0].legend(fontsize=8, loc="upper right")
    else:  # many classes: one legend beside the panels, not over the curves
        axes[0, 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1, title="class",
                          title_fontsize=7, labels=[str(i) for i in range(C)])
    ax = axes[1, 0]
    loss, lo, hi = _per_seed(rows, "loss"), _per_seed(rows, "loss_min"), _per_seed(rows, "loss_max")
    band = np.isfinite(lo).any()
    for j in range(loss.shape[1]):
        line, = ax.plot(steps, loss[:, j], lw=0.6, alpha=0.7)
        if band:  # the range over the interval ending at each log point
            ax.fill_between(steps, lo[:, j], hi[:, j], step="pre", color=line.get_color(), alpha=0.2, lw=0)
    bottom = np.nanmin(np.concatenate([loss, lo])) if band else np.nanmin(loss, initial=np.inf)
    top = np.nanmax(np.concatenate([loss, hi]) if band else loss, initial=-np.inf)
    if bottom > 0 and top / bottom > 10:
        ax.set_yscale("log")
    what = "F at log points; band: min-max of F in each interval" if band else "F at log points"
    ax.set(xlabel=xlabel, ylabel="F (one colour per seed)", title=f"dynamical loss ({what})")
    ax.title.set_fontsize(9)
    ax = axes[1, 1]
    _band(ax, steps, [r["train_acc"] for r in rows], "train", "C0")
    _band(ax, steps, [r["val_acc"] for r in rows], "validation", "C1")
    ax.set(xlabel=xlabel, ylabel="accuracy (mean ± std over seeds)", ylim=(0, 1.02), title="accuracy")
    ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
