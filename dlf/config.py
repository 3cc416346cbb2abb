"""The typed, validated run configuration built from the composed Hydra config. Groups with
variants (model, dataset, optimizer) and the probes take their typed configs from the registries."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlf.core.losses import LOSSES
from dlf.core.optim import OPTIMIZERS
from dlf.core.registry import import_plugins
from dlf.core.schedule import ORDERS, SHAPES
from dlf.core.typed import INT32_MAX, build, named_groups, setting, variant
from dlf.data import DATASETS
from dlf.errors import ConfigError
from dlf.models import MODELS
from dlf.probes.evaluators import PROBES

__all__ = ["Config", "ConfigError", "from_dict", "from_hydra", "read_yaml", "replace", "stored", "to_dict"]

_f = setting
MAX_SEED = INT32_MAX  # seeds travel as uint32 inside the compiled init
# sections that never change what a run computes: they may differ between two processes on one run
# directory, and they define no cell of a results table
FREE = ("logger", "compile_cache", "checkpoint", "grid", "paths", "stats", "figures")


def run_name(_root_: Any) -> str:
    """`${dlf_run_name:}`, the default run directory's name: A<A>_T<T>_s<seed>_<hash>, where
    <hash> is 10 hex digits of the SHA-256 of the resolved configuration without `hydra` and the
    FREE keys. The same command (the same configuration) names the same directory, so it resumes
    there; two configurations never share one; any number of overrides fits a file name."""
    import hashlib
    import json

    from omegaconf import OmegaConf

    keys = [k for k in _root_ if k != "hydra" and k not in FREE]
    data = OmegaConf.to_container(OmegaConf.masked_copy(_root_, keys), resolve=True)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
    s = data.get("schedule", {})
    return f"A{float(s.get('A', 1)):g}_T{s.get('T')}_s{data.get('seed')}_{digest}"


def register_resolvers() -> None:
    """OmegaConf resolvers used in conf/: `${div:a,b}` = round(a / b) (Fig. 5: T = 5000/eta);
    `${dlf_run_name:}` (run_name)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("div", lambda a, b: round(float(a) / float(b)), replace=True)
    OmegaConf.register_new_resolver("dlf_run_name", run_name, replace=True)
    from dlf.tracking.naming import register_resolver  # ${dlf_varying:} of hydra.sweep.subdir

    register_resolver()


def choice(registry, default: str, doc: str = "") -> Any:
    """A string field whose allowed values are the names in `registry` (checked when built)."""
    return field(default=default, metadata=dict(choose=registry, doc=doc))


@dataclass(frozen=True)
class ScheduleConfig:
    shape: str = choice(SHAPES, "triangle", doc="g(t) of the emphasised class: " + ", ".join(SHAPES.names()))
    A: float = _f(10.0, low=1.0, doc="amplitude (1 = ordinary loss)")
    T: int = _f(100, low=2, doc="period in steps")
    off_last_periods: int = _f(1, low=0, doc="oscillations off for the last N periods (spiral protocol: 1)")
    off_from_step: int | None = _f(None, low=0, doc="oscillations off from this step on (wins)")
    off_from_epoch: float | None = _f(None, low=0.0, doc="oscillations off from this epoch on (epoch runs)")
    off_align: str = _f("notebook", choices=("notebook", "period", "literal"),
                        doc="off_last_periods: notebook = the first period boundary >= steps - N*P (the authors' "
                        "notebooks); period = the last boundary <= that; literal = steps - N*P itself")
    order: str = _f("cyclic", choices=ORDERS, doc="emphasised class per period: cyclic (k = period mod C, the "
                    "paper) | random (each cycle of C periods in its own random order) | fixed (class 0)")
    order_seed: int = _f(0, low=0, high=INT32_MAX, doc="order=random: the seed of the class orders (the same "
                         "for every run seed)")
    period: str = _f("T", choices=("T", "T+1"), doc="the length P of a period in steps: T (dlf) | T+1 (the authors' "
                     "notebook restarts its counter after t > T)")
    target: str = _f("classes", choices=("classes", "lr"), doc="classes: Gamma weights the classes (the dynamical "
                     "loss) | lr: the loss is the ordinary one and each step is scaled by max_i Gamma_i(t) (a control)")

    @property
    def period_extra(self) -> int:  # steps a period lasts beyond T
        return 1 if self.period == "T+1" else 0

    def program_options(self) -> dict:
        """The static schedule options of dlf.core.engine.Program."""
        return dict(shape=self.shape, order=self.order, order_seed=self.order_seed, period_extra=self.period_extra,
                    target=self.target)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = _f(35_000, low=1, doc="full-batch runs: minimisation steps")
    epochs: int | None = _f(None, low=1, doc="mini-batch runs: epochs (set together with batch_size)")
    batch_size: int | None = _f(None, low=1, doc="mini-batch size; null = full batch (steps)")
    eval_batch_size: int = _f(1000, low=1, doc="mini-batch runs: images per evaluation batch")
    log_every: int = _f(500, low=1, doc="steps (full batch) or epochs (mini-batch) between log points")
    vmap_size: int | None = _f(None, low=1, doc="runs vectorised together (null: auto: 1 on CPU, all on GPU, "
                               "32 for the fused step)")
    step: str = _f("auto", choices=("auto", "fused", "generic"),
                   doc="fused: the MLP's two-loop step (dlf.core.fused); auto: fused on CPU where it applies")
    max_cpu_hours: float | None = _f(24.0, low=0.0, doc="a mini-batch run on a CPU estimated to take longer is "
                                     "refused before training (null: no limit)")


