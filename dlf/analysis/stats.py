"""Seed statistics a researcher can trust: a mean with its 95% interval, a paired difference
against a baseline (seeds share initialisations across cells), Welch's interval where no seed is
shared, and Holm's adjustment for a family of comparisons. Pure numpy and math (Student's t from
the regularised incomplete beta function), no SciPy."""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

LEVEL = 0.95  # every interval here is a two-sided 95% interval


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_pdf(t: float, df: float) -> float:
    """The density of Student's t."""
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(t * t / df))


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (p in (0, 1)): Newton's method on t_sf from the normal
    quantile, bracketed so that it cannot leave the root's interval (~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p} is not in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    q = 1.0 - p  # the upper tail
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > q:
        lo, hi = hi, hi * 2.0
    t = min(max(math.sqrt(2) * _erfinv(2 * p - 1), lo), hi)
    for _ in range(100):
        f = t_sf(t, df) - q  # decreasing in t
        lo, hi = (t, hi) if f > 0 else (lo, t)
        step = f / t_pdf(t, df)
        new = t + step
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - t) < 1e-13 * max(1.0, abs(t)):
            return new
        t = new
    return t


def _erfinv(y: float) -> float:
    """The inverse error function, to ~1e-3 (a starting point for Newton; Giles' approximation)."""
    w = -math.log((1.0 - y) * (1.0 + y))
    if w < 5.0:
        w -= 2.5
        c = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
             -0.00417768164, 0.246640727, 1.50140941)
    else:
        w = math.sqrt(w) - 3.0
        c = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
             0.00943887047, 1.00167406, 2.83297682)
    r = c[0]
    for k in c[1:]:
        r = k + r * w
    return r * y


def _clean(values: Iterable[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def interval(values: Iterable[float | None]) -> dict[str, Any]:
    """{mean, ci95 (the half-width of the 95% t interval; None for n < 2), std (ddof 1), n} over the
    finite values."""
    v = _clean(values)
    n = int(v.size)
    if n == 0:
        return {"mean": None, "ci95": None, "std": None, "n": 0}
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n) if n > 1 else None
    return {"mean": float(v.mean()), "ci95": half, "std": std, "n": n}


def _two_sided_p(t: float, df: float) -> float:
    return float(min(1.0, 2.0 * t_sf(abs(float(t)), float(df))))


def paired(cell: Sequence[float], base: Sequence[float]) -> dict[str, Any]:
    """The paired difference cell - base over values aligned by seed: {kind, n, diff, lo, hi, ci95,
    wins, ties, losses, p} (p: two-sided paired t-test; interval and p are None for n < 2)."""
    d = np.asarray(cell, np.float64) - np.asarray(base, np.float64)
    n = int(d.size)
    out: dict[str, Any] = {"kind": "paired", "n": n, "diff": float(d.mean()) if n else None,
                           "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum()),
                           "lo": None, "hi": None, "ci95": None, "p": None}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    p = (1.0 if out["diff"] == 0 else 0.0) if sd == 0 else _two_sided_p(out["diff"] / (sd / math.sqrt(n)), n - 1)
    return {**out, "lo": out["diff"] - half, "hi": out["diff"] + half, "ci95": half, "p": p}


def unpaired(cell: Sequence[float], base: Sequence[float]) -> dict[str, Any]:
    """Welch's difference of means cell - base for samples that share no seed: {kind, n (the two
    sizes' smaller), n_cell, n_base, diff, lo, hi, ci95, p}; wins/ties/losses are None (no pairs)."""
    a, b = np.asarray(cell, np.float64), np.asarray(base, np.float64)
    out: dict[str, Any] = {"kind": "unpaired", "n": int(min(a.size, b.size)), "n_cell": int(a.size),
                           "n_base": int(b.size), "diff": float(a.mean() - b.mean()) if a.size and b.size else None,
                           "wins": None, "ties": None, "losses": None, "lo": None, "hi": None, "ci95": None, "p": None}
    if a.size < 2 or b.size < 2:
        return out
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return {**out, "lo": out["diff"], "hi": out["diff"], "ci95": 0.0, "p": 1.0 if out["diff"] == 0 else 0.0}
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = t_quantile(0.5 + LEVEL / 2, df) * se
    return {**out, "lo": out["diff"] - half, "hi": out["diff"] + half, "ci95": half,
            "p": _two_sided_p(out["diff"] / se, df)}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None stays None and is not counted)."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m, out, running = len(idx), [None] * len(pvalues), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
