"""CIFAR models (Myrtle, Wide ResNet) and their init/apply interface, on tiny inputs."""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf.models import MODELS, Adapter
from dlf.models.mlp import MLP
from dlf.models.myrtle import CONVS_PER_STAGE, W_STD, Myrtle, Myrtle5
from dlf.models.wrn import WRN_PRESETS, WideResNet

X = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))  # tiny images: XLA convs are slow on CPU
# Init keys use the "rbg" generator: compiling threefry's normal draws takes ~0.5 s per parameter
# shape on these CPUs (10 s per Myrtle init), rbg a tenth of that; the init distribution is the same.
KEY = jax.random.key(0, impl="rbg")
# Compiling is what costs here, so init/apply are jitted once per model and input shape, and checks
# of shapes, dtypes and program structure run abstractly (eval_shape, make_jaxpr).
def _adapter(model) -> Adapter:
    """The engine's adapter of a built module (the registered spec of its family)."""
    return Adapter(model, MODELS["wrn" if isinstance(model, WideResNet) else "myrtle"])


class cifar:  # noqa: N801 - the adapter's init/apply with the module as first argument
    init = staticmethod(lambda model, key, x: _adapter(model).init(key, x))
    apply = staticmethod(lambda model, p, s, x, train: _adapter(model).apply(p, s, x, train))


init = jax.jit(cifar.init, static_argnums=0)
apply = jax.jit(cifar.apply, static_argnums=(0, 4))


def n_params(model, **kw) -> int:
    """Parameter count from shapes alone (nothing is computed)."""
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), **kw))
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def myrtle_formula(depth, width, classes=10):
    convs = sum(CONVS_PER_STAGE[depth])
    return (9 * 3 * width + width) + (convs - 1) * (9 * width * width + width) + (width * classes + classes)


def wrn_formula(depth, k, classes=10, bn=2):
    """bn: parameters per BN channel (scale and bias), 0 for norm=none."""
    def block(cin, cout):  # BN(cin), conv3x3, BN(cout), conv3x3, 1x1 shortcut if the width changes
        return bn * cin + 9 * cin * cout + bn * cout + 9 * cout * cout + (cin * cout if cin != cout else 0)
    n, total, cin = (depth - 4) // 6, 9 * 3 * 16, 16
    for cout in (16 * k, 32 * k, 64 * k):
        total += block(cin, cout) + (n - 1) * block(cout, cout)
        cin = cout
    return total + bn * cin + cin * classes + classes


def test_myrtle5_64_has_113k_parameters():
    n = n_params(Myrtle5(width=64, num_classes=10))
    assert n == 3 * 3 * 3 * 64 + 64 + 3 * (3 * 3 * 64 * 64 + 64) + 64 * 10 + 10 == 113_226
    assert abs(n - 113_000) < 1_000  # SPEC 2: ~113k


@pytest.mark.parametrize("depth", [5, 7, 10])
@pytest.mark.parametrize("width", [8, 64])
def test_myrtle_counts_match_formula(depth, width):
    assert n_params(Myrtle(depth, width, 10)) == myrtle_formula(depth, width)
    assert n_params(Myrtle(depth, width, 10, "ntk")) == myrtle_formula(depth, width)


def test_wrn_counts_match_formula_and_published_sizes():
    for name, (depth, k) in WRN_PRESETS.items():
        assert n_params(WideResNet(depth, k, 10), train=False) == wrn_formula(depth, k), name
    assert wrn_formula(16, 4) == 2_748_890      # "2.7M" in Zagoruyko & Komodakis, Table 2
    assert wrn_formula(28, 10) == 36_479_194    # "36.5M"
    assert n_params(WideResNet(16, 4, 10, norm="none"), train=False) == wrn_formula(16, 4, bn=0)


@pytest.mark.parametrize("model", [Myrtle(5, 4, 10), Myrtle(7, 4, 10), Myrtle(10, 4, 10, "ntk"),
                                   WideResNet(10, 1, 10), WideResNet(10, 1, 10, norm="none")],
                         ids=["myrtle5", "myrtle7", "myrtle10_ntk", "wrn10_1", "wrn10_1_nonorm"])
