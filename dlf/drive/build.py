"""The one builder: config -> program, data, initial states and per-run hyper-parameters. Used by
dlf.train (one config, its seeds), dlf.phase (a grid of (A, T, seed) runs) and the benchmarks. The
builder decides which step trains a config: the core computes (dlf.core.fused), the model's spec
declares what the fused step supports (dlf.models.FusedSupport)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from dlf import data as datasets
from dlf import models
from dlf.config import Config
from dlf.config import replace as replace_config
from dlf.core import fused, optim
from dlf.core.engine import Data, Hyper, Program, TrainState
from dlf.core.losses import LOSSES
from dlf.core.runs import default_vmap_size, take_runs
from dlf.core.schedule import NEVER
from dlf.core.seeds import init_states
from dlf.errors import ConfigError
from dlf.probes import evaluators


@dataclass(frozen=True)
class Run:
    """One trained run: its schedule point and seed (in a grid over grid.lr, also its learning rate
    and number of steps)."""
    A: float
    T: int
    seed: int
    lr: float | None = None
    steps: int | None = None

    @property
    def key(self) -> tuple:
        """What identifies the run in a grid (runs.partial.jsonl, resume): (A, T, seed[, lr])."""
        return (self.A, self.T, self.seed) if self.lr is None else (self.A, self.T, self.seed, self.lr)


@dataclass
class Built:
    program: Program
    data: Data
    model: models.Adapter
    states: TrainState  # stacked initial states, one per run
    hp: Hyper  # per-run (hp_axis 0) when the runs differ in (A, T), else scalars (hp_axis None)
    hp_axis: int | None
    runs: list[Run]
    n_train: int

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def step_name(self) -> str:
        """Which training step the program uses: fused (dlf.core.fused) or generic."""
        return "generic" if self.program.loss_grad is None else "fused"

    @property
    def probe_value_names(self) -> tuple[str, ...]:
        """The names of the values the program's probes return (probes.jsonl columns)."""
        return tuple(n for p in self.program.probes for n in evaluators.PROBES[p.name].names)


def dtype_of(cfg: Config):
    """dtype of vector data, parameters and Gamma (image data stay uint8 on the device)."""
    return jnp.float64 if cfg.precision == "float64" else jnp.float32


def load_data(cfg: Config) -> tuple[Data, np.ndarray]:
    """The dataset on the device as a Data tuple, and the training labels on the host."""
    train, val = datasets.build(cfg.dataset)
    labels = np.concatenate([train.y, val.y])
    if labels.size and (labels.min() < 0 or labels.max() >= cfg.dataset.classes):
        raise ConfigError(f"dataset.classes={cfg.dataset.classes} is not allowed; the labels run from "
                          f"{labels.min()} to {labels.max()}")
    if train.x.dtype == np.uint8:  # images: standardised per channel inside the step
        from dlf.data.cifar10 import channel_stats

        mean, std = channel_stats(train.x)
        data = Data(jnp.asarray(train.x), jnp.asarray(train.y, jnp.int32), jnp.asarray(val.x),
                    jnp.asarray(val.y, jnp.int32), jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))
    else:
        dtype = dtype_of(cfg)
        data = Data(jnp.asarray(train.x, dtype), jnp.asarray(train.y, jnp.int32),
                    jnp.asarray(val.x, dtype), jnp.asarray(val.y, jnp.int32))
    return data, np.asarray(train.y)


def fused_blocker(cfg: Config) -> str | None:
    """Why the fused step cannot train cfg (None: it can): the program's side (loss, batching,
    probes, inputs) and the model's declaration, field by field (models.fused_blocker)."""
    if cfg.loss != "cross_entropy":
        return f"loss={cfg.loss} (fused: cross_entropy only)"
    if cfg.epoch_run:
        return "mini-batch run (fused: full batch only)"
    if cfg.probing:
        return "probes on (fused: every probe's every=0 only)"
    if datasets.DATASETS[cfg.dataset.name].inputs != "vector":
        return f"dataset.name={cfg.dataset.name} (fused: plain vector inputs only)"
    return models.fused_blocker(cfg.model)


