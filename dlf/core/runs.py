"""Stacked runs (leading axis = run): how many a device holds, padding and slicing them, and
lifting a one-run function to many (vmap groups inside lax.map)."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp


def over_runs(fn: Callable, n_runs: int, vmap_size: int | None, hp_axis: int | None) -> Callable:
    """Lift fn(state, hp, data, *shared) of one run to stacked runs (data and `shared` are the same
    for every run, unbatched): vmap `vmap_size` runs at a time and
    loop over the groups with lax.map inside the same program (vmap_size None or >= n_runs: one
    vmap). Measured on a 2-core CPU, vmapping MLP runs is ~2x slower per run-step than looping;
    on a GPU vmap wins (BENCHMARKS.md)."""
    if vmap_size is None or vmap_size >= n_runs:
        return lambda states, hp, data, *shared: jax.vmap(fn, in_axes=(0, hp_axis, None, *(None,) * len(shared)))(
            states, hp, data, *shared)
    if hp_axis is None:
        return lambda states, hp, data, *shared: jax.lax.map(lambda s: fn(s, hp, data, *shared), states,
                                                             batch_size=vmap_size)
    return lambda states, hp, data, *shared: jax.lax.map(lambda sh: fn(*sh, data, *shared), (states, hp),
                                                         batch_size=vmap_size)


def default_vmap_size() -> int | None:
    """Runs vectorised together: all of them on accelerators, one at a time on CPU (measured)."""
    return 1 if jax.default_backend() == "cpu" else None


def runs_per_device(n_runs: int, n_dev: int, vmap_size: int | None, group_min: int = 1) -> int:
    """Runs per device (padding included), raised so that no vmapped group holds fewer than group_min
    runs (XLA compiles a lone run without its batch axis: another rounding order, tests/test_fused.py)."""
    per_dev = -(-n_runs // n_dev)
    if group_min > 1 and (vmap_size is None or per_dev <= vmap_size):
        return max(per_dev, group_min)
    rest = per_dev % vmap_size if group_min > 1 else 0
    return per_dev + (group_min - rest if 0 < rest < group_min else 0)


@partial(jax.jit, static_argnums=1)
def pad_runs(tree, n: int):
    """Append copies of the last run so that the run axis has length n (one compiled call for the
    whole tree: op by op, each leaf's shape would compile its own kernels)."""
    def pad(x):
        extra = n - x.shape[0]
        return x if extra == 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])
    return jax.tree.map(pad, tree)


@partial(jax.jit, static_argnums=1)
def first_runs(tree, n: int):
    """The first n runs of a stacked tree (one compiled call for the whole tree)."""
    return jax.tree.map(lambda x: x[:n], tree)


@jax.jit
def take_runs(tree, idx):
    """The runs `idx` of a stacked tree (one compiled call for the whole tree)."""
    return jax.tree.map(lambda x: x[idx], tree)
