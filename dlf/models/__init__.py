"""Models chosen by `model.name`."""
from dlf.models.mlp import MLP


def build(cfg, num_classes: int):
    """A Flax module for a ModelConfig."""
    if cfg.name == "mlp":
        return MLP(width=cfg.width, num_classes=num_classes, init_scheme=cfg.init)
    raise ValueError(f"model.name={cfg.name!r} is not allowed; choose one of: mlp")