def use_fused(cfg: Config, backend: str) -> bool:
    """train.step: fused -> yes (a ConfigError if it cannot); generic -> no; auto -> on CPU when it can."""
    why = fused_blocker(cfg)
    if cfg.train.step == "fused" and why:
        raise ConfigError(f"train.step=fused is not allowed with {why}; expected train.step=auto or generic")
    return why is None and (cfg.train.step == "fused" or (cfg.train.step == "auto" and backend == "cpu"))


def with_fused_step(program: Program, support: models.FusedSupport) -> Program:
    """`program` training with the fused gradient of the model `support` declares, its chunks
    compiled with fused.COMPILER_OPTIONS, and at least fused.GROUP_MIN runs vectorised together."""
    def loss_grad(params, x, y, gamma_C):
        F, grads = fused.loss_and_grad(support.arrays(params), x, y, gamma_C)
        return F, support.tree(grads)
    return dataclasses.replace(program, loss_grad=loss_grad, compiler_options=fused.COMPILER_OPTIONS,
                               group_min=fused.GROUP_MIN)


def program_of(cfg: Config, model: models.Adapter, n_train: int, y_train: np.ndarray) -> Program:
    """The static training program of a config (model, optimizer, loss, probes, batching, step)."""
    C = cfg.dataset.classes
    if cfg.epoch_run and cfg.train.batch_size > n_train:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not allowed; expected <= {n_train}, "
                          "the number of training examples")
    probes = evaluators.build(cfg.probes, evaluators.ProbeContext(y_train, C))
    slots = tuple(evaluators.PROBES.names().index(p.name) for p in probes)
    spe, total = cfg.steps_per_epoch(n_train), cfg.total_steps(n_train)
    program = Program(apply=model.apply, tx=optim.build(cfg.optimizer, spe, total), loss=LOSSES[cfg.loss],
                      num_classes=C, probes=probes, probe_slots=slots, trace_loss=bool(probes),
                      **cfg.schedule.program_options(), batch_size=cfg.train.batch_size, steps_per_epoch=spe,
                      eval_batch=cfg.train.eval_batch_size,
                      compute_dtype=models.COMPUTE_DTYPES[cfg.precision] if model.spec.inputs == "image" else None)
    if use_fused(cfg, jax.default_backend()):
        program = with_fused_step(program, model.spec.fused)
    return program


def runs_vectorised(cfg: Config, program: Program) -> int | None:
    """train.vmap_size, else: fused.VMAP_SIZE runs at a time for the fused step (measured), else by backend."""
    return cfg.train.vmap_size or (fused.VMAP_SIZE if program.loss_grad is not None else default_vmap_size())


