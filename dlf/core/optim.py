"""Optimizers by `optimizer.name` (the OPTIMIZERS registry) and learning-rate schedules
(`optimizer.lr_schedule`), via optax."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optax

from dlf.core.registry import Registry
from dlf.core.typed import setting


@dataclass(frozen=True)
class GDConfig:
    """Plain gradient descent (gd: full batch, sgd: mini-batch; the same update)."""
    name: str = setting("gd")
    lr: float = setting(1.0, gt=0.0, doc="learning rate (the peak of a schedule)")
    lr_schedule: str = setting("constant", choices=("constant", "piecewise", "cosine"),
                               doc="piecewise: 0 -> lr at warm-up end -> final_lr at the end")
    warmup_epochs: float | None = setting(None, low=0.0, doc="warm-up length in epochs (epoch runs)")
    warmup_steps: int | None = setting(None, low=0, doc="warm-up length in steps (wins over epochs)")
    final_lr: float = setting(0.0, low=0.0, doc="learning rate at the last step (piecewise, cosine)")


@dataclass(frozen=True)
class SGDConfig(GDConfig):
    """Mini-batch SGD: the gd update on batches (its own default learning rate)."""
    name: str = setting("sgd")
    lr: float = setting(0.1, gt=0.0, doc="learning rate (the peak of a schedule)")


@dataclass(frozen=True)
class MomentumConfig(GDConfig):
    name: str = setting("momentum")
    lr: float = setting(0.1, gt=0.0, doc="learning rate (the peak of a schedule)")
    momentum: float = setting(0.9, low=0.0, lt=1.0, doc="beta")


@dataclass(frozen=True)
class NesterovConfig(MomentumConfig):
    name: str = setting("nesterov")
    lr: float = setting(0.02, gt=0.0, doc="learning rate (the peak of a schedule)")


@dataclass(frozen=True)
class AdamConfig(GDConfig):
    name: str = setting("adam")
    lr: float = setting(0.001, gt=0.0, doc="learning rate (the peak of a schedule)")
    b1: float = setting(0.9, low=0.0, lt=1.0, doc="first-moment decay")
    b2: float = setting(0.999, low=0.0, lt=1.0, doc="second-moment decay")


# name -> (cfg, learning rate or schedule) -> optax transformation
OPTIMIZERS: Registry[Callable[[Any, Any], optax.GradientTransformation]] = Registry("optimizer.name")
OPTIMIZERS.register("gd", lambda cfg, lr: optax.sgd(lr), config=GDConfig)
OPTIMIZERS.register("sgd", lambda cfg, lr: optax.sgd(lr), config=SGDConfig)
OPTIMIZERS.register("momentum", lambda cfg, lr: optax.sgd(lr, momentum=cfg.momentum), config=MomentumConfig)
OPTIMIZERS.register("nesterov", lambda cfg, lr: optax.sgd(lr, momentum=cfg.momentum, nesterov=True),
                    config=NesterovConfig)
OPTIMIZERS.register("adam", lambda cfg, lr: optax.adam(lr, b1=cfg.b1, b2=cfg.b2), config=AdamConfig)


def lr_schedule(cfg, steps_per_epoch: int, total_steps: int) -> optax.Schedule | float:
    """The learning rate as a function of the step (0-based, counted across epochs).

    constant:  lr.
    piecewise: linear 0 -> lr over the warm-up, then linear lr -> final_lr at the last step (the
               paper's CIFAR protocol: 0 -> 0.02 at epoch 300 -> 0.002 at epoch 700).
    cosine:    linear 0 -> lr over the warm-up (if any), then cosine lr -> final_lr.
    The warm-up is `warmup_steps`, else `warmup_epochs * steps_per_epoch`, else 0."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.warmup_steps is not None:
        warm = cfg.warmup_steps
    else:
        warm = round((cfg.warmup_epochs or 0) * steps_per_epoch)
    warm = min(warm, total_steps)
    if cfg.lr_schedule == "piecewise":
        parts = [optax.linear_schedule(0.0, cfg.lr, warm)] if warm else []
        parts.append(optax.linear_schedule(cfg.lr, cfg.final_lr, max(1, total_steps - warm)))
        return optax.join_schedules(parts, [warm]) if warm else parts[0]
    if cfg.lr_schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0 if warm else cfg.lr, cfg.lr, warm,
                                                  max(total_steps, warm + 1), cfg.final_lr)
    raise ValueError(f"optimizer.lr_schedule={cfg.lr_schedule!r}")


def build(cfg, steps_per_epoch: int = 1, total_steps: int = 1) -> optax.GradientTransformation:
    """An optax transformation for an optimizer config: `gd` and `sgd` are plain gradient descent
    (the names say full batch or mini-batch), `momentum` heavy ball, `nesterov` optax's Nesterov
    form, `adam` Adam with b1, b2."""
    return OPTIMIZERS[cfg.name](cfg, lr_schedule(cfg, steps_per_epoch, total_steps))
