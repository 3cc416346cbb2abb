"""The compiled training engine: pure steps over a state pytree, scanned in chunks, vmapped over runs."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dlf.schedule import gamma

STREAMS = ("init", "data", "probe")  # named key streams split once from each run's root seed


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array  # int32: minimisation steps taken so far
    diverged_step: jax.Array  # int32: step at which F or the params turned non-finite; -1 if never


class Hyper(NamedTuple):
    """Traced per-run hyper-parameters: one compiled program serves every value."""
    A: jax.Array
    T: jax.Array
    off_step: jax.Array


class Data(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array


def streams(seed: int) -> dict[str, jax.Array]:
    """The named key streams of one run, split once from its root seed (STYLE 10)."""
    return dict(zip(STREAMS, jax.random.split(jax.random.key(seed), len(STREAMS))))


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


@dataclass(frozen=True)
class Program:
    """The static parts of a training program; its methods are pure functions of one run."""
    apply: Callable[[Any, jax.Array], jax.Array]  # (params, x_BxD) -> logits_BxC
    tx: optax.GradientTransformation
    loss: Callable  # (logits_BxC, labels_B, gamma_C) -> (F, ce)
    num_classes: int
    shape: str = "triangle"

    def gamma(self, step, hp: Hyper, dtype):
        return gamma(step, hp.A, hp.T, self.num_classes, self.shape, hp.off_step, dtype)

    def train_step(self, state: TrainState, hp: Hyper, data: Data) -> TrainState:
        """One full-batch step on F(t). A run whose F or new params are non-finite is frozen."""
        g = self.gamma(state.step, hp, data.x_train.dtype)

        def objective(params):
            return self.loss(self.apply(params, data.x_train), data.y_train, g)[0]

        F, grads = jax.value_and_grad(objective)(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        alive = state.diverged_step < 0
        finite = jnp.isfinite(F) & _all_finite(params)
        keep = alive & finite
        return TrainState(
            params=_select(keep, params, state.params),
            opt_state=_select(keep, opt_state, state.opt_state),
            step=state.step + 1,
            diverged_step=jnp.where(alive & ~finite, state.step, state.diverged_step),
        )

    def evaluate(self, state: TrainState, hp: Hyper, data: Data) -> dict[str, jax.Array]:
        """Metrics at the current step: F(t), plain CE, accuracies, Gamma(t)."""
        g = self.gamma(state.step, hp, data.x_train.dtype)
        logits = self.apply(state.params, data.x_train)
        F, ce = self.loss(logits, data.y_train, g)
        val_logits = self.apply(state.params, data.x_val)
        return dict(
            loss=F,
            ce=ce,
            train_acc=jnp.mean(jnp.argmax(logits, -1) == data.y_train),
            val_acc=jnp.mean(jnp.argmax(val_logits, -1) == data.y_val),
            gamma=g,
            diverged_step=state.diverged_step,
        )

    def chunk(self, state: TrainState, hp: Hyper, data: Data, n_steps: int):
        """n_steps training steps in one lax.scan, then the metrics at the end."""
        state, _ = jax.lax.scan(lambda s, _: (self.train_step(s, hp, data), None), state, None,
                                length=n_steps)
        return state, self.evaluate(state, hp, data)


def init_states(model, tx: optax.GradientTransformation, seeds: list[int], x_example) -> TrainState:
    """Stacked initial states of the given seeds (leading axis = run); params from each seed's
    `init` stream."""
    def one(seed):
        params = model.init(streams(seed)["init"], x_example)["params"]
        return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32), -jnp.ones((), jnp.int32))

    return jax.jit(jax.vmap(one))(jnp.asarray(seeds, jnp.uint32))


def chunk_lengths(steps: int, log_every: int) -> list[int]:
    n, r = divmod(steps, log_every)
    return [log_every] * n + ([r] if r else [])


@dataclass
class Timing:
    compile_s: float
    train_s: float


def over_runs(fn: Callable, n_runs: int, vmap_size: int | None, hp_axis: int | None) -> Callable:
    """Lift fn(state, hp, data) of one run to stacked runs: vmap `vmap_size` runs at a time and
    loop over the groups with lax.map inside the same program (vmap_size None or >= n_runs: one
    vmap). Measured on a 2-core CPU, vmapping MLP runs is ~2x slower per run-step than looping;
    on a GPU vmap wins (BENCHMARKS.md)."""
    if vmap_size is None or vmap_size >= n_runs:
        return jax.vmap(fn, in_axes=(0, hp_axis, None))
    if hp_axis is None:
        return lambda states, hp, data: jax.lax.map(lambda s: fn(s, hp, data), states, batch_size=vmap_size)
    return lambda states, hp, data: jax.lax.map(lambda sh: fn(*sh, data), (states, hp), batch_size=vmap_size)


def default_vmap_size() -> int | None:
    """Runs vectorised together: all of them on accelerators, one at a time on CPU (measured)."""
    return 1 if jax.default_backend() == "cpu" else None


def _pad_runs(tree, n: int):
    """Append copies of the last run so that the run axis has length n."""
    def pad(x):
        extra = n - x.shape[0]
        return x if extra == 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])
    return jax.tree.map(pad, tree)


class Compiled:
    """A training program compiled once for `n_runs` stacked runs of one shape, callable on any
    states/hyper-parameters of that shape (a phase diagram reuses it for every chunk of its grid).
    Runs are sharded over the local devices (padded to a multiple of their number), and within a
    device lifted by `over_runs`."""

    def __init__(self, program: Program, states: TrainState, hp: Hyper, data: Data, steps: int,
                 log_every: int, hp_axis: int | None = None, vmap_size: int | None = None,
                 devices: list | None = None):
        self.n_runs = states.step.shape[0]
        devices = list(devices or jax.local_devices())[:self.n_runs]
        self.n_dev = len(devices)
        self.n_padded = -(-self.n_runs // self.n_dev) * self.n_dev
        self.hp_axis = hp_axis
        self.lengths = chunk_lengths(steps, log_every)
        mesh = Mesh(np.array(devices), ("runs",))
        self.runs_sharding = NamedSharding(mesh, P("runs"))
        self.replicated = NamedSharding(mesh, P())
        hp_spec = P("runs") if hp_axis == 0 else P()
        specs = (P("runs"), hp_spec, P())

        def lift(fn, out_specs):
            local = over_runs(fn, self.n_padded // self.n_dev, vmap_size, hp_axis)
            return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=out_specs)

        t0 = time.perf_counter()
        args = self._place(states, hp, data)
        self.evaluate = jax.jit(lift(program.evaluate, P("runs"))).lower(*args).compile()
        self.runners = {
            n: jax.jit(lift(partial(program.chunk, n_steps=n), (P("runs"), P("runs"))),
                       donate_argnums=0).lower(*args).compile()
            for n in sorted(set(self.lengths))
        }
        self.compile_s = time.perf_counter() - t0

    def _place(self, states, hp, data):
        states = jax.device_put(_pad_runs(states, self.n_padded), self.runs_sharding)
        if self.hp_axis == 0:
            hp = jax.device_put(_pad_runs(hp, self.n_padded), self.runs_sharding)
        else:
            hp = jax.device_put(hp, self.replicated)
        return states, hp, jax.device_put(data, self.replicated)

    def __call__(self, states: TrainState, hp: Hyper, data: Data,
                 on_metrics: Callable[[int, dict], None]) -> tuple[TrainState, float]:
        """Train; call on_metrics(step, host_metrics) at step 0 and after every chunk. Host reads
        happen one chunk behind the device (the next chunk is dispatched first), so the device
        never waits on the host. Returns the final states and the training wall time."""
        n = self.n_runs
        cut = lambda tree: jax.tree.map(lambda x: x[:n], tree)  # noqa: E731 - drop padding runs
        t1 = time.perf_counter()
        states, hp, data = self._place(states, hp, data)
        pending = (0, self.evaluate(states, hp, data))
        step = 0
        for length in self.lengths:
            states, metrics = self.runners[length](states, hp, data)
            step += length
            on_metrics(pending[0], cut(jax.device_get(pending[1])))  # host sync, previous chunk
            pending = (step, metrics)
        on_metrics(pending[0], cut(jax.device_get(pending[1])))
        states = jax.block_until_ready(cut(states))
        return states, time.perf_counter() - t1


def fit(program: Program, states: TrainState, hp: Hyper, data: Data, steps: int, log_every: int,
        on_metrics: Callable[[int, dict], None], hp_axis: int | None = None,
        vmap_size: int | None = None, devices: list | None = None):
    """Compile and train `states` (leading axis = run) for `steps` steps, calling
    on_metrics(step, host_metrics) at step 0 and after every chunk of `log_every` steps."""
    compiled = Compiled(program, states, hp, data, steps, log_every, hp_axis, vmap_size, devices)
    states, train_s = compiled(states, hp, data, on_metrics)
    return states, Timing(compile_s=compiled.compile_s, train_s=train_s)
