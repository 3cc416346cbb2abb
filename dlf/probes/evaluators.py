"""Probes as evaluators (the PROBES registry): each `probes.<name>` has its own config and cadence
(`every` steps; 0 = off, nothing compiled) and returns named per-run scalars into probes.jsonl."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from dlf.core.registry import Registry
from dlf.core.typed import setting
from dlf.probes.hessian import hessian_top
from dlf.probes.ntk import balanced_subset, first_n, ntk_matrix, ntk_top


@dataclass(frozen=True)
class ProbeContext:
    """What a probe may need to know about the run when it is built (host values)."""
    y_train: np.ndarray
    classes: int


# (program, state, hp, data, key) -> {value name: scalar} for one run at its current step
Evaluator = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ProbeSpec:
    """`make(probe_cfg, ctx) -> Evaluator`; `names` are the values it returns."""
    make: Callable[[Any, ProbeContext], Evaluator]
    names: tuple[str, ...]


PROBES: Registry[ProbeSpec] = Registry("probes")


@dataclass(frozen=True)
class HessianConfig:
    every: int = setting(0, low=0, doc="steps between probes (0: off, no cost)")
    order: int = setting(20, low=1, doc="Lanczos order (full reorthogonalisation)")
    quiet_frac: float = setting(0.1, gt=0.0,
                                doc="threshold: a cascade ends after a quiet stretch of quiet_frac * T steps")
    onset_amp: float = setting(1e-3, gt=0.0, doc="threshold: an onset is where |F(t) - 2F(t-1) + F(t-2)| reaches this")


@dataclass(frozen=True)
class NTKConfig:
    every: int = setting(0, low=0, doc="steps between probes (0: off, no cost)")
    samples: int | None = setting(None, low=1, doc="points of the NTK sample set; null = the whole training set")
    set: str = setting("balanced", choices=("balanced", "first"), doc="balanced: per class; first: the first N")
    order: int = setting(20, low=1, doc="Lanczos order of the matrix-free NTK")
    explicit_max: int = setting(60, low=0, doc="explicit J J^T + eigvalsh up to this many samples x outputs")


def make_hessian(p: HessianConfig, ctx: ProbeContext) -> Evaluator:
    """Top Hessian eigenvalue of F(t) itself (full batch, Lanczos of order p.order, a fresh start
    vector per call)."""
    def probe(program, state, hp, data, key) -> dict[str, Any]:
        x = program.inputs(data.x_train, data)
        F = lambda params: program.objective(state, hp, x, data.y_train, data)(params)[0]  # noqa: E731
        return {"hessian_lambda_max": hessian_top(F, state.params, key, p.order)[0]}
    return probe


def ntk_indices(p: NTKConfig, y_train: np.ndarray, classes: int) -> np.ndarray:
    """The NTK set: every training point (samples null, the default: the paper's Sec. 3.4 NTK over
    all N samples), or a sample set of that size, class-balanced or the first N points (the
    authors' notebook, whose first 50 spiral points are all of class 0)."""
    if p.samples is None:
        return np.arange(len(y_train))
    n = min(p.samples, len(y_train))
    return balanced_subset(y_train, n, classes) if p.set == "balanced" else first_n(y_train, n)


def make_ntk(p: NTKConfig, ctx: ProbeContext) -> Evaluator:
    """Top eigenvalue of the empirical NTK Theta = J J^T on the NTK set (J: Jacobian of the N x C
    logits, no 1/N): explicit J J^T + eigvalsh up to p.explicit_max rows (samples x outputs),
    matrix-free Lanczos beyond."""
    idx_np = ntk_indices(p, ctx.y_train, ctx.classes)
    explicit = len(idx_np) * ctx.classes <= p.explicit_max

    def probe(program, state, hp, data, key) -> dict[str, Any]:
        idx = jnp.asarray(idx_np)
        f = lambda params, xs: program.apply(params, state.model_state, xs, False)[0]  # noqa: E731
        xs = program.inputs(data.x_train, data)[idx]
        if explicit:
            return {"ntk_lambda_max": jnp.linalg.eigvalsh(ntk_matrix(f, state.params, xs))[-1]}
        return {"ntk_lambda_max": ntk_top(f, state.params, xs, key, p.order)[0]}
    return probe


PROBES.register("hessian", ProbeSpec(make_hessian, ("hessian_lambda_max",)), config=HessianConfig)
PROBES.register("ntk", ProbeSpec(make_ntk, ("ntk_lambda_max",)), config=NTKConfig)


@dataclass(frozen=True)
class Probe:
    """A built probe of a run: its name, cadence and evaluator."""
    name: str
    every: int
    evaluate: Evaluator


def build(probes_cfg: dict[str, Any], ctx: ProbeContext) -> tuple[Probe, ...]:
    """The probes switched on (every > 0), in registry order."""
    return tuple(Probe(name, probes_cfg[name].every, PROBES[name].make(probes_cfg[name], ctx))
                 for name in PROBES.names() if probes_cfg[name].every > 0)