@dataclass(frozen=True)
class CheckpointConfig:
    every_epochs: int = _f(0, low=0, doc="mini-batch runs: orbax checkpoint every N epochs (0: off)")
    every_steps: int = _f(0, low=0, doc="full-batch runs: orbax checkpoint every N steps (0: off)")
    keep: int = _f(2, low=1, doc="checkpoints kept (the newest)")
    allow_other_code: bool = _f(False, doc="resume checkpoints (or a grid's finished runs) written by another "
                                "version of dlf's source; each segment's version is recorded in summary.json")


@dataclass(frozen=True)
class LoggerConfig:
    name: str = _f("none", choices=("none", "wandb"), doc="none = local files only")
    mode: str = _f("online", choices=("online", "offline", "disabled"), doc="wandb mode (logger=wandb)")
    project: str = _f("dlf", doc="W&B project")
    entity: str | None = _f(None, doc="W&B entity (team or user); null = your default")
    group: str | None = _f(None, doc="W&B group; null = the sweep directory (multirun) or none")
    tags: tuple[str, ...] = _f((), doc="extra W&B tags (A, T and seed are always added)")


@dataclass(frozen=True)
class StatsConfig:
    baseline: str = _f("A=1", doc="the cell every cell is compared with: key=value[,key=value], every other key "
                       "equal (A=1: the ordinary loss)")
    metric: str = _f("val_acc", choices=("val_acc", "train_acc"), doc="the final metric that picks the best cell")


@dataclass(frozen=True)
class PathsConfig:
    output_dir: str = _f("outputs", doc="root of run, sweep, phase and cache directories (conf/paths: "
                         "$DLF_OUTPUT_DIR, else outputs)")


@dataclass(frozen=True)
class GridConfig:
    A: tuple[float, ...] | None = _f(None, low=1.0, doc="amplitudes of a phase diagram (null: schedule.A)")
    T: tuple[int, ...] | None = _f(None, low=2, doc="periods of a phase diagram (null: schedule.T)")
    lr: tuple[float, ...] | None = _f(None, gt=0.0, doc="learning rates of a grid, traced per run (null: optimizer.lr)")
    lr_T: tuple[int, ...] | None = _f(None, low=2, doc="set by dlf.phase: schedule.T resolved at each grid.lr")
    lr_steps: tuple[int, ...] | None = _f(None, low=1, doc="set by dlf.phase: train.steps resolved at each grid.lr")
    chunk_runs: int | None = _f(None, low=1, doc="runs per compiled program call (null: from memory)")
    shards: int = _f(1, low=1, doc="split the grid's points into N jobs of a SLURM array (hydra/launcher=slurm)")
    shard: int | None = _f(None, low=0, doc="the shard this job trains (set by dlf.phase; null: all points)")


