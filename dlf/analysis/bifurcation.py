"""Period-2 bifurcations of F(t) and the curvature threshold, on host arrays after training.

Detector [decision] (SPEC 3: "sign of F(t)-F(t-1) alternating over a window"): with
dF(t) = F(t) - F(t-1), an *oscillation episode* is a maximal run of steps s..e in which
  (i)   dF alternates in sign at every step: dF(t) dF(t-1) < 0 for s < t <= e,
  (ii)  every |dF(t)| > min_amp (rounding noise of a converged F alternates too, but is tiny),
  (iii) it lasts at least `window` steps: e - s + 1 >= window.
s is the episode's *onset* (F(s-1) -> F(s) is its first bounce) and e its *end* (the last
alternating difference). Episodes separated by at most `merge_gap` non-alternating steps are
merged into one (a cascade that briefly loses alternation stays one instability). An episode
still running at the last recorded step ends there. Non-finite dF never alternates.

Threshold (the paper's dashed line, Fig. 4e): the mean of Hessian lambda_max taken at the
onsets, each from the last lambda_max sample at or before the onset (the curvature measured
before the bounce contaminates it; onsets before the first sample are skipped). The paper
averages at starts and finishes; `include_ends=True` adds the ends the same way.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

DETECTOR = dict(window=10, min_amp=1e-6, merge_gap=0)  # defaults of the keyword arguments below


def delta_f(F_T: np.ndarray) -> np.ndarray:
    """dF(t) = F(t) - F(t-1), aligned with F: dF[0] = NaN."""
    F_T = np.asarray(F_T, np.float64)
    return np.concatenate([[np.nan], np.diff(F_T)])


def episodes(F_T: np.ndarray, window: int = 10, min_amp: float = 1e-6, merge_gap: int = 0,
             step0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(onsets, ends): steps of the period-2 episodes of F (module docstring); F_T[i] is F at
    step step0 + i. Both int64 arrays of equal length, sorted."""
    if window < 2:
        raise ValueError(f"window={window} must be >= 2 (one sign change needs two differences)")
    d = delta_f(F_T)
    big = np.isfinite(d) & (np.abs(d) > min_amp)
    alt = np.zeros(d.shape, bool)  # alt[t]: dF(t-1) -> dF(t) is a sign change of two big steps
    alt[1:] = big[1:] & big[:-1] & (np.sign(d[1:]) * np.sign(d[:-1]) < 0)
    # maximal runs of alt[a..b] -> episode s = a - 1 .. e = b
    edges = np.diff(np.concatenate([[0], alt.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    s, e = starts - 1, stops
    keep = e - s + 1 >= window
    s, e = s[keep], e[keep]
    if s.size:
        join = s[1:] - e[:-1] - 1 <= merge_gap  # episode i+1 merges into episode i
        s, e = s[np.r_[True, ~join]], e[np.r_[~join, True]]
    return s.astype(np.int64) + step0, e.astype(np.int64) + step0


def sample_before(sample_steps_S: np.ndarray, values_S: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """values at the last sample step <= each of `steps` (NaN where there is none)."""
    sample_steps_S, values_S = np.asarray(sample_steps_S), np.asarray(values_S, np.float64)
    i = np.searchsorted(sample_steps_S, np.asarray(steps), side="right") - 1
    return np.where(i >= 0, values_S[np.maximum(i, 0)], np.nan)


def _stats(values: np.ndarray) -> dict[str, Any]:
    """{mean, std (ddof=1; 0 for n=1), n} over the finite values; None where undefined."""
    v = values[np.isfinite(values)]
    n = int(v.size)
    return {"mean": float(v.mean()) if n else None,
            "std": float(v.std(ddof=1)) if n > 1 else (0.0 if n == 1 else None), "n": n}


def threshold(F_T: np.ndarray, lam_steps_S: np.ndarray, lam_S: np.ndarray, include_ends: bool = False,
              step0: int = 0, **detector) -> dict[str, Any]:
    """One run's threshold estimate: {mean, std, n, n_onsets, onsets, ends, values}. values are
    the lambda_max samples at the onsets (then the ends, if include_ends), None where no sample
    precedes; n counts those averaged. lam_S[j] is lambda_max at step lam_steps_S[j] (increasing)."""
    onsets, ends = episodes(F_T, step0=step0, **detector)
    at = np.concatenate([onsets, ends]) if include_ends else onsets
    values = sample_before(lam_steps_S, lam_S, at)
    return {**_stats(values), "n_onsets": int(onsets.size), "onsets": onsets.tolist(),
            "ends": ends.tolist(), "values": [float(v) if np.isfinite(v) else None for v in values]}


def threshold_summary(F_RxT: np.ndarray, lam_steps_S: np.ndarray, lam_RxS: np.ndarray,
                      seeds: Sequence[int] | None = None, include_ends: bool = False,
                      step0: int = 0, **detector) -> dict[str, Any]:
    """summary.json's `threshold` (JSON-ready): pooled {mean, std, n, n_onsets} over every seed's
    samples, `per_seed` (one `threshold` dict per run, with its seed) and the detector's settings."""
    seeds = list(range(len(F_RxT))) if seeds is None else list(seeds)
    runs = [{"seed": s, **threshold(F, lam_steps_S, lam, include_ends, step0, **detector)}
            for s, F, lam in zip(seeds, F_RxT, lam_RxS)]
    pooled = np.array([np.nan if v is None else v for r in runs for v in r["values"]], np.float64)
    return {**_stats(pooled), "n_onsets": sum(r["n_onsets"] for r in runs), "per_seed": runs,
            "detector": {**DETECTOR, **detector, "include_ends": include_ends}}


def run_threshold(F_RxT: np.ndarray, probe_steps: np.ndarray, hessian_RxS: np.ndarray, seeds: list[int],
                  lr: float) -> dict[str, Any]:
    """summary.json's `threshold` of a run with probes: threshold_summary plus the
    edge-of-stability reference 2/lr of gradient descent."""
    out = threshold_summary(F_RxT, probe_steps, hessian_RxS, seeds=seeds)
    out["edge_of_stability"] = 2.0 / lr
    return out
