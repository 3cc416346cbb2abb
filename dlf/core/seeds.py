"""Initial states of stacked runs from their root seeds: named key streams split once per seed (STYLE 10)."""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from dlf.core.engine import TrainState

STREAMS = ("init", "data", "probe")  # named key streams split once from each run's root seed


def streams(seed: int) -> dict[str, jax.Array]:
    """The named key streams of one run, split once from its root seed (STYLE 10)."""
    return dict(zip(STREAMS, jax.random.split(jax.random.key(seed), len(STREAMS))))


def init_states(model, tx: optax.GradientTransformation, seeds: list[int], x_example,
                init: Callable | None = None) -> TrainState:
    """Stacked initial states of the given seeds (leading axis = run); params (and model state)
    from each seed's `init` stream, the data key from its `data` stream. `init(model, key, x)`
    returns (params, model_state); default: flax `model.init` with no model state."""
    def one(seed):
        keys = streams(seed)
        if init is None:
            params, model_state = model.init(keys["init"], x_example)["params"], ()
        else:
            params, model_state = init(model, keys["init"], x_example)
        return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32), -jnp.ones((), jnp.int32),
                          model_state, keys["data"], keys["probe"])

    # lax.map, not vmap: the same values bit for bit, and on a CPU the batched random number
    # generator takes about twice as long to compile (~0.5 s more for every new program)
    return jax.jit(lambda s: jax.lax.map(one, s))(jnp.asarray(seeds, jnp.uint32))
