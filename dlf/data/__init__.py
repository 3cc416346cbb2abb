"""Datasets by `dataset.name` (the DATASETS registry); each loads train and validation (CIFAR-10:
test) splits as numpy arrays."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlf.core.registry import Registry, lazy
from dlf.core.typed import setting
from dlf.data.spiral import VAL_RADII, Split, spiral  # noqa: F401
from dlf.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """`load(cfg) -> (train, val)` Splits; `inputs`: `vector` (float features) or `image` (uint8
    NHWC, standardised per channel on the device)."""
    load: Callable[[Any], tuple[Split, Split]]
    inputs: str = "vector"


DATASETS: Registry[DatasetSpec] = Registry("dataset.name")


@dataclass(frozen=True)
class SpiralConfig:
    name: str = setting("spiral")
    classes: int = setting(3, low=2, doc="number of arms (classes)")
    per_class: int = setting(100, low=1, doc="points per arm, train and validation each")
    noise: float = setting(0.2, low=0.0, doc="std of the angle noise (radians)")
    turns: float = setting(2.0, gt=0.0, doc="angle 2*pi*j/C + 2*pi*turns*r")
    train_seed: int = setting(0, low=0, doc="numpy seed of the training noise (authors' set: 0)")
    val_seed: int = setting(1, low=0, doc="numpy seed of the validation radii and noise")
    val_radii: str = setting("uniform", choices=VAL_RADII,
                             doc="validation radii per arm: uniform, r ~ U(0, 1) sorted (val_seed); "
                                 "between, the per_class-1 midpoints of consecutive training radii")
    val_noise: float | None = setting(None, low=0.0, doc="std of the validation set's angle noise (radians); "
                                      "null: dataset.noise (the training set always uses dataset.noise)")

    def __post_init__(self):
        if self.val_radii == "between" and self.per_class < 2:
            raise ConfigError(f"dataset.per_class={self.per_class} is not allowed with dataset.val_radii=between; "
                              "expected >= 2 (the validation set has per_class-1 points per arm)")


@dataclass(frozen=True)
class Cifar10Config:
    name: str = setting("cifar10")
    classes: int = setting(10, low=10, high=10, doc="10")
    source: str = setting("local", choices=("local", "tfds"), doc="where the images come from")
    path: str | None = setting("data/cifar-10-batches-py", doc="source=local: a cifar-10-batches-py directory "
                               "(conf/dataset/cifar10.yaml: $CIFAR10_DIR, else this)")
    data_dir: str | None = setting(None, doc="source=tfds: the tensorflow-datasets data_dir")
    subset: int | None = setting(None, low=1, doc="a class-balanced draw (fixed seed) of N training (and test) images")


def _spiral(cfg) -> tuple[Split, Split]:
    return spiral(cfg.classes, cfg.per_class, cfg.noise, cfg.turns, cfg.train_seed, cfg.val_seed, cfg.val_radii,
                  cfg.val_noise)


DATASETS.register("spiral", DatasetSpec(_spiral), config=SpiralConfig)
DATASETS.register("cifar10", DatasetSpec(lazy("dlf.data.cifar10:load_config"), inputs="image"),
                  config=Cifar10Config)


def build(cfg) -> tuple[Split, Split]:
    """(train, val) splits of a dataset config."""
    return DATASETS[cfg.name].load(cfg)
