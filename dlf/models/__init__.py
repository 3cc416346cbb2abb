"""Models by `model.name` (the MODELS registry), behind one engine interface:
init(key, x) -> (params, model_state), apply(params, model_state, x, train) -> (logits, model_state)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from dlf.core.registry import Registry, lazy
from dlf.core.typed import setting
from dlf.errors import ConfigError

COMPUTE_DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}


@dataclass(frozen=True)
class FusedSupport:
    """A model's declaration that dlf.core.fused computes its forward pass. `fields`: for every
    field of the model's config, the values the fused step supports (None: any value); a field not
    listed, or a value not allowed, sends the run to the generic step. `arrays(params)` gives the
    fused step's fused.MLPArrays of the model's parameters, `tree(arrays)` the parameter tree back."""
    fields: Mapping[str, tuple | None]
    arrays: Callable[[Any], Any]
    tree: Callable[[Any], Any]


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and what it needs. `build(cfg, num_classes, dtype)` returns a Flax
    module; `inputs` is the kind of data it takes (`vector` or `image`, matched against the
    dataset's); `stateful` models carry non-trained variables (batch-norm statistics) and take a
    `train` flag; `precisions` are the allowed `precision` values; `describe(cfg)` is a short
    label for figure titles; `fused` declares what the fused full-batch step supports (None:
    nothing; dlf.drive.build decides per config with `fused_blocker`)."""
    build: Callable[[Any, int, Any], Any]
    inputs: str = "vector"
    stateful: bool = False
    precisions: tuple[str, ...] = ("float32", "float64")
    describe: Callable[[Any], str] = lambda cfg: cfg.name
    fused: FusedSupport | None = None


MODELS: Registry[ModelSpec] = Registry("model.name")


@dataclass(frozen=True)
class MLPConfig:
    name: str = setting("mlp")
    width: int = setting(100, low=1, doc="hidden units")
    init: str = setting("lecun", choices=("lecun", "glorot"),
                        doc="lecun: W ~ N(0, 1/fan_in), b = 0; glorot: glorot-normal W, b ~ N(0, 0.01^2)")
    activation: str = setting("relu", choices=("relu", "tanh"), doc="hidden-layer nonlinearity")
    parameterization: str = setting("standard", choices=("standard", "ntk"),
                                    doc="standard: W drawn by `init`; ntk: W stored at unit variance and multiplied "
                                        "in the forward pass by init's std (lecun 1/sqrt(fan_in), glorot "
                                        "sqrt(2/(fan_in+fan_out))), biases as init, unscaled")


@dataclass(frozen=True)
class MyrtleConfig:
    name: str = setting("myrtle")
    depth: int = setting(5, low=5, high=10, doc="5, 7 or 10 (conv blocks 1/1/1, 2/2/2, 3/3/3)")
    width: int = setting(64, low=1, doc="channels")
    parameterization: str = setting("standard", choices=("standard", "ntk"))

    def __post_init__(self):
        if self.depth not in (5, 7, 10):
            raise ConfigError(f"model.depth={self.depth} is not allowed; expected one of: 5, 7, 10")


@dataclass(frozen=True)
class WRNConfig:
    name: str = setting("wrn")
    depth: int = setting(28, low=10, doc="6n+4 (16, 28, ...)")
    widen: int = setting(10, low=1, doc="widening factor k")
    norm: str = setting("batch", choices=("batch", "none"), doc="batch norm or none")

    def __post_init__(self):
        if (self.depth - 4) % 6:
            raise ConfigError(f"model.depth={self.depth} is not allowed; expected 6n+4 (10, 16, 22, 28, ...)")


# the fused step (dlf.core.fused) computes one hidden ReLU layer of any width, whatever the init, in
# the standard parameterisation (ntk runs go to the generic step)
MLP_FUSED = FusedSupport(fields={"name": None, "width": None, "init": None, "activation": ("relu",),
                                 "parameterization": ("standard",)},
                         arrays=lazy("dlf.models.mlp:fused_arrays"), tree=lazy("dlf.models.mlp:fused_tree"))
MODELS.register("mlp", ModelSpec(lazy("dlf.models.mlp:build"), describe=lambda c: f"width {c.width}", fused=MLP_FUSED),
                config=MLPConfig)
MODELS.register("myrtle", ModelSpec(lazy("dlf.models.myrtle:build"), inputs="image",
                                    precisions=("float32", "bfloat16"),
                                    describe=lambda c: f"myrtle{c.depth} width {c.width}"), config=MyrtleConfig)
MODELS.register("wrn", ModelSpec(lazy("dlf.models.wrn:build"), inputs="image", stateful=True,
                                 precisions=("float32", "bfloat16"),
                                 describe=lambda c: f"wrn{c.depth}-{c.widen}"), config=WRNConfig)


def fused_blocker(cfg) -> str | None:
    """Why the fused step cannot compute the forward pass of model config `cfg` (None: it can),
    field by field against its spec's FusedSupport."""
    support = MODELS[cfg.name].fused
    if support is None:
        return f"model.name={cfg.name} (no fused step declared)"
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name not in support.fields:
            return f"model.{f.name}={value} (not declared by the fused step)"
        allowed = support.fields[f.name]
        if allowed is not None and value not in allowed:
            return f"model.{f.name}={value} (fused: {', '.join(map(str, allowed))})"
    return None


class Adapter:
    """The engine's view of any registered model: init and apply with a model state ({} when
    the model has none; batch statistics are used and updated only when `train`)."""

    def __init__(self, module, spec: ModelSpec):
        self.module, self.spec = module, spec

    def _mode(self, train: bool) -> dict:
        return {"train": train} if self.spec.stateful else {}

    def init(self, key, x_example) -> tuple[Any, dict]:
        variables = dict(self.module.init(key, x_example, **self._mode(False)))
        params = variables.pop("params")
        return params, variables

    def activations_per_example(self, params, model_state: dict, x) -> int:
        """Intermediate values per example of one eval-mode forward pass (abstract: nothing runs)."""
        _, inter = jax.eval_shape(lambda p, s: self.module.apply({"params": p, **s}, x, capture_intermediates=True,
                                                                 **self._mode(False)), params, model_state)
        return sum(v.size for v in jax.tree.leaves(inter)) // max(1, x.shape[0])

    def apply(self, params, model_state: dict, x, train: bool):
        """(logits in at least float32, new model_state)."""
        variables = {"params": params, **model_state}
        if train and model_state:
            logits, new_state = self.module.apply(variables, x, **self._mode(True), mutable=list(model_state))
        else:
            logits, new_state = self.module.apply(variables, x, **self._mode(train)), model_state
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), new_state


def build(cfg, num_classes: int, precision: str = "float32") -> Adapter:
    """The engine adapter of a model config; `precision` sets the compute dtype."""
    spec = MODELS[cfg.name]
    return Adapter(spec.build(cfg, num_classes, COMPUTE_DTYPES[precision]), spec)
