"""Period-2 bifurcations of F(t), their cascades, and the curvature threshold, on host arrays.

Detector [decision] (SPEC 3), robust to a drift of F: with the second difference
d2(t) = F(t) - 2 F(t-1) + F(t-2) (a linear drift cancels; a period-2 oscillation of amplitude c
gives d2 = +-4c), an *episode* is a maximal run of steps in which
  (i)   d2 alternates in sign at every step: d2(t) d2(t-1) < 0,
  (ii)  every |d2(t)| > min_amp (the rounding noise of a converged F alternates too, but is tiny),
  (iii) it lasts at least `window` steps,
  (iv)  |d2| reaches onset_amp. Below it an alternation is the resonant response of a *stable*
        oscillating mode (1 < eta lambda < 2) to the moving landscape, which grows as lambda
        approaches 2/eta but is not yet an instability.
The episode's *onset* is its first step with |d2| >= onset_amp, its *end* its last alternating
step. `diff=1` uses dF(t) = F(t) - F(t-1) instead (the first detector; fooled by a drift larger
than the oscillation). Non-finite F never alternates; an episode still running at the last
recorded step ends there.

Cascades: episodes come in cascades (Fig. 4b-c). An episode whose onset is within `quiet` steps
of the previous episode's end belongs to the same cascade; `quiet` is a stated fraction of the
period T (`quiet_frac`, default 0.1): the landscape moves on the scale of T. A cascade must
follow a quiet stretch: one that starts within `quiet` steps of the first recorded step (the
initial transient, e.g. a wide network whose lambda_max starts above 2/eta) is no threshold.

Threshold [decision]: one value per cascade = Hessian lambda_max at its *first* onset, read as
the branch average: the mean of the last two lambda_max samples at or before the onset (an odd
stride samples alternate branches of the period-2 orbit). Onsets inside a cascade are not
thresholds. Error: the spread over cascades (and seeds). The paper-literal variant (Fig. 4
caption) is reported beside it: per cascade, the lambda_max sample before the first jump
|lambda_j - lambda_{j-1}| >= `jump` (start) and the one after the last jump (end), searched from
`quiet` steps before the first onset to `quiet` steps after the last end; the jump sizes are kept.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DETECTOR = dict(diff=2, window=10, min_amp=1e-6, onset_amp=1e-3, quiet_frac=0.1, jump=0.1)


def delta_f(F_T: np.ndarray, diff: int = 1) -> np.ndarray:
    """The diff-th difference of F aligned with F: dF[t] = F(t) - F(t-1) (diff=1) or
    F(t) - 2F(t-1) + F(t-2) (diff=2); NaN where undefined."""
    F_T = np.asarray(F_T, np.float64)
    if diff not in (1, 2):
        raise ValueError(f"diff={diff} must be 1 or 2")
    return np.concatenate([np.full(diff, np.nan), np.diff(F_T, diff)])


def episodes(F_T: np.ndarray, window: int = 10, min_amp: float = 1e-6, onset_amp: float = 0.0,
             diff: int = 2, step0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(onsets, ends): steps of the period-2 episodes of F (module docstring); F_T[i] is F at
    step step0 + i. Both int64 arrays of equal length, sorted. onset_amp=0: the onset is the first
    step of the alternation (s - 1 .. e: F(s-1) -> F(s) is the first bounce)."""
    if window < 2:
        raise ValueError(f"window={window} must be >= 2 (one sign change needs two differences)")
    d = delta_f(F_T, diff)
    big = np.isfinite(d) & (np.abs(d) > min_amp)
    alt = np.zeros(d.shape, bool)  # alt[t]: d(t-1) -> d(t) is a sign change of two big values
    alt[1:] = big[1:] & big[:-1] & (np.sign(d[1:]) * np.sign(d[:-1]) < 0)
    edges = np.diff(np.concatenate([[0], alt.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    onsets, ends = [], []
    for a, b in zip(starts, stops):
        s, e = a - 1, b
        if e - s + 1 < window:
            continue
        if onset_amp > 0:
            hit = np.flatnonzero(np.abs(d[s:e + 1]) >= onset_amp)
            if not hit.size:
                continue
            s += hit[0]
        onsets.append(s)
        ends.append(e)
    return np.asarray(onsets, np.int64) + step0, np.asarray(ends, np.int64) + step0


def cascades(onsets: np.ndarray, ends: np.ndarray, quiet: int) -> tuple[np.ndarray, np.ndarray]:
    """(first onsets, last ends) of the cascades: an episode starting within `quiet` steps of
    the previous end joins its cascade."""
    onsets, ends = np.asarray(onsets, np.int64), np.asarray(ends, np.int64)
    if not onsets.size:
        return onsets, ends
    new = np.r_[True, onsets[1:] - np.maximum.accumulate(ends)[:-1] > quiet]
    last = np.r_[np.flatnonzero(new)[1:] - 1, onsets.size - 1]
    return onsets[new], np.maximum.accumulate(ends)[last]


def branch_average(sample_steps_S: np.ndarray, values_S: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Mean of the last two samples at or before each of `steps` (NaN with fewer than two)."""
    sample_steps_S, values_S = np.asarray(sample_steps_S), np.asarray(values_S, np.float64)
    i = np.searchsorted(sample_steps_S, np.asarray(steps), side="right") - 1
    return np.where(i >= 1, 0.5 * (values_S[np.maximum(i, 1)] + values_S[np.maximum(i - 1, 0)]), np.nan)


def literal(first: np.ndarray, last: np.ndarray, sample_steps_S: np.ndarray, values_S: np.ndarray,
            quiet: int, jump: float) -> list[dict[str, Any]]:
    """The paper-literal reading per cascade (module docstring): {start, start_jump, end,
    end_jump, start_step, end_step}; None where no jump >= `jump` lies in the cascade's window."""
    s, v = np.asarray(sample_steps_S), np.asarray(values_S, np.float64)
    dv = np.abs(np.diff(v))
    out = []
    for a, b in zip(first, last):
        j = np.flatnonzero((dv >= jump) & (s[1:] >= a - quiet) & (s[1:] <= b + quiet)) + 1
        if not j.size:
            out.append(dict(start=None, start_jump=None, end=None, end_jump=None, start_step=None, end_step=None))
            continue
        out.append(dict(start=float(v[j[0] - 1]), start_jump=float(dv[j[0] - 1]), start_step=int(s[j[0] - 1]),
                        end=float(v[j[-1]]), end_jump=float(dv[j[-1] - 1]), end_step=int(s[j[-1]])))
    return out


def _stats(values) -> dict[str, Any]:
    """{mean, std (ddof=1; 0 for n=1), n} over the finite values; None where undefined."""
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    return {"mean": float(v.mean()) if n else None,
            "std": float(v.std(ddof=1)) if n > 1 else (0.0 if n == 1 else None), "n": n}


def _json(v: np.ndarray) -> list:
    return [float(x) if np.isfinite(x) else None for x in np.asarray(v, np.float64)]


def threshold(F_T: np.ndarray, lam_steps_S: np.ndarray, lam_S: np.ndarray, T: int, step0: int = 0,
              **detector) -> dict[str, Any]:
    """One run's threshold: {mean, std, n} over its cascades' branch-averaged lambda_max at the
    first onset, with `values`, `cascade_onsets`, `cascade_ends`, `n_early` (cascades dropped as the
    initial transient), every episode's `onsets` and `ends`, `n_onsets`, and `literal` ({mean,
    std, n} over the start and end values, `jump` {mean, min} of their jump sizes, `per_cascade`).
    lam_S[j] is lambda_max at step lam_steps_S[j]."""
    p = {**DETECTOR, **detector}
    quiet = int(round(p["quiet_frac"] * T))
    onsets, ends = episodes(F_T, p["window"], p["min_amp"], p["onset_amp"], p["diff"], step0)
    first, last = cascades(onsets, ends, quiet)
    early = first - step0 < quiet  # no quiet stretch before it: the initial transient
    first, last = first[~early], last[~early]
    values = branch_average(lam_steps_S, lam_S, first)
    lit = literal(first, last, lam_steps_S, lam_S, quiet, p["jump"])
    lit_values = [c[k] for c in lit for k in ("start", "end")]
    jumps = np.array([c[k] for c in lit for k in ("start_jump", "end_jump") if c[k] is not None], np.float64)
    return {**_stats(values), "values": _json(values), "cascade_onsets": first.tolist(),
            "cascade_ends": last.tolist(), "n_early": int(early.sum()), "n_onsets": int(onsets.size),
            "onsets": onsets.tolist(),
            "ends": ends.tolist(),
            "literal": {**_stats(lit_values), "jump": {"mean": float(jumps.mean()) if jumps.size else None,
                                                       "min": float(jumps.min()) if jumps.size else None},
                        "per_cascade": lit}}


def threshold_summary(F_RxT: np.ndarray, lam_steps_S: np.ndarray, lam_RxS: np.ndarray, T: int,
                      seeds: Sequence[int] | None = None, step0: int = 0, **detector) -> dict[str, Any]:
    """summary.json's `threshold` (JSON-ready): pooled {mean, std, n} over every seed's cascades,
    `seed_mean` ({mean, std, n} of the per-seed means: the error bar between seeds), `literal`
    (pooled), `per_seed` (one `threshold` dict per run, with its seed) and the detector settings."""
    seeds = list(range(len(F_RxT))) if seeds is None else list(seeds)
    runs = [{"seed": s, **threshold(F, lam_steps_S, lam, T, step0, **detector)}
            for s, F, lam in zip(seeds, F_RxT, lam_RxS)]
    p = {**DETECTOR, **detector}
    lit = [c[k] for r in runs for c in r["literal"]["per_cascade"] for k in ("start", "end")]
    jumps = [r["literal"]["jump"]["mean"] for r in runs if r["literal"]["jump"]["mean"] is not None]
    return {**_stats([v for r in runs for v in r["values"]]), "seed_mean": _stats([r["mean"] for r in runs]),
            "n_onsets": sum(r["n_onsets"] for r in runs),
            "literal": {**_stats(lit), "jump_mean": float(np.mean(jumps)) if jumps else None},
            "per_seed": runs, "detector": {**p, "quiet_steps": int(round(p["quiet_frac"] * T))}}


def run_threshold(F_RxT: np.ndarray, probe_steps: np.ndarray, hessian_RxS: np.ndarray, seeds: list[int],
                  lr: float, T: int, quiet_frac: float, onset_amp: float) -> dict[str, Any]:
    """summary.json's `threshold` (Hessian lambda_max at the first onset of each cascade, branch
    averaged, per seed and pooled; the paper-literal variant beside it) plus the edge-of-stability
    reference 2/lr of gradient descent."""
    out = threshold_summary(F_RxT, probe_steps, hessian_RxS, T, seeds=seeds, quiet_frac=quiet_frac,
                            onset_amp=onset_amp)
    out["edge_of_stability"] = 2.0 / lr
    return out