@pytest.mark.parametrize("hw", [8, 32])
def test_output_shapes(model, hw):
    params, state = jax.eval_shape(partial(cifar.init, model), KEY, jnp.zeros((1, hw, hw, 3)))
    for train in (False, True):
        logits, new_state = jax.eval_shape(lambda p, s, x: cifar.apply(model, p, s, x, train),
                                           params, state, jnp.zeros((3, hw, hw, 3)))
        assert logits.shape == (3, 10) and logits.dtype == jnp.float32
        assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.fixture(scope="module")
def myrtle():
    model = Myrtle(5, 8, 10)
    return model, init(model, KEY, X[:1])[0]


@pytest.fixture(scope="module")
def wrn():
    model = WideResNet(10, 1, 10)
    return (model, *init(model, KEY, X[:1]))


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_myrtle_init_is_untruncated_he_normal_with_zero_biases():
    std_params, _ = init(Myrtle5(width=64, num_classes=10), KEY, X[:1])
    ntk_params, _ = init(Myrtle5(width=64, num_classes=10, parameterization="ntk"), KEY, X[:1])
    for std_layer, ntk_layer in zip(std_params.values(), ntk_params.values()):
        w, fan_in = std_layer["kernel"], math.prod(std_layer["kernel"].shape[:-1])
        assert float(jnp.std(w)) == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
        assert float(jnp.std(ntk_layer["kernel"])) == pytest.approx(1.0, rel=0.1)
        assert not jnp.any(std_layer["bias"]) and not jnp.any(ntk_layer["bias"])
    big = std_params["Conv_1"]["kernel"]  # 36 864 draws: a normal has ~100 beyond 3 std, a 2-std truncated none
    assert float(jnp.max(jnp.abs(big)) / jnp.std(big)) > 3


def test_ntk_forward_equals_standard_with_rescaled_weights(myrtle):
    std_model, params = myrtle
    keys = iter(jax.random.split(jax.random.key(2), len(params)))
    params = {name: {**layer, "bias": 0.1 * jax.random.normal(next(keys), layer["bias"].shape)}
              for name, layer in params.items()}
    # NTK layer: (W_STD / sqrt(fan_in)) * (V x) + b, so V = W / (W_STD / sqrt(fan_in)) gives W x + b
    ntk_scale = {name: W_STD / math.sqrt(math.prod(layer["kernel"].shape[:-1])) for name, layer in params.items()}
    ntk_params = {name: {**layer, "kernel": layer["kernel"] / ntk_scale[name]} for name, layer in params.items()}
    std_logits, _ = apply(std_model, params, {}, X, False)
    ntk_logits, _ = apply(std_model.clone(parameterization="ntk"), ntk_params, {}, X, False)
    np.testing.assert_allclose(ntk_logits, std_logits, rtol=1e-5, atol=1e-6)


