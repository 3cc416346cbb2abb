"""Wide ResNets with pre-activation basic blocks (SPEC 2; Zagoruyko & Komodakis 2016)."""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf.models.myrtle import param_dtype_for

WRN_PRESETS = {"wrn16_4": (16, 4), "wrn28_10": (28, 10)}  # name -> (depth, widen) [decision, SPEC 2]
NORMS = ("batch", "none")
# He-normal over fan_in (untruncated), the same rule as the Myrtle: it keeps the activation scale
# through the forward pass, which is what matters with norm=none. With batch norm the two He
# variants differ only at the stem and the first conv of each group (the reference code's fan_out).
CONV_INIT = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class PreAct(nn.Module):
    """BN + ReLU (`norm=batch`) or ReLU alone (`norm=none`)."""
    norm: str
    dtype: Any

    @nn.compact
    def __call__(self, x, train: bool):
        if self.norm == "batch":
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                             param_dtype=param_dtype_for(self.dtype))(x)
        return nn.relu(x)


class Block(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, plus a 1x1-conv shortcut from the pre-activated
    input when the shape changes (the reference implementation's wiring)."""
    features: int
    stride: int
    norm: str
    dtype: Any

    @nn.compact
    def __call__(self, x, train: bool):
        # Explicit 1-pixel padding (not SAME): with stride 2 SAME pads only bottom/right, which
        # would misalign the 3x3 path with the 1x1 shortcut sampling pixels 0, 2, 4, ...
        conv = functools.partial(nn.Conv, use_bias=False, kernel_init=CONV_INIT, dtype=self.dtype,
                                 param_dtype=param_dtype_for(self.dtype))
        a = PreAct(self.norm, self.dtype)(x, train)
        h = conv(self.features, (3, 3), (self.stride, self.stride), padding=1)(a)
        h = PreAct(self.norm, self.dtype)(h, train)
        h = conv(self.features, (3, 3), padding=1)(h)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = conv(self.features, (1, 1), (self.stride, self.stride), padding=0)(a)
        return x + h


class WideResNet(nn.Module):
    """WRN-depth-widen: conv3x3(16) -> 3 groups of (depth-4)/6 blocks at widths 16k, 32k, 64k with
    strides 1, 2, 2 -> BN-ReLU -> global avgpool -> dense. Batch statistics live in the
    `batch_stats` collection; `train` picks batch vs running statistics. No dropout."""
    depth: int
    widen: int
    num_classes: int
    norm: str = "batch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC, train: bool):
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(f"WideResNet depth={self.depth} is not allowed; it must be 6n+4 with n >= 1")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r} is not allowed; choose one of {NORMS}")
        pdtype = param_dtype_for(self.dtype)
        h = nn.Conv(16, (3, 3), padding=1, use_bias=False, kernel_init=CONV_INIT, dtype=self.dtype,
                    param_dtype=pdtype)(x_BxHxWxC.astype(self.dtype))
        for group, stride in enumerate((1, 2, 2)):
            for i in range((self.depth - 4) // 6):
                h = Block(16 * self.widen * 2**group, stride if i == 0 else 1, self.norm, self.dtype)(h, train)
        h = jnp.mean(PreAct(self.norm, self.dtype)(h, train), axis=(1, 2))
        # flax's default readout init: truncated LeCun normal, zero bias
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=pdtype)(h)
        return logits.astype(pdtype)


def build(cfg, num_classes: int, dtype=jnp.float32) -> WideResNet:
    """The registered constructor (dlf.models.MODELS["wrn"])."""
    return WideResNet(depth=cfg.depth, widen=cfg.widen, num_classes=num_classes, norm=cfg.norm, dtype=dtype)
