"""Figures of the probes (paper Fig. 4 and 5), drawn from host numpy arrays."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BINS = 1200  # columns of the min/max envelope over the whole run: about one per pixel at 110 dpi


def envelope(x: np.ndarray, y: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as a polyline through each bin's min and max, so a period-2 oscillation stays a
    filled band when 70 000 steps are drawn in a thousand pixels. Short inputs pass through."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if y.size <= 2 * bins:
        return x, y
    k = -(-y.size // bins)
    pad = -y.size % k
    xb = np.concatenate([x, np.full(pad, np.nan)]).reshape(-1, k)
    yb = np.concatenate([y, np.full(pad, np.nan)]).reshape(-1, k)
    with warnings.catch_warnings():  # all-NaN bins (NaN stretches of a probe) stay NaN: a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        xc, lo, hi = np.nanmean(xb, 1), np.nanmin(yb, 1), np.nanmax(yb, 1)
    return np.repeat(xc, 2), np.column_stack([lo, hi]).ravel()


def step_diff(steps: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Delta F(t) = F(t) - F(t-1) aligned with F; NaN where the previous step was not recorded."""
    steps, F = np.asarray(steps), np.asarray(F, np.float64)
    d = np.full(F.shape, np.nan)
    consecutive = np.diff(steps) == 1
    d[1:][consecutive] = np.diff(F)[consecutive]
    return d


def zoom_window(onsets: Sequence[int], ends: Sequence[int], first_step: int, last_step: int,
                margin_frac: float = 0.25, min_margin: int = 20) -> tuple[int, int] | None:
    """Steps (start, end) around the first cascade: the first episode plus every later one that
    begins within a margin of the cascade's end so far, padded by that margin (a quarter of the
    cascade, at least `min_margin`) and clipped to the run. None without an onset."""
    if len(onsets) == 0:
        return None
    s, e = int(onsets[0]), int(ends[0])
    margin = lambda: max(min_margin, int(margin_frac * (e - s)))  # noqa: E731
    for o, f in zip(onsets[1:], ends[1:]):
        if o > e + margin():
            break
        e = max(e, int(f))
    m = margin()
    return max(first_step, s - m), min(last_step, e + m)


def _markers(ax, onsets, ends):
    """Green dashed at onsets, red dashed at ends (the paper's colours), full panel height."""
    tr = ax.get_xaxis_transform()
    ax.vlines(onsets, 0, 1, transform=tr, colors="tab:green", ls="--", lw=0.6, label="onset")
    ax.vlines(ends, 0, 1, transform=tr, colors="tab:red", ls="--", lw=0.6, label="end")