@dataclass(frozen=True)
class Config:
    seed: int = _f(0, low=0, high=MAX_SEED, doc="first seed; seeds seed..seed+seeds-1 are trained")
    seeds: int = _f(8, low=1, doc="number of seeds trained in one compiled program")
    precision: str = _f("float32", choices=("float32", "float64", "bfloat16"),
                        doc="bfloat16: convolutions/matmuls in bf16, params, optimizer and loss in f32")
    loss: str = choice(LOSSES, "cross_entropy",
                       doc="dynamical loss: CE, or MSE weighted per sample (by its class) or per output")
    dataset: Any = variant(DATASETS, "spiral", doc="dataset.name chooses the variant")
    model: Any = variant(MODELS, "mlp", doc="model.name chooses the variant")
    optimizer: Any = variant(OPTIMIZERS, "gd", doc="optimizer.name chooses the variant")
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probes: dict = named_groups(PROBES, doc="one group per registered probe, each with its own `every`")
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    compile_cache: str | None = _f(".jax_cache", doc="JAX persistent compilation cache directory, shared by "
                                   "the jobs of a sweep; relative to paths.output_dir (null: off)")
    figures: bool = _f(True, doc="draw dynamics.png, probes.png, phase.png (false: only their data; $DLF_FIGURES)")
    plugins: tuple[str, ...] = _f((), doc="modules imported before validation (they register models, losses, ...)")
    matmul_precision: str = _f("default", choices=("default", "high", "highest"),
                               doc="jax_default_matmul_precision for float32 matmuls/convs (default: "
                               "JAX's own, TF32 on NVIDIA GPUs; highest: true float32)")

    @property
    def probing(self) -> bool:
        """Any probe switched on (then per-step F is recorded too)."""
        return any(p.every > 0 for p in self.probes.values())

    @property
    def epoch_run(self) -> bool:
        """Mini-batch training counted in epochs (train.batch_size set), else full-batch steps."""
        return self.train.batch_size is not None

    def steps_per_epoch(self, n_train: int) -> int:
        """Mini-batch steps per epoch: the last incomplete batch of each permutation is dropped."""
        return n_train // self.train.batch_size if self.epoch_run else 1

    def total_steps(self, n_train: int | None = None) -> int:
        if self.epoch_run:
            return self.train.epochs * self.steps_per_epoch(n_train)
        return self.train.steps

    def off_step_for(self, n_train: int | None = None, T: int | None = None, steps: int | None = None) -> int | None:
        """First step with oscillations off (Gamma = 1), or None if they never stop, for the period
        T (default schedule.T; a grid has one per point) and a run of `steps` steps (default
        total_steps; a grid over grid.lr has one per lr). Precedence: `schedule.off_from_step`,
        then `off_from_epoch` (epoch runs), then `off_last_periods`."""
        s = self.schedule
        T = s.T if T is None else T
        if s.off_from_step is not None:
            return s.off_from_step
        if s.off_from_epoch is not None:
            return round(s.off_from_epoch * self.steps_per_epoch(n_train))
        if s.off_last_periods > 0:
            P = T + s.period_extra
            off = max(0, (self.total_steps(n_train) if steps is None else steps) - s.off_last_periods * P)
            if s.off_align == "notebook":
                return -(-off // P) * P
            return off - off % P if s.off_align == "period" else off
        return None

    @property
    def compile_cache_dir(self) -> Path | None:
        """compile_cache as a directory (a relative one inside paths.output_dir), None when off."""
        return None if self.compile_cache is None else Path(self.paths.output_dir) / self.compile_cache

    @property
    def off_step(self) -> int | None:
        """off_step_for() of a full-batch run."""
        return self.off_step_for(None)


def _check_cross(cfg: Config) -> Config:
    if cfg.seed + cfg.seeds - 1 > MAX_SEED:
        raise ConfigError(f"seed + seeds - 1 = {cfg.seed + cfg.seeds - 1} is not allowed; expected <= {MAX_SEED}")
    s, t, o = cfg.schedule, cfg.train, cfg.optimizer
    if (t.batch_size is None) != (t.epochs is None):
        raise ConfigError(f"train.batch_size={t.batch_size} with train.epochs={t.epochs} is not allowed; "
                          "set both (mini-batch, epochs) or neither (full batch, train.steps)")
    for key, value in (("schedule.off_from_epoch", s.off_from_epoch), ("optimizer.warmup_epochs", o.warmup_epochs)):
        if value is not None and not cfg.epoch_run:
            raise ConfigError(f"{key}={value} is not allowed in a full-batch run; use the step count "
                              "(schedule.off_from_step, optimizer.warmup_steps) or set train.batch_size and "
                              "train.epochs")
    c = cfg.checkpoint
    if c.every_epochs and not cfg.epoch_run or c.every_steps and cfg.epoch_run:
        wrong, right = ("checkpoint.every_epochs", "checkpoint.every_steps")[::1 if c.every_epochs else -1]
        raise ConfigError(f"{wrong}={c.every_epochs or c.every_steps} is not allowed in a "
                          f"{'full-batch' if c.every_epochs else 'mini-batch'} run; use {right}")
    if c.every_steps and cfg.probing:
        raise ConfigError(f"checkpoint.every_steps={c.every_steps} is not allowed with probes on; expected 0 "
                          "(a probe run keeps its per-step loss in memory and cannot resume)")
    for name, p in cfg.probes.items():
        if p.every and cfg.epoch_run:
            raise ConfigError(f"probes.{name}.every={p.every} is not allowed in a mini-batch run; expected 0 "
                              "(the probes measure the full-batch loss of full-batch runs)")
    model, data = MODELS[cfg.model.name], DATASETS[cfg.dataset.name]
    if cfg.precision not in model.precisions:
        raise ConfigError(f"precision={cfg.precision} is not allowed with model.name={cfg.model.name}; "
                          f"expected one of: {', '.join(model.precisions)}")
    if model.inputs != data.inputs:
        fits = [n for n in MODELS.names() if MODELS[n].inputs == data.inputs]
        raise ConfigError(f"model.name={cfg.model.name} is not allowed with dataset.name={cfg.dataset.name} "
                          f"({data.inputs} inputs); choose one of: {', '.join(fits)}")
    if s.shape == "static" and s.A != 1.0:
        raise ConfigError(f"schedule.A={s.A:g} is not allowed with schedule.shape=static; expected 1")
    return cfg


def _check_new_run(cfg: Config) -> Config:
    """Checks of what a new run may be (a stored config is read as it ran): a learning-rate
    schedule that cannot complete; a run labelled A > 1 whose switch-off rule turns the
    oscillations off from step 0, which would train exactly as A=1 (a grid: every T of grid.T)."""
    s, t, o = cfg.schedule, cfg.train, cfg.optimizer
    if o.final_lr > o.lr and o.lr_schedule != "constant":
        raise ConfigError(f"optimizer.final_lr={o.final_lr:g} is not allowed; expected <= optimizer.lr={o.lr:g} "
                          f"(the end of the {o.lr_schedule} decay)")
    if o.lr_schedule != "constant" and not cfg.epoch_run and (o.warmup_steps or 0) >= t.steps:
        raise ConfigError(f"optimizer.warmup_steps={o.warmup_steps} is not allowed; expected < train.steps="
                          f"{t.steps} (the warm-up would outlast the run)")
    if o.lr_schedule != "constant" and cfg.epoch_run and o.warmup_steps is None and \
            (o.warmup_epochs or 0) >= t.epochs:
        raise ConfigError(f"optimizer.warmup_epochs={o.warmup_epochs:g} is not allowed; expected < train.epochs="
                          f"{t.epochs} (the warm-up would outlast the run)")
    if s.shape == "static" or all(A == 1.0 for A in (cfg.grid.A or (s.A,))):
        return cfg
    if s.off_from_step == 0 or s.off_from_epoch == 0:
        key = "schedule.off_from_step" if s.off_from_step == 0 else "schedule.off_from_epoch"
        raise ConfigError(f"{key}=0 is not allowed with A > 1: the dynamical loss would never switch on "
                          "(Gamma = 1 from step 0); expected > 0, or null")
    if cfg.epoch_run or s.off_from_step is not None or s.off_last_periods == 0:
        return cfg  # epoch runs: their step count needs the data
    key = "grid.T" if cfg.grid.T else "schedule.T"
    never = [T for T in (cfg.grid.T or (s.T,)) if cfg.off_step_for(None, T) == 0]
    if never:
        shown = never[0] if key == "schedule.T" else list(never)
        raise ConfigError(f"{key}={shown} with train.steps={t.steps} and schedule.off_last_periods="
                          f"{s.off_last_periods} is not allowed: the dynamical loss would never switch on "
                          f"(the oscillations are off from step 0); expected train.steps "
                          + (f">= {s.off_last_periods + 1} * P" if s.off_align == "period" else
                             f"> {s.off_last_periods} * P") + f" (P = {s.period}, the period length), "
                          "or schedule.off_last_periods=0")
    return cfg


def _built(data: Any, plugins: bool) -> Config:
    """The validated Config of a plain mapping (missing keys take defaults), its `plugins`
    modules imported first when `plugins` is True."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of keys, got {type(data).__name__}")
    if plugins:
        import_plugins(data.get("plugins"))
    return _check_cross(build(Config, data, ""))


def from_dict(data: Mapping[str, Any], plugins: bool = True) -> Config:
    """The validated Config of a new run from a plain (resolved) mapping; missing keys take defaults.
    The `plugins` modules it names are imported first unless `plugins` is False."""
    return _check_new_run(_built(data, plugins))


def stored(data: Any) -> Config:
    """The Config of a stored record (a summary.json's `config`, a config.yaml, a checkpoint's
    config.json): validated as it ran (not by what a new run may be), and reading results never
    imports (runs) the `plugins` modules it names; a model or loss of a plugin not imported in
    this process is then a ConfigError."""
    return _built(data, plugins=False)


def read_yaml(path: Path) -> Config:
    """The Config stored in a config.yaml (`stored`); a file that cannot be parsed is a ConfigError."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path} cannot be read ({type(e).__name__})") from None
    return stored(data or {})


