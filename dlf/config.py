"""Typed, validated run configuration built from the composed Hydra config."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping


class ConfigError(ValueError):
    """A user error in the configuration; its message is one line naming the key."""


def _f(default: Any, *, low: float | None = None, gt: float | None = None, high: float | None = None,
       choices: tuple[str, ...] | None = None, doc: str = "") -> Any:
    """A dataclass field carrying its allowed range or choices (checked when built)."""
    return field(default=default, metadata=dict(low=low, gt=gt, high=high, choices=choices, doc=doc))


MAX_SEED = 2**31 - 1


def register_resolvers() -> None:
    """OmegaConf resolvers used in conf/: `${div:a,b}` = round(a / b) (Fig. 5: T = 5000/eta)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("div", lambda a, b: round(float(a) / float(b)), replace=True)  # seeds travel as uint32 inside the compiled init


@dataclass(frozen=True)
class DatasetConfig:
    name: str = _f("spiral", choices=("spiral", "cifar10"))
    classes: int = _f(3, low=2, doc="number of classes (spiral: arms)")
    per_class: int = _f(100, low=1, doc="spiral: points per arm, train and validation each")
    noise: float = _f(0.2, low=0.0, doc="spiral: std of the angle noise (radians)")
    turns: float = _f(2.0, gt=0.0, doc="spiral: angle 2*pi*j/C + 2*pi*turns*r")
    train_seed: int = _f(0, low=0, doc="spiral: numpy seed of the training noise (authors' set: 0)")
    val_seed: int = _f(1, low=0, doc="spiral: numpy seed of the validation radii and noise")
    source: str = _f("local", choices=("local", "tfds"), doc="cifar10: where the images come from")
    path: str | None = _f(None, doc="cifar10, source=local: a cifar-10-batches-py directory")
    data_dir: str | None = _f(None, doc="cifar10, source=tfds: the tensorflow-datasets data_dir")
    subset: int | None = _f(None, low=1, doc="cifar10: use the first N training (and test) images")


@dataclass(frozen=True)
class ModelConfig:
    name: str = _f("mlp", choices=("mlp", "myrtle", "wrn"))
    width: int = _f(100, low=1, doc="mlp: hidden units; myrtle: channels")
    init: str = _f("lecun", choices=("lecun", "glorot"), doc="mlp initialisation preset")
    depth: int = _f(5, low=1, doc="myrtle: 5, 7 or 10; wrn: 6n+4 (16, 28, ...)")
    widen: int = _f(4, low=1, doc="wrn: widening factor k")
    parameterization: str = _f("standard", choices=("standard", "ntk"), doc="myrtle")
    norm: str = _f("batch", choices=("batch", "none"), doc="wrn: batch norm or none")


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = _f("gd", choices=("gd", "sgd", "momentum", "nesterov", "adam"))
    lr: float = _f(1.0, gt=0.0, doc="learning rate (the peak of a schedule)")
    momentum: float = _f(0.9, low=0.0, doc="momentum, nesterov: beta")
    b1: float = _f(0.9, low=0.0, doc="adam")
    b2: float = _f(0.999, low=0.0, doc="adam")
    lr_schedule: str = _f("constant", choices=("constant", "piecewise", "cosine"),
                          doc="piecewise: 0 -> lr at warm-up end -> final_lr at the end")
    warmup_epochs: float | None = _f(None, low=0.0, doc="warm-up length in epochs (epoch runs)")
    warmup_steps: int | None = _f(None, low=0, doc="warm-up length in steps (wins over epochs)")
    final_lr: float = _f(0.0, low=0.0, doc="learning rate at the last step (piecewise, cosine)")


@dataclass(frozen=True)
class ScheduleConfig:
    shape: str = _f("triangle", choices=("triangle", "cosine", "square", "static"))
    A: float = _f(10.0, low=1.0, doc="amplitude (1 = ordinary loss)")
    T: int = _f(100, low=2, doc="period in steps")
    off_last_periods: int = _f(0, low=0, doc="oscillations off for the last N periods")
    off_from_step: int | None = _f(None, low=0, doc="oscillations off from this step on (wins)")
    off_from_epoch: float | None = _f(None, low=0.0, doc="oscillations off from this epoch on (epoch runs)")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = _f(35_000, low=1, doc="full-batch runs: minimisation steps")
    epochs: int | None = _f(None, low=1, doc="mini-batch runs: epochs (set together with batch_size)")
    batch_size: int | None = _f(None, low=1, doc="mini-batch size; null = full batch (steps)")
    eval_batch_size: int = _f(1000, low=1, doc="mini-batch runs: images per evaluation batch")
    log_every: int = _f(500, low=1, doc="steps (full batch) or epochs (mini-batch) between log points")
    vmap_size: int | None = _f(None, low=1, doc="runs vectorised together (null: auto by backend)")
    step: str = _f("auto", choices=("auto", "fused", "generic"),
                   doc="fused: the MLP's two-loop step (dlf.fused); auto: fused on CPU where it applies")


