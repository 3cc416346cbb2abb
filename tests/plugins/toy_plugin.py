"""A toy extension of dlf from outside the package: one model, one loss and one probe, each a
single registration (tests/test_plugins.py runs them end to end through `plugins=[toy_plugin]`)."""
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf.core.losses import LOSSES
from dlf.core.typed import setting
from dlf.models import MODELS, ModelSpec
from dlf.probes.evaluators import PROBES, ProbeSpec


@dataclass(frozen=True)
class ToyLinearConfig:
    name: str = setting("toy_linear")
    scale: float = setting(1.0, gt=0.0, doc="multiplies the logits")


class ToyLinear(nn.Module):
    num_classes: int
    scale: float

    @nn.compact
    def __call__(self, x):
        return self.scale * nn.Dense(self.num_classes, param_dtype=x.dtype, dtype=x.dtype)(x)


def toy_hinge(logits, labels, gamma):
    """Gamma-weighted multi-class hinge loss: mean_j Gamma_{y_j} sum_k max(0, 1 + f_k - f_{y_j}) over k != y_j."""
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    margins = jnp.maximum(0.0, 1.0 + logits - true).sum(-1) - 1.0  # the k = y_j term is exactly 1
    return jnp.mean(gamma[labels] * margins), jnp.mean(margins)


@dataclass(frozen=True)
class ParamNormConfig:
    every: int = setting(0, low=0, doc="steps between probes (0: off)")


def make_param_norm(cfg, ctx):
    def probe(program, state, hp, data, key):
        return {"param_norm": jnp.sqrt(sum(jnp.sum(p ** 2) for p in jax.tree.leaves(state.params)))}
    return probe


MODELS.register("toy_linear", ModelSpec(lambda cfg, C, dtype: ToyLinear(C, cfg.scale)), config=ToyLinearConfig,
                replace=True)
LOSSES.register("toy_hinge", toy_hinge, replace=True)
PROBES.register("param_norm", ProbeSpec(make_param_norm, ("param_norm",)), config=ParamNormConfig, replace=True)
