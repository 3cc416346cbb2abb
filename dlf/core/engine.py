"""The compiled training engine: pure steps over a state pytree, scanned in chunks, vmapped over runs."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dlf.core.runs import first_runs, over_runs, pad_runs, runs_per_device
from dlf.core.schedule import gamma


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array  # int32: minimisation steps taken so far (across epochs)
    diverged_step: jax.Array  # int32: step at which F or the params turned non-finite; -1 if never
    model_state: Any = ()  # non-trained variables (batch-norm statistics); () if none
    key: Any = ()  # the run's `data` stream: epoch permutations of mini-batch runs
    probe_key: Any = ()  # the run's `probe` stream: Lanczos start vectors (folded with the step)


class Hyper(NamedTuple):
    """Traced per-run hyper-parameters: one compiled program serves every value. `end_step`: the
    run stops once it has taken that many steps (None: never): it is frozen, as a diverged run is,
    and its step counter too, so its later outputs are those of its own end; `lr`: the updates of a
    transformation built with learning rate 1 are scaled by it (None: the transformation's own)."""
    A: jax.Array
    T: jax.Array
    off_step: jax.Array
    end_step: Any = None
    lr: Any = None


class Data(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    mean: Any = ()  # per-channel mean and std of uint8 images (standardised in the step), or ()
    std: Any = ()


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def plain_apply(apply: Callable[[Any, jax.Array], jax.Array]) -> Callable:
    """(params, x) -> logits as the engine's (params, model_state, x, train) -> (logits, model_state)."""
    return lambda params, model_state, x, train: (apply(params, x), model_state)


@dataclass(frozen=True)
class Program:
    """The static parts of a training program; its methods are pure functions of one run.

    Full batch (batch_size None): a chunk is `n` steps on the whole training set. Mini-batch: a
    chunk is `n` epochs; each epoch draws a permutation of the training set from the run's key
    (folded with the epoch) and takes steps_per_epoch batches of batch_size (the rest dropped)."""
    apply: Callable  # (params, model_state, x, train) -> (logits_BxC, model_state)
    tx: optax.GradientTransformation
    loss: Callable  # (logits_BxC, labels_B, gamma_C) -> (F, ce)
    num_classes: int
    shape: str = "triangle"
    order: str = "cyclic"  # schedule options (dlf.core.schedule.gamma; in the config: schedule.*)
    order_seed: int = 0
    period_extra: int = 0
    target: str = "classes"  # classes: Gamma weights the loss; lr: max_i Gamma_i(t) scales the step (a control)
    batch_size: int | None = None
    steps_per_epoch: int = 1
    eval_batch: int = 1000
    compute_dtype: Any = None  # inputs cast to this before the model (None: the data's dtype)
    probes: tuple = ()  # dlf.probes.evaluators.Probe: name, cadence `every`, evaluate(program, state, hp, data, key)
    probe_slots: tuple[int, ...] = ()  # each probe's index into the split of its per-step probe keys
    trace_loss: bool = False  # full batch: a chunk also returns F(t) of each of its steps
    # full batch: (params, x, y, gamma_C) -> (F, grads) used instead of value_and_grad of apply and
    # loss (dlf.core.fused: the MLP's step in two fused loops); None: the generic gradient
    loss_grad: Callable | None = None
    compiler_options: Any = None  # XLA options of the compiled chunks only (dlf.core.fused: CPU fast-math)
    # never vectorise fewer runs together than this (dlf.core.fused: 2; Compiled pads with copies)
    group_min: int = 1

    def schedule(self, step, hp: Hyper, dtype=jnp.float32):
        """Gamma_i(t) of the schedule, whatever it is applied to."""
        return gamma(step, hp.A, hp.T, self.num_classes, self.shape, hp.off_step, dtype, self.order,
                     self.order_seed, self.period_extra)

    def gamma(self, step, hp: Hyper, dtype=jnp.float32):
        """The loss's class weights at `step`: the schedule, or 1 when it drives the learning rate."""
        g = self.schedule(step, hp, dtype)
        return jnp.ones_like(g) if self.target == "lr" else g

    def inputs(self, x, data: Data):
        """Model inputs: uint8 images standardised per channel; anything else as it is."""
        if x.dtype == jnp.uint8:
            x = (x.astype(jnp.float32) - data.mean) / data.std
        return x if self.compute_dtype is None else x.astype(self.compute_dtype)

    def loss_dtype(self, data: Data):
        return jnp.float32 if data.x_train.dtype == jnp.uint8 else data.x_train.dtype

    def train_step(self, state: TrainState, hp: Hyper, data: Data, idx=None) -> TrainState:
        """One step on F(t), on the whole training set or on the batch `idx`. A run whose F or
        new params are non-finite is frozen."""
        return self.step_with_loss(state, hp, data, idx)[0]

    def objective(self, state: TrainState, hp: Hyper, x, y, data: Data):
        """params -> (F(t) on (x, y), new model state): the loss actually being minimised."""
        g = self.gamma(state.step, hp, self.loss_dtype(data))

        def F(params):
            logits, model_state = self.apply(params, state.model_state, x, True)
            return self.loss(logits, y, g)[0], model_state
        return F

    def step_with_loss(self, state: TrainState, hp: Hyper, data: Data, idx=None):
        """(new state, F(t) before the step)."""
        x, y = data.x_train, data.y_train
        if idx is not None:
            x, y = x[idx], y[idx]
        x = self.inputs(x, data)
        if self.loss_grad is not None and idx is None:
            F, grads = self.loss_grad(state.params, x, y, self.gamma(state.step, hp, self.loss_dtype(data)))
            model_state = state.model_state
        else:
            (F, model_state), grads = jax.value_and_grad(self.objective(state, hp, x, y, data),
                                                         has_aux=True)(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        if hp.lr is not None:  # (-g * 1) * lr: bit for bit the -g * lr of a transformation built with lr
            updates = jax.tree.map(lambda u: u * jnp.asarray(hp.lr, u.dtype), updates)
        if self.target == "lr":  # the emphasised class's weight, max_i Gamma_i(t), as a step-size factor
            factor = jnp.max(self.schedule(state.step, hp, self.loss_dtype(data)))
            updates = jax.tree.map(lambda u: u * factor.astype(u.dtype), updates)
        params = optax.apply_updates(state.params, updates)
        running = jnp.asarray(True) if hp.end_step is None else state.step < hp.end_step
        alive = (state.diverged_step < 0) & running
        finite = jnp.isfinite(F) & _all_finite(params)
        keep = alive & finite
        return state._replace(
            params=_select(keep, params, state.params),
            opt_state=_select(keep, opt_state, state.opt_state),
            model_state=_select(keep, model_state, state.model_state),
            step=jnp.where(running, state.step + 1, state.step),
            diverged_step=jnp.where(alive & ~finite, state.step, state.diverged_step),
        ), F

    def _predict(self, state: TrainState, x, data: Data):
        """Eval-mode logits over x, in batches of eval_batch for mini-batch programs."""
        fwd = lambda xb: self.apply(state.params, state.model_state, self.inputs(xb, data), False)[0]  # noqa: E731
        n = x.shape[0]
        if self.batch_size is None or n <= self.eval_batch:
            return fwd(x)
        nb = -(-n // self.eval_batch)
        pad = jnp.concatenate([x, jnp.zeros((nb * self.eval_batch - n, *x.shape[1:]), x.dtype)])
        out = jax.lax.map(fwd, pad.reshape(nb, self.eval_batch, *x.shape[1:]))
        return out.reshape(nb * self.eval_batch, -1)[:n]

    def evaluate(self, state: TrainState, hp: Hyper, data: Data) -> dict[str, jax.Array]:
        """Metrics at the current step: F(t) and plain CE on the training set, accuracies,
        validation CE, Gamma(t)."""
        g = self.gamma(state.step, hp, self.loss_dtype(data))
        logits = self._predict(state, data.x_train, data)
        F, ce = self.loss(logits, data.y_train, g)
        val_logits = self._predict(state, data.x_val, data)
        _, val_ce = self.loss(val_logits, data.y_val, jnp.ones_like(g))
        return dict(loss=F, ce=ce, train_acc=jnp.mean(jnp.argmax(logits, -1) == data.y_train),
                    val_acc=jnp.mean(jnp.argmax(val_logits, -1) == data.y_val), val_ce=val_ce, gamma=g,
                    diverged_step=state.diverged_step)

    def outputs(self, state: TrainState, hp: Hyper, data: Data, what: tuple[str, ...]) -> dict[str, jax.Array]:
        """What is due at a chunk end: the metrics ("metrics" in what) and the values of the probes
        named in `what`; diverged_step always (a dead run's values are nulled on the host)."""
        out = self.evaluate(state, hp, data) if "metrics" in what else {"diverged_step": state.diverged_step}
        due = [(p, slot) for p, slot in zip(self.probes, self.probe_slots) if p.name in what]
        if due:
            keys = jax.random.split(jax.random.fold_in(state.probe_key, state.step), max(2, 1 + max(self.probe_slots)))
            for p, slot in due:
                out.update(p.evaluate(self, state, hp, data, keys[slot]))
        return out

    def probes_due(self, state: TrainState, hp: Hyper, data: Data, unit) -> dict[str, dict[str, jax.Array]]:
        """{probe name: its values}: the probes whose cadence divides `unit` evaluated on `state`
        (the key as in `outputs`), NaN for the others. `unit` is the same for every run (unbatched), so
        under vmap each probe is a real branch that runs only where it is due, not a select that
        computes it every step."""
        keys = jax.random.split(jax.random.fold_in(state.probe_key, state.step), max(2, 1 + max(self.probe_slots)))
        out = {}
        for p, slot in zip(self.probes, self.probe_slots):
            value = partial(p.evaluate, self, state, hp, data, keys[slot])
            nan = {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in jax.eval_shape(value).items()}
            out[p.name] = jax.lax.cond(unit % p.every == 0, value, lambda nan=nan: nan)
        return out

    def epoch(self, state: TrainState, hp: Hyper, data: Data) -> TrainState:
        """One epoch of mini-batch steps over a fresh permutation of the training set."""
        n_used = self.steps_per_epoch * self.batch_size
        e = state.step // self.steps_per_epoch
        perm = jax.random.permutation(jax.random.fold_in(state.key, e), data.x_train.shape[0])
        batches = perm[:n_used].reshape(self.steps_per_epoch, self.batch_size)
        state, _ = jax.lax.scan(lambda s, idx: (self.train_step(s, hp, data, idx), None), state, batches)
        return state

    def chunk(self, state: TrainState, hp: Hyper, data: Data, n_steps: int, what: tuple[str, ...] = ("metrics",),
              evaluate: bool = True, start=None):
        """n_steps training steps (mini-batch: n_steps epochs) from unit `start` in one lax.scan,
        then the outputs due (`outputs`, unless not `evaluate`; with `loss_trace`, F(t) of every
        step of the chunk, when trace_loss; with `probe_trace`, {probe: {value name: (n_steps,)}} of
        the probes due after each step (`probes_due`; NaN where none is due), when the program has
        probes and `start` is given; with "metrics" due in a full-batch program, the range of F
        over the chunk)."""
        ev = (lambda s: self.outputs(s, hp, data, what)) if evaluate else (lambda s: {})  # noqa: E731
        if self.batch_size is None and self.trace_loss:
            probing = bool(self.probes) and start is not None

            def traced(s, i):
                s, F = self.step_with_loss(s, hp, data)
                return s, (F, self.probes_due(s, hp, data, start + i + 1) if probing else {})
            state, (trace, probed) = jax.lax.scan(traced, state, jnp.arange(n_steps, dtype=jnp.int32))
            return state, {**ev(state), "loss_trace": trace, **({"probe_trace": probed} if probing else {})}
        if self.batch_size is None:  # full batch: also the range of F(t) over the chunk's steps
            def body(carry, _):
                s, lo, hi = carry
                s, F = self.step_with_loss(s, hp, data)
                return (s, jnp.minimum(lo, F), jnp.maximum(hi, F)), None

            inf = jnp.asarray(jnp.inf, self.loss_dtype(data))
            (state, lo, hi), _ = jax.lax.scan(body, (state, inf, -inf), None, length=n_steps)
            out = ev(state)
            return state, {**out, "loss_min": lo, "loss_max": hi} if "metrics" in what else out
        state, _ = jax.lax.scan(lambda s, _: (self.epoch(s, hp, data), None), state, None, length=n_steps)
        return state, ev(state)


@dataclass
class Timing:
    compile_s: float
    train_s: float


class Compiled:
    """A training program compiled once for `n_runs` stacked runs of one shape, callable on any
    states/hyper-parameters of that shape (a phase diagram reuses it for every chunk of its grid).
    Runs are sharded over the local devices (padded to a multiple of their number), and within a
    device lifted by `over_runs`. `steps` and `log_every` count chunk units: steps of a
    full-batch program, epochs of a mini-batch one. Chunks end at every log point and at
    `extra_bounds` (checkpoints); each returns what is due there. Probes do not end chunks: they
    run inside a chunk's scan on their own cadence (Program.probes_due), and their values come back
    with the chunk."""

    def __init__(self, program: Program, states: TrainState, hp: Hyper, data: Data, steps: int,
                 log_every: int, hp_axis: int | None = None, vmap_size: int | None = None,
                 devices: list | None = None, extra_bounds: tuple[int, ...] = ()):
        self.n_runs = states.step.shape[0]
        devices = list(devices or jax.local_devices())[:self.n_runs]
        self.n_dev = len(devices)
        self.n_padded = runs_per_device(self.n_runs, self.n_dev, vmap_size, program.group_min) * self.n_dev
        self.hp_axis, self.steps, self.log_every = hp_axis, steps, log_every
        self.probes = tuple((p.name, p.every) for p in program.probes)
        self.bounds = sorted({*range(log_every, steps, log_every), *(b for b in extra_bounds if 0 < b < steps), steps})
        mesh = Mesh(np.array(devices), ("runs",))
        self.runs_sharding = NamedSharding(mesh, P("runs"))
        self.replicated = NamedSharding(mesh, P())
        hp_spec = P("runs") if hp_axis == 0 else P()

        def lift(fn, out_specs, group=vmap_size, shared=0):  # shared: unbatched arguments after data
            local = over_runs(fn, self.n_padded // self.n_dev, group, hp_axis)
            return jax.shard_map(local, mesh=mesh, in_specs=(P("runs"), hp_spec, P(), *(P(),) * shared),
                                 out_specs=out_specs, check_vma=False)

        self._lift = lift
        self._program = program
        t0 = time.perf_counter()
        self._args = self._place(states, hp, data)
        self._evals: dict[tuple, Any] = {}
        self.runners: dict[tuple, Any] = {}
        self._evaluator(self.due(0, probes=True))
        for a, b in zip([0, *self.bounds], self.bounds):
            self._runner(b - a, self.due(b))
        self.compile_s = time.perf_counter() - t0

    def due(self, unit: int, probes: bool = False) -> tuple[str, ...]:
        """What is computed at chunk end `unit`: "metrics" at log points (and the start and end),
        and with `probes` (the first unit of a call; later ones are probed inside the chunks) the
        probes whose cadence divides it."""
        what = ("metrics",) if unit % self.log_every == 0 or unit in (0, self.steps) else ()
        return what + (tuple(name for name, every in self.probes if unit % every == 0) if probes else ())

    def _evaluator(self, what: tuple[str, ...]):
        """The compiled outputs `what` of every run. With a fused training step (compiler_options
        set) one run at a time: a run's metrics then do not depend on how many runs share the
        program (vmapped library dots block by the batch), i.e. on chunking or device count."""
        if what not in self._evals:
            fn = partial(self._program.outputs, what=what)
            lifted = self._lift(fn, P("runs"), 1) if self._program.compiler_options else self._lift(fn, P("runs"))
            self._evals[what] = jax.jit(lifted).lower(*self._args).compile()
        return self._evals[what]

    def _runner(self, n: int, what: tuple[str, ...]):
        """The compiled chunk of n units ending with `what` (compiled on first use: a resumed run
        may need a new length). A program with compiler_options (dlf.core.fused) has them for its
        training steps only: the outputs are computed by the plain evaluator right after, so
        metrics and probes never depend on those options."""
        if (n, what) not in self.runners:
            options = self._program.compiler_options
            fn = lambda st, hp, data, start: self._program.chunk(st, hp, data, n, what, options is None, start)  # noqa: E731
            lowered = jax.jit(self._lift(fn, (P("runs"), P("runs")), shared=1), donate_argnums=0).lower(
                *self._args, self._unit(0))
            train = lowered.compile(options)
            if options is None:
                self.runners[n, what] = train
            else:
                evaluate = self._evaluator(what)

                def run(states, hp, data, start):
                    states, extra = train(states, hp, data, start)
                    return states, {**evaluate(states, hp, data), **extra}
                self.runners[n, what] = run
        return self.runners[n, what]

    def _unit(self, unit: int) -> jax.Array:
        """A chunk's first unit, as the same value on every device."""
        return jax.device_put(np.int32(unit), self.replicated)

    def _deliver(self, on_metrics, start: int, unit: int, out: dict) -> None:
        """Hand a chunk's host outputs to on_metrics: first one call per unit in (start, unit] where a
        probe was due inside the chunk (its values and the chunk's diverged_step: a run's divergence
        step never changes once set), then the chunk end's outputs."""
        probed = out.pop("probe_trace", None)
        if probed:
            for u in range(start + 1, unit + 1):
                values = {k: v[:, u - start - 1] for name, every in self.probes if u % every == 0
                          for k, v in probed[name].items()}
                if values:
                    on_metrics(u, {**values, "diverged_step": out["diverged_step"]})
        on_metrics(unit, out)

    def _place(self, states, hp, data):
        states = jax.device_put(pad_runs(states, self.n_padded), self.runs_sharding)
        if self.hp_axis == 0:
            hp = jax.device_put(pad_runs(hp, self.n_padded), self.runs_sharding)
        else:
            hp = jax.device_put(hp, self.replicated)
        return states, hp, jax.device_put(data, self.replicated)

    def __call__(self, states: TrainState, hp: Hyper, data: Data,
                 on_metrics: Callable[[int, dict], None], start: int = 0,
                 after_chunk: Callable[[int, TrainState], None] | None = None,
                 flush_at: Callable[[int], bool] | None = None) -> tuple[TrainState, float]:
        """Train from unit `start` (a resumed run) to the end; call on_metrics(unit, host_outputs)
        at `start` and at every chunk end, and after_chunk(unit, states) right after each chunk
        (for checkpoints; it syncs; returning True stops training there). Host reads of outputs
        happen one chunk behind the device (the next chunk is dispatched first), so the device
        never waits on the host; where flush_at(unit) (a checkpoint), that chunk's outputs are
        delivered before after_chunk, so a checkpoint never precedes its own metrics row. Returns
        the final states and the training wall time."""
        n = self.n_runs
        cut = lambda tree: jax.tree.map(lambda x: x[:n], tree)  # noqa: E731 - host outputs: drop padding runs
        t1 = time.perf_counter()
        states, hp, data = self._place(states, hp, data)
        deliver = lambda a, b, out: self._deliver(on_metrics, a, b, cut(jax.device_get(out)))  # noqa: E731 - host sync
        pending = (start, start, self._evaluator(self.due(start, probes=True))(states, hp, data))
        unit = start
        for end in (b for b in self.bounds if b > start):
            states, out = self._runner(end - unit, self.due(end))(states, hp, data, self._unit(unit))
            if pending is not None:
                deliver(*pending)  # host sync, previous chunk
            pending = (unit, end, out)
            unit = end
            if flush_at is not None and flush_at(unit):
                deliver(*pending)  # host sync: this chunk, before its checkpoint
                pending = None
            if after_chunk is not None and after_chunk(unit, first_runs(states, n)):
                break  # asked to stop here (preemption): this chunk's outputs are still delivered
        if pending is not None:
            deliver(*pending)
        states = jax.block_until_ready(first_runs(states, n))
        return states, time.perf_counter() - t1


def fit(program: Program, states: TrainState, hp: Hyper, data: Data, steps: int, log_every: int,
        on_metrics: Callable[[int, dict], None], hp_axis: int | None = None,
        vmap_size: int | None = None, devices: list | None = None):
    """Compile and train `states` (leading axis = run) for `steps` steps, calling
    on_metrics(step, host_metrics) at step 0 and after every chunk of `log_every` steps."""
    compiled = Compiled(program, states, hp, data, steps, log_every, hp_axis, vmap_size, devices)
    states, train_s = compiled(states, hp, data, on_metrics)
    return states, Timing(compile_s=compiled.compile_s, train_s=train_s)