@dataclass(frozen=True)
class HessianProbeConfig:
    order: int = _f(20, low=1, doc="Lanczos order (full reorthogonalisation)")


@dataclass(frozen=True)
class NTKProbeConfig:
    enabled: bool = _f(True, doc="probe the NTK too")
    samples: int = _f(51, low=1, doc="points of the NTK sample set")
    set: str = _f("balanced", choices=("balanced", "first"), doc="balanced: per class; first: the first N")
    order: int = _f(20, low=1, doc="Lanczos order of the matrix-free NTK")
    explicit_max: int = _f(60, low=0, doc="explicit J J^T + eigvalsh up to this many samples x outputs")


@dataclass(frozen=True)
class ProbesConfig:
    every: int = _f(0, low=0, doc="steps between probes (0: off, no cost)")
    hessian: HessianProbeConfig = field(default_factory=HessianProbeConfig)
    ntk: NTKProbeConfig = field(default_factory=NTKProbeConfig)


@dataclass(frozen=True)
class CheckpointConfig:
    every_epochs: int = _f(0, low=0, doc="mini-batch runs: orbax checkpoint every N epochs (0: off)")
    keep: int = _f(2, low=1, doc="checkpoints kept (the newest)")


@dataclass(frozen=True)
class LoggerConfig:
    name: str = _f("none", choices=("none", "wandb"), doc="none = local files only")
    mode: str = _f("online", choices=("online", "offline", "disabled"), doc="wandb mode")
    project: str = _f("dlf", doc="W&B project")
    entity: str | None = _f(None, doc="W&B entity (team or user); null = your default")
    group: str | None = _f(None, doc="W&B group; null = the sweep directory (multirun) or none")
    tags: tuple[str, ...] = _f((), doc="extra W&B tags (A, T and seed are always added)")


@dataclass(frozen=True)
class GridConfig:
    A: tuple[float, ...] | None = _f(None, low=1.0, doc="amplitudes of a phase diagram (null: schedule.A)")
    T: tuple[int, ...] | None = _f(None, low=2, doc="periods of a phase diagram (null: schedule.T)")
    chunk_runs: int | None = _f(None, low=1, doc="runs per compiled program call (null: from memory)")


@dataclass(frozen=True)
class Config:
    seed: int = _f(0, low=0, high=MAX_SEED, doc="first seed; seeds seed..seed+seeds-1 are trained")
    seeds: int = _f(8, low=1, doc="number of seeds trained in one compiled program")
    precision: str = _f("float32", choices=("float32", "float64", "bfloat16"),
                        doc="bfloat16: convolutions/matmuls in bf16, params, optimizer and loss in f32")
    loss: str = _f("cross_entropy", choices=("cross_entropy", "mse_sample", "mse_output"),
                   doc="dynamical loss: CE, or MSE weighted per sample (by its class) or per output")
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    compile_cache: str | None = _f(None, doc="JAX persistent compilation cache directory (null: off)")

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

    def off_step_for(self, n_train: int | None = None) -> int | None:
        """First step with oscillations off (Gamma = 1), or None if they never stop. Precedence:
        `schedule.off_from_step`, then `off_from_epoch` (epoch runs), then `off_last_periods`."""
        s = self.schedule
        if s.off_from_step is not None:
            return s.off_from_step
        if s.off_from_epoch is not None:
            return round(s.off_from_epoch * self.steps_per_epoch(n_train))
        if s.off_last_periods > 0:
            return max(0, self.total_steps(n_train) - s.off_last_periods * s.T)
        return None

    @property
    def off_step(self) -> int | None:
        """off_step_for() of a full-batch run."""
        return self.off_step_for(None)


