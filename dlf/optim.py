"""Optimizers chosen by `optimizer.name`."""
import optax


def build(cfg) -> optax.GradientTransformation:
    """An optax transformation for an OptimizerConfig. `gd`: plain (full-batch) gradient descent."""
    if cfg.name == "gd":
        return optax.sgd(cfg.lr)
    raise ValueError(f"optimizer.name={cfg.name!r} is not allowed; choose one of: gd")