def build(cfg: Config, points: list[tuple] | None = None) -> Built:
    """Everything a run needs. Without `points`: cfg's seeds at (schedule.A, schedule.T) with scalar
    hyper-parameters. With `points`: every (A, T) or (A, T, lr, steps) x seed, point-major, with
    per-run hyper-parameters (the same initial states at every point); with an lr (grid.lr) the
    transformation is built with lr 1 and each run's lr and end step are traced. Call inside
    `jax.enable_x64(cfg.precision == "float64")`."""
    per_lr = bool(points) and len(points[0]) == 4 and points[0][2] is not None
    if per_lr:
        if cfg.optimizer.lr_schedule != "constant":
            raise ConfigError(f"grid.lr is not allowed with optimizer.lr_schedule={cfg.optimizer.lr_schedule}; "
                              "expected constant (each run's updates are scaled by its lr)")
        tx_cfg = replace_config(cfg, optimizer={"lr": 1.0})
    data, y_train = load_data(cfg)
    n_train = int(data.x_train.shape[0])
    model = models.build(cfg.model, cfg.dataset.classes, cfg.precision)
    program = program_of(tx_cfg if per_lr else cfg, model, n_train, y_train)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    x_example = program.inputs(data.x_train[:1], data)
    check_fits(cfg, model, x_example, n_train + int(data.x_val.shape[0]), len(seeds) * len(points or [0]))
    seed_states = init_states(model, program.tx, seeds, x_example, lambda m, key, x: model.init(key, x))
    dtype = program.loss_dtype(data)
    off = lambda T, steps=None: NEVER if (o := cfg.off_step_for(n_train, T, steps)) is None else o  # noqa: E731
    if points is None:
        hp = Hyper(A=jnp.asarray(cfg.schedule.A, dtype), T=jnp.asarray(cfg.schedule.T, jnp.int32),
                   off_step=jnp.asarray(off(cfg.schedule.T), jnp.int32))
        runs = [Run(cfg.schedule.A, cfg.schedule.T, s) for s in seeds]
        return Built(program, data, model, seed_states, hp, None, runs, n_train)
    runs = [Run(float(p[0]), int(p[1]), s, *p[2:]) for p in points for s in seeds]
    offs = {(r.T, r.steps): off(r.T, r.steps) for r in runs}
    hp = Hyper(A=jnp.asarray([r.A for r in runs], dtype), T=jnp.asarray([r.T for r in runs], jnp.int32),
               off_step=jnp.asarray([offs[r.T, r.steps] for r in runs], jnp.int32))
    if per_lr:
        hp = hp._replace(end_step=jnp.asarray([r.steps for r in runs], jnp.int32),
                         lr=jnp.asarray([r.lr for r in runs], dtype))
    states = take_runs(seed_states, jnp.asarray([i for _ in points for i in range(len(seeds))]))
    return Built(program, data, model, states, hp, 0, runs, n_train)


def bytes_per_run(built: Built, dtype) -> int:
    """A rough upper bound of one full-batch run's device memory: parameters, gradients and
    optimizer state (6 copies), and activations of every layer over the training and validation
    sets (4 copies: forward, backward, evaluation), from the model's intermediates."""
    params = jax.tree.map(lambda x: x[0], built.states.params)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    x = built.program.inputs(built.data.x_train[:1], built.data)
    per_example = built.model.activations_per_example(params, jax.tree.map(lambda s: s[0], built.states.model_state), x)
    n = built.data.x_train.shape[0] + built.data.x_val.shape[0]
    return jnp.dtype(dtype).itemsize * (6 * n_params + 4 * n * per_example)


def _memory_bytes() -> int:
    """The first device's memory (its limit on accelerators, the host's RAM on CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(cfg: Config, model: models.Adapter, x_example, n_examples: int, n_runs: int) -> None:
    """Refuse, before anything is allocated, runs that cannot fit in memory: parameters, gradients
    and optimizer state of every run (6 copies) plus the activations of one run over the examples
    it evaluates at once (4 copies), from the model's abstract shapes."""
    params, state = jax.eval_shape(lambda k: model.init(k, x_example), jax.random.key(0))
    n_params = sum(x.size for x in jax.tree.leaves(params))
    per_example = model.activations_per_example(params, state, x_example)
    batch = max(cfg.train.batch_size, cfg.train.eval_batch_size) if cfg.epoch_run else n_examples
    need = (8 if cfg.precision == "float64" else 4) * (6 * n_params * n_runs + 4 * batch * per_example)
    have = _memory_bytes()
    if need > have:
        raise ConfigError(f"model.width/depth and seeds: {n_runs} run(s) of {n_params:,} parameters and "
                          f"{per_example:,} activations per example need ~{need / 2**30:.1f} GiB, more than the "
                          f"{have / 2**30:.1f} GiB of the {jax.default_backend()} device; reduce model.width, seeds "
                          "or the data size")