def _allowed(typ: str, meta: Mapping[str, Any]) -> str:
    if meta.get("choices"):
        return "one of: " + ", ".join(meta["choices"])
    if typ.startswith("str"):
        return "a string"
    kind = "an integer" if typ.startswith("int") else "a number"
    if meta.get("low") is not None and meta.get("high") is not None:
        return f"{kind} in [{meta['low']:g}, {meta['high']:d}]"
    if meta.get("low") is not None:
        return f"{kind} >= {meta['low']:g}"
    if meta.get("gt") is not None:
        return f"{kind} > {meta['gt']:g}"
    return kind


def _leaf(key: str, value: Any, f: dataclasses.Field) -> Any:
    """Convert and range-check one leaf, or raise a ConfigError naming the key."""
    typ, meta = str(f.type), f.metadata
    if typ.startswith("tuple["):
        return _tuple_leaf(key, value, typ, meta)
    allowed = _allowed(typ, meta)
    bad = ConfigError(f"{key}={value!r} is not allowed; expected {allowed}")
    if value is None:
        if typ.endswith("| None"):
            return None
        raise bad
    if typ == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not allowed; expected true or false")
        return value
    if typ.startswith("str"):
        if not isinstance(value, str) or (meta.get("choices") and value not in meta["choices"]):
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    if typ.startswith("int"):
        if isinstance(value, float) and not value.is_integer():
            raise bad
        value = int(value)
    else:
        value = float(value)
    if ((meta.get("low") is not None and value < meta["low"])
            or (meta.get("gt") is not None and not value > meta["gt"])
            or (meta.get("high") is not None and value > meta["high"])):
        raise bad
    return value


def _tuple_leaf(key: str, value: Any, typ: str, meta: Mapping[str, Any]) -> tuple | None:
    """A list of leaves of one type (`tuple[int, ...]`), each checked like a scalar."""
    item_typ = typ[len("tuple["):typ.index(",")]
    if value is None and typ.endswith("| None"):
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or (
            meta.get("low") is not None and not value):
        noun = "strings" if item_typ == "str" else f"{_allowed(item_typ, meta).replace('a number', 'numbers').replace('an integer', 'integers')}"
        raise ConfigError(f"{key}={value!r} is not allowed; expected a list of {noun}")
    item = dataclasses.field(metadata=meta)
    item.type = item_typ
    return tuple(_leaf(f"{key}[{i}]", v, item) for i, v in enumerate(value))


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"unknown key {prefix}{unknown[0]}; keys of {where}: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        f, key = fields[name], prefix + name
        if f.default_factory is not dataclasses.MISSING:  # a nested group
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a group of keys, got {value!r}")
            kwargs[name] = _build(f.default_factory, value, key + ".")
        else:
            kwargs[name] = _leaf(key, value, f)
    return cls(**kwargs)


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
                              "(schedule.off_from_step, optimizer.warmup_steps) or set train.batch_size and train.epochs")
    if cfg.probes.every and cfg.epoch_run:
        raise ConfigError(f"probes.every={cfg.probes.every} is not allowed in a mini-batch run; expected 0 "
                          "(the probes measure the full-batch loss of full-batch runs)")
    if cfg.precision == "bfloat16" and cfg.model.name == "mlp":
        raise ConfigError("precision=bfloat16 is not allowed with model=mlp; expected float32 or float64")
    if cfg.precision == "float64" and cfg.model.name != "mlp":
        raise ConfigError(f"precision=float64 is not allowed with model.name={cfg.model.name}; expected float32 or bfloat16")
    if s.shape == "static" and s.A != 1.0:
        raise ConfigError(f"schedule.A={s.A:g} is not allowed with schedule.shape=static; expected 1")
    return cfg


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config from a plain (resolved) mapping; missing keys take defaults."""
    return _check_cross(_build(Config, data, ""))


def from_hydra(cfg: Any) -> Config:
    """Convert a composed DictConfig (resolving interpolations) into a validated Config."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    return from_dict(data)


def replace(cfg: Config, **sections: Mapping[str, Any]) -> Config:
    """Return cfg with some keys changed, e.g. replace(cfg, train=dict(steps=10), seeds=2)."""
    data = dataclasses.asdict(cfg)
    for k, v in sections.items():
        if isinstance(v, Mapping):
            data[k].update(v)
        else:
            data[k] = v
    return from_dict(data)


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