def _symlog(ax, a: np.ndarray) -> None:
    """Symlog y, linear below the median |Delta F| (the quiet descent), labelled decades above it
    (at most three per sign, so the labels near 0 do not collide)."""
    lo = np.floor(np.log10(np.median(a))) if a.size else -8.0
    ax.set_yscale("symlog", linthresh=10.0**lo)
    if a.size and a.max() > 10.0**(lo + 1):
        k = np.arange(lo + 1, np.ceil(np.log10(a.max())) + 1)
        dec = 10.0 ** k[:: -(-k.size // 3)]
        ax.set_yticks(np.concatenate([-dec[::-1], [0.0], dec]))


def _column(axes, d: dict, window: tuple[int, int] | None, bins: int | None) -> None:
    """Draw the six panels into `axes`: the whole run (window None, enveloped to `bins`) or the
    per-step slice window = (start, end)."""
    def cut(x, *ys):
        x = np.asarray(x)
        keep = slice(None) if window is None else (x >= window[0]) & (x <= window[1])
        return (x[keep], *(np.asarray(y)[keep] for y in ys))

    def trace(ax, x, y, **kw):
        return ax.plot(*(envelope(x, y, bins) if bins else (x, y)), **kw)

    s, F, dF, G = cut(d["steps"], d["F"], d["dF"], d["gamma"])
    for i in range(G.shape[1]):
        trace(axes[0], s, G[:, i], lw=0.8, label=f"class {i}")
    trace(axes[1], s, F, lw=0.5, color="k")
    trace(axes[2], s, dF, lw=0.5, color="k")
    r, tr, va = cut(d["row_steps"], d["train_acc"], d["val_acc"])
    trace(axes[3], r, tr, lw=0.8, label="train")
    trace(axes[3], r, va, lw=0.8, label="validation")
    p, h, k = cut(d["probe_steps"], d["hessian"], d["ntk"])
    trace(axes[4], p, h, lw=0.6, color="C0", label=r"Hessian $\lambda_{max}$")
    trace(axes[5], p, k, lw=0.6, color="C4")
    if d["threshold"] is not None and np.isfinite(d["threshold"]):
        axes[4].axhline(d["threshold"], color="k", ls="--", lw=0.9, label=f"threshold {d['threshold']:.3g}")
    axes[4].axhline(2 / d["lr"], color="0.4", ls=":", lw=0.9, label=rf"$2/\eta$ = {2 / d['lr']:.3g}")
    for ax in axes[1], axes[2], axes[4]:
        _markers(ax, d["onsets"], d["ends"])
    F_pos = F[np.isfinite(F) & (F > 0)]
    if F_pos.size:
        axes[1].set_yscale("log")
    _symlog(axes[2], np.abs(dF[np.isfinite(dF) & (dF != 0)]))
    axes[3].set_ylim(0, 1.02)
    axes[0].set_ylim(0, G.shape[1] * 1.02 if G.size else 1)
    lo, hi = window if window is not None else (d["steps"][0], d["steps"][-1])
    axes[-1].set_xlim(lo, max(hi, lo + 1))
    axes[-1].set_xlabel("step")


def fig4(path: Path, *, steps, F, gamma, row_steps, train_acc, val_acc, probe_steps, hessian, ntk,
         threshold: float | None, lr: float, onsets: Sequence[int], ends: Sequence[int], title: str,
         zoom: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Fig. 4 of one run: Gamma_i, F (log), Delta F (symlog), accuracy, Hessian lambda_max (with the
    threshold and 2/eta lines) and NTK lambda_max against the step, with onset/end markers; a
    narrower per-step zoom column on `zoom` (default: zoom_window on the first cascade; none
    without onsets). Returns the zoom window drawn."""
    steps = np.asarray(steps)
    if zoom is None:
        zoom = zoom_window(onsets, ends, int(steps[0]), int(steps[-1]))
    d = dict(steps=steps, F=F, dF=step_diff(steps, F), gamma=np.asarray(gamma).reshape(len(steps), -1),
             row_steps=row_steps, train_acc=train_acc, val_acc=val_acc, probe_steps=probe_steps,
             hessian=hessian, ntk=ntk, threshold=threshold, lr=lr, onsets=np.asarray(onsets),
             ends=np.asarray(ends))
    ncol = 1 if zoom is None else 2
    fig, axes = plt.subplots(6, ncol, sharex="col", squeeze=False, figsize=(10 + 4 * (ncol - 1), 13),
                             gridspec_kw=dict(width_ratios=[3, 1][:ncol]), layout="constrained")
    _column(axes[:, 0], d, None, BINS)
    labels = (r"$\Gamma_i(t)$", r"$F(t)$", r"$F(t)-F(t-1)$", "accuracy", r"Hessian $\lambda_{max}$",
              r"NTK $\lambda_{max}$")
    for i, (ax, lab) in enumerate(zip(axes[:, 0], labels)):
        ax.set_ylabel(lab)
        ax.text(0.005, 0.96, f"({'abcdef'[i]})", transform=ax.transAxes, va="top", fontsize=9)
    if zoom is not None:
        _column(axes[:, 1], d, zoom, None)
        axes[0, 1].set_title(f"zoom: steps {zoom[0]}-{zoom[1]}", fontsize=10)
        for i, ax in enumerate(axes[:, 1]):
            ax.text(0.01, 0.96, f"({'ghijkl'[i]})", transform=ax.transAxes, va="top", fontsize=9)
        for ax in axes[:, 0]:
            ax.axvspan(*zoom, color="0.85", zorder=0, lw=0)
    for i in (0, 3, 4):
        axes[i, 0].legend(fontsize=7, loc="upper right", ncol=2)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return zoom


def fig5b(path: Path, *, series: Sequence[dict], threshold: float | None, lr: float, title: str) -> None:
    """Fig. 5b/c: Hessian lambda_max against the step for each run in `series` (dicts with label,
    probe_steps, hessian), one panel each, against the threshold (dashed) and 2/eta (dotted)."""
    fig, axes = plt.subplots(1, len(series), sharey=True, squeeze=False, figsize=(5 * len(series), 3.8),
                             layout="constrained")
    for ax, run in zip(axes[0], series):
        ax.plot(*envelope(run["probe_steps"], run["hessian"]), lw=0.7, label=r"Hessian $\lambda_{max}$")
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=0.9, label=f"threshold {threshold:.3g}")
        ax.axhline(2 / lr, color="0.4", ls=":", lw=0.9, label=rf"$2/\eta$ = {2 / lr:.3g}")
        ax.set(title=run["label"], xlabel="step")
    axes[0, 0].set_ylabel(r"Hessian $\lambda_{max}$")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig5a(path: Path, *, groups: Sequence[dict], references: Sequence[tuple[str, float]], title: str) -> None:
    """Fig. 5a: threshold against eta, log-log. groups: dicts with label, eta, mean, sem (NaN where
    unknown) and fit ({a, b, b_se} of log thr = a + b log eta, or None); references: (label, c)
    for a stability line c/eta."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8), layout="constrained")
    etas = np.concatenate([np.asarray(g["eta"], np.float64) for g in groups])
    grid = np.geomspace(etas.min() / 1.3, etas.max() * 1.3, 50)
    for i, g in enumerate(groups):
        eta, mean, sem = (np.asarray(g[k], np.float64) for k in ("eta", "mean", "sem"))
        label = g["label"]
        if g["fit"] is not None:
            f = g["fit"]
            ax.plot(grid, np.exp(f["a"]) * grid ** f["b"], color=f"C{i}", lw=1)
            label += rf": $\eta^{{{f['b']:.2f} \pm {f['b_se']:.2f}}}$"
        ax.errorbar(eta, mean, yerr=np.nan_to_num(sem), fmt="o", color=f"C{i}", ms=4, capsize=2, label=label)
    for j, (label, c) in enumerate(references):
        ax.plot(grid, c / grid, color="k", ls=("--", ":", "-.")[j % 3], lw=0.9, label=label)
    ax.set(xscale="log", yscale="log", xlabel=r"learning rate $\eta$", ylabel=r"threshold Hessian $\lambda_{max}$",
           title=title)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
