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


def dynamics(path: Path, rows: list[dict], gamma_dense: np.ndarray, zoom_steps: int,
             off_step: int | None, title: str) -> None:
    """dynamics.png: Gamma_i(t) over the whole run and its first `zoom_steps`, F per seed, and
    accuracies (mean +- std over seeds); a dashed line where the oscillations stop. gamma_dense is
    (steps+1, C): Gamma at every step, so the period is drawn without aliasing."""
    steps = np.array([r["step"] for r in rows])
    t = np.arange(gamma_dense.shape[0])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for ax, sub in ((axes[0, 0], "whole run"), (axes[0, 1], f"first {zoom_steps} steps")):
        for i in range(gamma_dense.shape[1]):
            ax.plot(t, gamma_dense[:, i], lw=0.8, label=f"class {i}")
        ax.set(xlabel="step", ylabel=r"$\Gamma_i(t)$", title=sub)
    axes[0, 1].set_xlim(0, max(1, min(zoom_steps, t[-1])))
    if off_step is not None and off_step <= t[-1]:
        for ax in (axes[0, 0], axes[1, 0], axes[1, 1]):
            ax.axvline(off_step, color="k", ls="--", lw=0.8)
        axes[0, 0].text(off_step, 1.0, " oscillations off", rotation=90, va="bottom", ha="right", fontsize=7)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    ax = axes[1, 0]
    loss = np.array([[np.nan if x is None else x for x in r["loss"]] for r in rows], dtype=float)
    ax.plot(steps, loss, lw=0.6, alpha=0.6)
    lo, hi = np.nanmin(loss, initial=np.inf), np.nanmax(loss, initial=-np.inf)
    if lo > 0 and hi / lo > 10:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="F (one line per seed)", title="dynamical loss")
    ax = axes[1, 1]
    _band(ax, steps, [r["train_acc"] for r in rows], "train", "C0")
    _band(ax, steps, [r["val_acc"] for r in rows], "validation", "C1")
    ax.set(xlabel="step", ylabel="accuracy (mean ± std over seeds)", ylim=(0, 1.02), title="accuracy")
    ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