def conv_operand_dtypes(jaxpr) -> list:
    """Dtypes of every convolution's operands, nested jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found += [v.aval.dtype for v in eqn.invars]
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else [param]:
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    found += conv_operand_dtypes(sub)
    return found


@pytest.mark.parametrize("model, n_convs", [(Myrtle(5, 8, 10, "ntk", jnp.bfloat16), 4),
                                            (WideResNet(10, 1, 10, dtype=jnp.bfloat16), 1 + 3 * 2 + 2)],
                         ids=["myrtle5_ntk", "wrn10_1"])
def test_bfloat16_convs_with_float32_params_state_and_grads(model, n_convs):
    params, state = jax.eval_shape(partial(cifar.init, model), KEY, X[:1])
    assert {leaf.dtype for leaf in jax.tree.leaves((params, state))} == {jnp.dtype(jnp.float32)}

    def loss(p, s):
        logits, new_state = cifar.apply(model, p, s, X, True)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0]), (logits, new_state)

    grad_fn = jax.grad(loss, has_aux=True)
    dtypes = conv_operand_dtypes(jax.make_jaxpr(grad_fn)(params, state).jaxpr)  # forward and backward convs
    # each conv: forward, weight gradient and (all but the first) input gradient; two operands each
    assert len(dtypes) == 2 * (3 * n_convs - 1) and set(dtypes) == {jnp.dtype(jnp.bfloat16)}
    grads, (logits, new_state) = jax.eval_shape(grad_fn, params, state)
    assert logits.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves((grads, new_state))} == {jnp.dtype(jnp.float32)}


def test_bfloat16_forward_rounds_the_float32_one(myrtle):
    model, params = myrtle
    f32_logits, _ = apply(model, params, {}, X, False)
    bf16_logits, _ = apply(model.clone(dtype=jnp.bfloat16), params, {}, X, False)
    assert bf16_logits.dtype == jnp.float32 and not np.array_equal(bf16_logits, f32_logits)
    np.testing.assert_allclose(bf16_logits, f32_logits, atol=0.03 * float(jnp.max(jnp.abs(f32_logits))))


def test_wrn_batch_stats_updated_only_in_train_mode(wrn):
    model, params, state = wrn
    assert set(state) == {"batch_stats"}
    _, eval_state = apply(model, params, state, X, False)
    assert jax.tree.all(jax.tree.map(np.array_equal, eval_state, state))
    logits, train_state = apply(model, params, state, X, True)
    assert np.isfinite(logits).all() and jax.tree.structure(train_state) == jax.tree.structure(state)
    # first BN sees the stem conv output h: running <- 0.9 running + 0.1 batch (biased variance)
    h = jax.lax.conv_general_dilated(X, params["Conv_0"]["kernel"], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    bn = train_state["batch_stats"]["Block_0"]["PreAct_0"]["BatchNorm_0"]
    np.testing.assert_allclose(bn["mean"], 0.1 * h.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn["var"], 0.9 + 0.1 * h.var((0, 1, 2)), rtol=1e-4)


def test_wrn_eval_is_per_example_and_differs_from_train(wrn):
    model, params, state = wrn
    X_other = X.at[1:].set(3 * X[1:] + 1)  # same first example, different batch mates
    (eval_x, _), (eval_other, _) = (apply(model, params, state, x, False) for x in (X, X_other))
    np.testing.assert_allclose(eval_other[0], eval_x[0], rtol=1e-5, atol=1e-6)
    (train_x, _), (train_other, _) = (apply(model, params, state, x, True) for x in (X, X_other))
    assert not np.allclose(train_x, eval_x, atol=1e-3)
    assert not np.allclose(train_other[0], train_x[0], atol=1e-3)  # batch statistics couple the examples


def test_wrn_without_norm_has_no_state_and_no_mode():
    model = WideResNet(10, 1, 10, norm="none")
    params, state = jax.eval_shape(partial(cifar.init, model), KEY, X[:1])
    assert state == {}
    assert not any("BatchNorm" in str(path) for path, _ in jax.tree_util.tree_leaves_with_path(params))
    train_jaxpr, eval_jaxpr = (str(jax.make_jaxpr(lambda p: cifar.apply(model, p, {}, X, t))(params))
                               for t in (True, False))
    assert train_jaxpr == eval_jaxpr


def test_mlp_goes_through_the_same_interface():
    model, x = MLP(width=8, num_classes=3), jnp.zeros((5, 2))
    params, state = jax.eval_shape(partial(cifar.init, model), KEY, x)
    assert state == {} and set(params) == {"Dense_0", "Dense_1"}
    logits, new_state = jax.eval_shape(lambda p: cifar.apply(model, p, {}, x, True), params)
    assert logits.shape == (5, 3) and new_state == {}


@pytest.mark.parametrize("model", [Myrtle(6, 4, 10), Myrtle(5, 4, 10, "mup"),
                                   WideResNet(12, 1, 10), WideResNet(10, 1, 10, norm="layer")])
def test_invalid_settings_are_refused(model):
    with pytest.raises(ValueError, match="not allowed|choose one of"):
        jax.eval_shape(partial(cifar.init, model), KEY, X[:1])