def from_hydra(cfg: Any) -> Config:
    """Convert a composed DictConfig (resolving interpolations) into a validated Config."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:  # an interpolation that cannot be resolved
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(f"{key}: {str(e).splitlines()[0]}") from None
    data.pop("hydra", None)
    return from_dict(data)


def replace(cfg: Config, **sections: Mapping[str, Any]) -> Config:
    """Return cfg with some keys changed, e.g. replace(cfg, train=dict(steps=10), seeds=2)."""
    def merge(old: Any, new: Any) -> Any:
        if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
            return new
        if "name" in new and new["name"] != old.get("name"):
            return dict(new)  # another variant: its own keys only
        return {**old, **{k: merge(old.get(k), v) for k, v in new.items()}}
    return from_dict(merge(dataclasses.asdict(cfg), sections), plugins=False)


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (what summary.json and config.yaml hold)."""
    return dataclasses.asdict(cfg)


def reference_table() -> str:
    """The markdown table of every key (docs/config.md): defaults of the dataclasses, allowed
    values and meaning; variant keys name their variants."""
    from dlf.core.typed import markdown_table, reference

    return markdown_table(reference(Config))


def write_reference(path: str = "docs/config.md") -> None:
    """Rewrite the table between the markers of docs/config.md (`python -m dlf.config`)."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    start, end = "<!-- config-table -->\n", "<!-- /config-table -->"
    head, rest = text.split(start, 1)
    p.write_text(head + start + reference_table() + "\n" + end + rest.split(end, 1)[1])


def main(argv: list[str] | None = None) -> None:
    """`python -m dlf.config`: every key, its default, what is allowed and what it means (the table
    of docs/config.md, printed: it works where dlf is installed from a wheel, without the docs);
    `--write [PATH]` rewrites that table in docs/config.md of a checkout."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--write"]:
        write_reference(*args[1:2])
    else:
        print(reference_table())


if __name__ == "__main__":
    main()
