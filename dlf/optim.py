"""Optimizers (`optimizer.name`) and learning-rate schedules (`optimizer.lr_schedule`), via optax."""
from __future__ import annotations

import optax


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
    """An optax transformation for an OptimizerConfig. `gd` and `sgd` are the same update (plain
    gradient descent); the names say full batch or mini-batch. `momentum` is heavy ball,
    `nesterov` optax's Nesterov form, `adam` Adam with b1, b2."""
    lr = lr_schedule(cfg, steps_per_epoch, total_steps)
    if cfg.name in ("gd", "sgd"):
        return optax.sgd(lr)
    if cfg.name == "momentum":
        return optax.sgd(lr, momentum=cfg.momentum)
    if cfg.name == "nesterov":
        return optax.sgd(lr, momentum=cfg.momentum, nesterov=True)
    if cfg.name == "adam":
        return optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    raise ValueError(f"optimizer.name={cfg.name!r} is not allowed; choose one of: gd, sgd, momentum, nesterov, adam")
