"""model.parameterization of the MLP: `ntk` stores unit-variance kernels and multiplies them by the
init's std in the forward pass (same function at init, gradients scaled by std, trained by the
generic step); `standard` (the default) is the original MLP bit for bit."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf import config as config_lib
from dlf.drive.build import build, fused_blocker, use_fused
from dlf.models import MLPConfig
from dlf.models.mlp import HIDDEN, INITS, MLP, OUT

WIDTH, D, C = 5, 2, 3


def std_of(init, fan_in, fan_out):
    return 1 / math.sqrt(fan_in) if init == "lecun" else math.sqrt(2 / (fan_in + fan_out))


STDS = {HIDDEN: (D, WIDTH), OUT: (WIDTH, C)}


def x64(n=11, seed=3):
    return jnp.asarray(np.random.RandomState(seed).randn(n, D))


def logits_of(param, init, p, x):
    return MLP(WIDTH, C, init_scheme=init, parameterization=param).apply({"params": p}, x)


class OriginalMLP(nn.Module):
    """The MLP as it was before `parameterization` (hand copy): the standard parameterisation's reference."""
    width: int
    num_classes: int
    init_scheme: str = "lecun"

    @nn.compact
    def __call__(self, x):
        w, b = INITS[self.init_scheme]
        h = nn.relu(nn.Dense(self.width, kernel_init=w, bias_init=b, dtype=x.dtype, param_dtype=x.dtype,
                             name="Dense_0")(x))
        return nn.Dense(self.num_classes, kernel_init=w, bias_init=b, dtype=x.dtype, param_dtype=x.dtype,
                        name="Dense_1")(h)


@pytest.mark.parametrize("init", ["lecun", "glorot"])
def test_standard_is_the_original_mlp_bit_for_bit(init):
    assert MLPConfig().parameterization == "standard" and MLP(WIDTH, C).parameterization == "standard"
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            x = jnp.asarray(np.random.RandomState(0).randn(7, D), dtype)
            for seed in (0, 1, 17):
                p = MLP(WIDTH, C, init_scheme=init).init(jax.random.key(seed), x)["params"]
                q = OriginalMLP(WIDTH, C, init_scheme=init).init(jax.random.key(seed), x)["params"]
                assert jax.tree.structure(p) == jax.tree.structure(q)
                for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
                    assert a.dtype == b.dtype
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
                np.testing.assert_array_equal(MLP(WIDTH, C, init_scheme=init).apply({"params": p}, x),
                                              OriginalMLP(WIDTH, C, init_scheme=init).apply({"params": q}, x))


@pytest.mark.parametrize("init", ["lecun", "glorot"])
def test_ntk_is_the_same_function_at_init(init):
    with jax.enable_x64(True):
        x = x64()
        for seed in (0, 5):
            ps = MLP(WIDTH, C, init_scheme=init).init(jax.random.key(seed), x)["params"]
            pn = MLP(WIDTH, C, init_scheme=init, parameterization="ntk").init(jax.random.key(seed), x)["params"]
            assert jax.tree.structure(ps) == jax.tree.structure(pn)
            for layer, (fi, fo) in STDS.items():
                s = std_of(init, fi, fo)
                np.testing.assert_allclose(s * pn[layer]["kernel"], ps[layer]["kernel"], rtol=1e-14)
                np.testing.assert_array_equal(pn[layer]["bias"], ps[layer]["bias"])  # unscaled, same draw
            np.testing.assert_allclose(logits_of("ntk", init, pn, x), logits_of("standard", init, ps, x),
                                       rtol=1e-12, atol=1e-14)
        # unit variance: the stored kernel of a wide layer
        pn = MLP(2000, C, init_scheme=init, parameterization="ntk").init(jax.random.key(0), x)["params"]
        assert abs(float(jnp.var(pn[HIDDEN]["kernel"])) - 1) < 0.05


@pytest.mark.parametrize("init", ["lecun", "glorot"])
def test_ntk_gradient_and_step_are_the_standard_ones_rescaled(init):
    with jax.enable_x64(True):
        x, y = x64(), jnp.asarray(np.arange(11) % C)
        pn = MLP(WIDTH, C, init_scheme=init, parameterization="ntk").init(jax.random.key(2), x)["params"]
        std = {k: std_of(init, *v) for k, v in STDS.items()}
        ps = {k: {"kernel": std[k] * v["kernel"], "bias": v["bias"]} for k, v in pn.items()}

        def loss(param):
            def f(p):
                z = logits_of(param, init, p, x)
                return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(y.size), y])
            return f

        gn, gs = jax.grad(loss("ntk"))(pn), jax.grad(loss("standard"))(ps)
        for k in std:
            np.testing.assert_allclose(gn[k]["kernel"], std[k] * gs[k]["kernel"], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(gn[k]["bias"], gs[k]["bias"], rtol=1e-12, atol=1e-15)
        eta = 0.7
        pn1 = jax.tree.map(lambda p, g: p - eta * g, pn, gn)
        ps1 = {k: {"kernel": ps[k]["kernel"] - eta * std[k] ** 2 * gs[k]["kernel"],
                   "bias": ps[k]["bias"] - eta * gs[k]["bias"]} for k in std}
        np.testing.assert_allclose(logits_of("ntk", init, pn1, x), logits_of("standard", init, ps1, x),
                                   rtol=1e-10, atol=1e-10)
        # ... and differs from a standard step at lr eta (the parameterisations train differently)
        ps1_plain = jax.tree.map(lambda p, g: p - eta * g, ps, gs)
        assert not np.allclose(logits_of("standard", init, ps1_plain, x), logits_of("ntk", init, pn1, x))


def cfg_of(step, **model):
    return config_lib.from_dict({"model": {"width": 7, **model}, "seeds": 2, "precision": "float64",
                                 "schedule": {"A": 10, "T": 20}, "train": {"steps": 100, "log_every": 50, "step": step},
                                 "compile_cache": None})


def test_ntk_runs_take_the_generic_step():
    assert fused_blocker(cfg_of("auto")) is None and use_fused(cfg_of("auto"), "cpu")
    cfg = cfg_of("auto", parameterization="ntk")
    assert fused_blocker(cfg) == "model.parameterization=ntk (fused: standard)"
    assert not use_fused(cfg, "cpu")
    with pytest.raises(config_lib.ConfigError, match="train.step=fused is not allowed with model.parameterization=ntk"):
        use_fused(cfg_of("fused", parameterization="ntk"), "cpu")
    with jax.enable_x64(True):
        b = build(cfg)
        assert b.program.loss_grad is None
        # the built model is the ntk one: its stored kernels have unit variance scale, not 1/fan_in
        k = np.asarray(b.states.params[HIDDEN]["kernel"])
        s = np.asarray(build(cfg_of("generic")).states.params[HIDDEN]["kernel"])
        np.testing.assert_allclose(k / math.sqrt(2), s, rtol=1e-14)


def test_bad_parameterization_is_a_config_error():
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.from_dict({"model": {"parameterization": "mup"}})
    assert str(e.value).startswith("model.parameterization") and "standard, ntk" in str(e.value)
