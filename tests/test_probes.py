"""Math tier: probes (HVP, Lanczos, Hessian and NTK spectra, bifurcations) and the dynamical MSE."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dlf.analysis.bifurcation import DETECTOR, branch_average, cascades, delta_f, episodes, threshold, threshold_summary
from dlf.core.losses import LOSSES, dynamical_mse_by_output, dynamical_mse_by_sample
from dlf.core.schedule import gamma
from dlf.data import spiral
from dlf.models.mlp import MLP
from dlf.probes import balanced_subset, first_n, hessian_top, hvp, lanczos, ntk_matrix, ntk_top
from dlf.probes.hessian import flat_hvp
from dlf.probes.lanczos import start_vector

HESSIAN_ORDER = 30  # spiral width 100: order 10 already gives ~1e-15 here; 30 leaves margin


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def spiral_problem(width=100, loss="cross_entropy", step=130, A=10.0, T=100, gd_steps=100, seed=0):
    """(F of params, apply, params, x, y): the spiral MLP in float64 after `gd_steps` GD steps of
    lr 1 on the dynamical loss, F at step `step` (A > 1, so Gamma != 1)."""
    train, _ = spiral()
    dtype = jnp.result_type(float)  # float64 under the x64 fixture
    x, y = jnp.asarray(train.x, dtype), jnp.asarray(train.y, jnp.int32)
    model = MLP(width=width, num_classes=3)
    apply = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
    g = gamma(step, jnp.asarray(A, dtype), T, 3, dtype=dtype)
    assert not np.allclose(g, 1)
    F = lambda p: LOSSES[loss](apply(p, x), y, g)[0]  # noqa: E731
    params = model.init(jax.random.key(seed), x)["params"]
    gd = jax.jit(lambda p, _: (jax.tree.map(lambda w, d: w - d, p, jax.grad(F)(p)), None))
    params = jax.lax.scan(gd, params, None, length=gd_steps)[0] if gd_steps else params
    return F, apply, params, x, y


def full_hessian(F, params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda w: F(unravel(w))))(flat))


# --- Hessian-vector products and Lanczos -------------------------------------------------------

@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_hvp_equals_full_hessian_times_v(loss):
    F, _, params, _, _ = spiral_problem(width=8, loss=loss, gd_steps=5)
    H = full_hessian(F, params)
    flat, unravel = ravel_pytree(params)
    v = jax.random.normal(jax.random.key(3), flat.shape, flat.dtype)
    ref = H @ np.asarray(v)
    Hv = jax.jit(lambda p, u: ravel_pytree(hvp(F, p, unravel(u)))[0])(params, v)
    np.testing.assert_allclose(Hv, ref, rtol=1e-10, atol=1e-13)
    assert flat_hvp(F, params)[1] == flat.size
    np.testing.assert_allclose(jax.jit(lambda p, u: flat_hvp(F, p)[0](u))(params, v), ref, rtol=1e-10,
                               atol=1e-13)


def test_lanczos_diagonal_exact_with_order_dim():
    d = jnp.asarray(np.random.default_rng(0).permutation(np.linspace(-3.0, 7.0, 40)))
    ritz = jax.jit(lambda k: lanczos(lambda v: d * v, 40, 40, k))(jax.random.key(0))
    np.testing.assert_allclose(ritz, np.sort(d)[::-1], atol=1e-10)


def test_lanczos_lambda_max_below_dim_on_separated_spectrum():
    d = jnp.concatenate([jnp.array([10.0, 6.0]), jnp.linspace(0.0, 1.0, 998)])
    ritz = lanczos(lambda v: d * v, 1000, 20, jax.random.key(1))
    assert ritz.shape == (20,)
    assert abs(ritz[0] - 10.0) < 1e-10 and abs(ritz[1] - 6.0) < 1e-10
    assert np.all(np.diff(ritz) <= 0) and ritz[-1] >= 0.0


def test_lanczos_breakdown_and_order_above_dim_are_masked():
    d = jnp.array([5.0, 5.0, 3.0, 3.0, 3.0, 1.0])  # Krylov dimension 3: breakdown at step 3
    ritz = jax.jit(lambda k: lanczos(lambda v: d * v, 6, 9, k))(jax.random.key(2))
    assert ritz.shape == (9,)
    np.testing.assert_allclose(ritz[:3], [5.0, 3.0, 1.0], atol=1e-12)
    assert np.all(np.isnan(ritz[3:]))


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_hessian_lambda_max_of_spiral_mlp_matches_eigh():
    """603-parameter spiral MLP (width 100), float64, F at t=130 with A=10 after 100 GD steps."""
    F, _, params, _, _ = spiral_problem()
    assert ravel_pytree(params)[0].size == 603
    ev = np.linalg.eigvalsh(full_hessian(F, params))[::-1]
    lam, top = jax.jit(lambda k: hessian_top(F, params, k, HESSIAN_ORDER, 3))(jax.random.key(7))
    assert abs(lam - ev[0]) <= 1e-6 * abs(ev[0])
    np.testing.assert_allclose(top, ev[:3], rtol=1e-6)


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_fresh_start_vector_per_key_same_lambda_max():
    F, _, params, _, _ = spiral_problem(width=16, gd_steps=20)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    assert not np.allclose(start_vector(k1, 51), start_vector(k2, 51))
    lam1, lam2 = jax.jit(jax.vmap(lambda k: hessian_top(F, params, k, HESSIAN_ORDER)[0]))(
        jnp.stack([k1, k2]))
    np.testing.assert_allclose(lam1, lam2, rtol=1e-10)


# --- empirical NTK ------------------------------------------------------------------------------

def mlp_jacobian_numpy(params, x):
    """J[(i, k), p] of f = relu(x W1 + b1) W2 + b2 by hand, columns in ravel_pytree order."""
    W1, b1 = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["bias"])
    W2 = np.asarray(params["Dense_1"]["kernel"])
    pre = x @ W1 + b1
    h, on = np.maximum(pre, 0), (pre > 0).astype(float)  # (N, H)
    N, K = h.shape[0], W2.shape[1]
    blocks = {
        ("Dense_0", "bias"): np.einsum("nh,hk->nkh", on, W2),
        ("Dense_0", "kernel"): np.einsum("nd,nh,hk->nkdh", x, on, W2).reshape(N, K, -1),
        ("Dense_1", "bias"): np.broadcast_to(np.eye(K), (N, K, K)),
        ("Dense_1", "kernel"): np.einsum("nh,kl->nkhl", h, np.eye(K)).reshape(N, K, -1),
    }
    # ravel_pytree orders leaves as jax.tree flattening does (sorted dict keys)
    order = [tuple(k.key for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return np.concatenate([blocks[o] for o in order], axis=-1).reshape(N * K, -1)


def test_ntk_explicit_equals_jacobian_product():
    _, apply, params, x, y = spiral_problem(gd_steps=20)
    idx = balanced_subset(np.asarray(y), 30, 3)
    xs = np.asarray(x)[idx]
    J = mlp_jacobian_numpy(params, xs)
    assert J.shape == (90, 603)
    np.testing.assert_allclose(ntk_matrix(apply, params, jnp.asarray(xs)), J @ J.T, rtol=1e-10, atol=1e-10)


def test_ntk_matrix_free_lambda_max_matches_eigh():
    _, apply, params, x, y = spiral_problem(gd_steps=20)
    xs = x[balanced_subset(np.asarray(y), 60, 3)]
    ev = np.linalg.eigvalsh(np.asarray(ntk_matrix(apply, params, xs)))[::-1]
    lam, top = jax.jit(lambda k: ntk_top(apply, params, xs, k, 30, 3))(jax.random.key(4))
    assert abs(lam - ev[0]) <= 1e-8 * ev[0]
    np.testing.assert_allclose(top, ev[:3], rtol=1e-8)


def test_sample_sets():
    y = np.repeat(np.arange(3), 100)
    idx = balanced_subset(y, 50, 3)
    assert len(idx) == 50 and len(set(idx)) == 50 and list(np.bincount(y[idx])) == [17, 17, 16]
    assert idx[0] == 0 and 99 in idx  # spread along each arm, ends included
    np.testing.assert_array_equal(first_n(y, 50), np.arange(50))
    assert set(y[first_n(y, 50)]) == {0}  # the authors' notebook set: one class only
    with pytest.raises(ValueError):
        balanced_subset(y, 400, 3)


def test_ntk_set_is_the_whole_training_set_by_default():
    from dlf import config as config_lib
    from dlf.probes.evaluators import ntk_indices

    y = np.repeat(np.arange(3), 100)
    cfg = config_lib.from_dict({})
    assert cfg.probes["ntk"].samples is None
    np.testing.assert_array_equal(ntk_indices(cfg.probes["ntk"], y, 3), np.arange(300))  # 900 rows: matrix-free
    assert len(ntk_indices(config_lib.from_dict({"probes": {"ntk": {"samples": 51}}}).probes["ntk"], y, 3)) == 51


# --- probes inside the engine's transformations -------------------------------------------------

@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_probes_under_vmap_scan_and_jit_per_run():
    """Two runs (seeds) stacked: GD steps in lax.scan with a Hessian and NTK probe after each,
    vmapped over the runs, jitted; every probe value equals eigh of that run's explicit matrix."""
    F, apply, _, x, y = spiral_problem(width=16, gd_steps=0)
    xs = x[balanced_subset(np.asarray(y), 30, 3)]
    model = MLP(width=16, num_classes=3)
    params = jax.vmap(lambda k: model.init(k, x)["params"])(jax.random.split(jax.random.key(0), 2))
    keys = jax.random.split(jax.random.key(9), 2)

    def run(params, key):
        def step(p, t):
            p = jax.tree.map(lambda w, d: w - d, p, jax.grad(F)(p))
            k = jax.random.fold_in(key, t)
            return p, (hessian_top(F, p, k, 20)[0], ntk_top(apply, p, xs, k, 20)[0], p)
        return jax.lax.scan(step, params, jnp.arange(2))[1]

    lam_h, lam_k, ps = jax.jit(jax.vmap(run))(params, keys)
    assert lam_h.shape == lam_k.shape == (2, 2)
    flat = jax.vmap(jax.vmap(lambda p: ravel_pytree(p)[0]))(ps).reshape(4, -1)
    unravel = ravel_pytree(jax.tree.map(lambda w: w[0, 0], ps))[1]
    H = jax.jit(jax.vmap(jax.hessian(lambda w: F(unravel(w)))))(flat)
    K = jax.jit(jax.vmap(lambda w: ntk_matrix(apply, unravel(w), xs)))(flat)
    np.testing.assert_allclose(lam_h.reshape(4), np.linalg.eigvalsh(H)[:, -1], rtol=1e-9)
    np.testing.assert_allclose(lam_k.reshape(4), np.linalg.eigvalsh(K)[:, -1], rtol=1e-9)
    assert not np.allclose(lam_h[0], lam_h[1])


# --- bifurcations and the threshold -------------------------------------------------------------

def signal(n=1000, episodes_=((200, 260), (600, 640)), amp=0.05, slope=-1e-3):
    """F with dF = slope (smooth decay) except on each [s, e] where dF alternates -amp, +amp, ...,
    -amp (odd length, negative at both ends, so the episode is exactly s..e by definition)."""
    d = np.full(n, slope)
    for s, e in episodes_:
        assert (e - s) % 2 == 0
        d[s:e + 1] = amp * np.where(np.arange(e - s + 1) % 2 == 0, -1.0, 1.0)
    d[0] = 0.0
    return 1.0 + np.cumsum(d)


def test_delta_f():
    F = np.array([3.0, 1.0, 4.0, 1.5])
    np.testing.assert_allclose(delta_f(F), [np.nan, -2.0, 3.0, -2.5])
    np.testing.assert_allclose(delta_f(F, 2), [np.nan, np.nan, 5.0, -5.5])


def test_episodes_on_synthetic_signal():
    F = signal()
    onsets, ends = episodes(F, diff=1)
    np.testing.assert_array_equal(onsets, [200, 600])
    np.testing.assert_array_equal(ends, [260, 640])
    onsets, ends = episodes(F, diff=1, step0=1000)
    np.testing.assert_array_equal(onsets, [1200, 1600])
    # second difference: d2 = dF(t) - dF(t-1) alternates from s to e + 1 (the return to the drift)
    onsets, ends = episodes(F, diff=2)
    np.testing.assert_array_equal(onsets, [200, 600])
    np.testing.assert_array_equal(ends, [261, 641])


def test_episodes_window_noise_merge_and_nonfinite():
    short = signal(episodes_=((100, 106), (300, 340)))  # 7 alternating steps < window 10
    np.testing.assert_array_equal(episodes(short, diff=1)[0], [300])
    np.testing.assert_array_equal(episodes(short, window=7, diff=1)[0], [100, 300])
    rng = np.random.default_rng(0)
    flat = 0.3 + 1e-8 * rng.standard_normal(5000)  # converged F with rounding-level noise
    assert episodes(flat)[0].size == 0 and episodes(flat, min_amp=0.0)[0].size > 0
    broken = signal()
    broken[700:] = np.nan  # a diverged run
    np.testing.assert_array_equal(episodes(broken, diff=1)[0], [200, 600])
    np.testing.assert_array_equal(episodes(broken)[0], [200, 600])


def drifting(n=2000, s=1000, rate=0.05, c0=1e-6, slope=-0.01):
    """F = 1 + slope t + c(t) (-1)^t, c(t) = c0 exp(rate (t - s)) from step s on (a growing period-2
    oscillation under a drift |slope| that exceeds it for a while), and |d2F(t)| = c(t) + 2c(t-1) + c(t-2)."""
    t = np.arange(n)
    c = np.where(t >= s, c0 * np.exp(rate * (t - s)), 0.0)
    F = 1.0 + slope * t + c * (-1.0) ** t
    a2 = c + 2 * np.r_[0, c[:-1]] + np.r_[0, 0, c[:-2]]
    return F, a2


def test_onset_under_a_drift_is_where_the_oscillation_reaches_onset_amp():
    F, a2 = drifting()
    onsets, ends = episodes(F, onset_amp=1e-3)
    expected = int(np.flatnonzero(a2 >= 1e-3)[0])  # exact: the first step whose |d2F| >= 1e-3
    np.testing.assert_array_equal(onsets, [expected])
    assert ends.tolist() == [len(F) - 1]  # still running at the last step
    # dF keeps the drift's sign until c(t) + c(t-1) > |slope|: the first-difference detector is late
    late = episodes(F, diff=1)[0]
    assert late.size == 1 and late[0] > expected + 20
    # an alternation that never reaches onset_amp (a stable, resonant mode) is no onset
    small, _ = drifting(c0=1e-6, rate=0.0)
    assert episodes(small, onset_amp=1e-3)[0].size == 0 and episodes(small, onset_amp=0.0)[0].size == 1


def test_cascades_group_episodes_separated_by_less_than_quiet():
    onsets = np.array([100, 150, 400, 1000, 1030, 1300])
    ends = np.array([140, 390, 420, 1020, 1100, 1310])
    first, last = cascades(onsets, ends, quiet=50)
    np.testing.assert_array_equal(first, [100, 1000, 1300])
    np.testing.assert_array_equal(last, [420, 1100, 1310])
    first, last = cascades(onsets, ends, quiet=200)
    np.testing.assert_array_equal(first, [100, 1000])
    np.testing.assert_array_equal(last, [420, 1310])
    assert cascades(np.array([], np.int64), np.array([], np.int64), 10)[0].size == 0


def test_branch_average_of_an_alternating_sample_series():
    steps = np.arange(0, 500, 25)
    base = 1.0 + 0.001 * steps
    lam = base + 0.4 * (-1.0) ** np.arange(steps.size)  # odd stride: alternate branches
    at = np.array([10, 100, 260])
    # last two samples at or before 100: steps 75 and 100; their mean is base at 87.5
    np.testing.assert_allclose(branch_average(steps, lam, at)[1:], [1.0 + 0.001 * 87.5, 1.0 + 0.001 * 237.5])
    assert np.isnan(branch_average(steps, lam, at)[0])  # only one sample before step 10


def test_threshold_one_value_per_cascade_and_literal_variant():
    # two cascades of two episodes each (quiet = 0.1 * T = 100 steps), then one isolated episode
    F = signal(n=3000, episodes_=((200, 260), (300, 340), (1000, 1040), (1060, 1100), (2000, 2030)))
    lam_steps = np.arange(0, 3000, 25)
    lam = 0.001 * lam_steps + 1.0 + 0.3 * (-1.0) ** np.arange(lam_steps.size)
    out = threshold(F, lam_steps, lam, T=1000)
    assert out["cascade_onsets"] == [200, 1000, 2000] and out["n_onsets"] == 5
    assert out["cascade_ends"] == [341, 1101, 2031]
    np.testing.assert_allclose(out["values"], [1.1875, 1.9875, 2.9875])  # 1 + 0.001 * (s - 12.5)
    assert out["mean"] == pytest.approx(np.mean([1.1875, 1.9875, 2.9875])) and out["n"] == 3
    # literal: every sample-to-sample change is a jump of 0.6 +- 0.025 >= 0.1; the first one in
    # [onset - 100, end + 100] starts at the sample before it, the last ends at the sample after it
    c0 = out["literal"]["per_cascade"][0]
    assert (c0["start_step"], c0["end_step"]) == (75, 425)  # the jump 75 -> 100 is the first
    assert c0["start"] == pytest.approx(lam[3]) and c0["end"] == pytest.approx(lam[17])
    assert out["literal"]["n"] == 6 and out["literal"]["jump"]["min"] == pytest.approx(0.575)


def test_threshold_summary_per_seed_and_pooled_is_json():
    F0, F1 = signal(), signal(episodes_=((50, 90), (410, 450), (800, 840)))
    lam_steps = np.arange(60, 1000, 25)
    lam = np.stack([np.full(lam_steps.size, 2.0), 0.01 * lam_steps])
    out = threshold_summary(np.stack([F0, F1]), lam_steps, lam, T=1000, seeds=[5, 6])
    s0, s1 = out["per_seed"]
    assert (s0["seed"], s0["mean"], s0["std"], s0["n"]) == (5, 2.0, 0.0, 2)
    # seed 1's episode at step 50 has no quiet stretch (100 steps) before it: the initial transient
    assert s1["seed"] == 6 and s1["n"] == 2 and s1["n_early"] == 1 and s1["cascade_onsets"] == [410, 800]
    np.testing.assert_allclose(s1["values"], [3.975, 7.725])  # 0.01 * (385 + 410) / 2, ...
    pooled = [2.0, 2.0, 3.975, 7.725]
    assert out["n"] == 4 and out["n_onsets"] == 5
    few = threshold(F0, np.array([210, 500, 700]), np.array([1.0, 2.0, 3.0]), T=1000)  # none before 200
    assert few["values"][0] is None and few["values"][1] == 1.5 and few["n"] == 1
    assert out["mean"] == pytest.approx(np.mean(pooled)) and out["std"] == pytest.approx(np.std(pooled, ddof=1))
    assert out["seed_mean"]["n"] == 2 and out["seed_mean"]["mean"] == pytest.approx((2.0 + 5.85) / 2)
    assert out["detector"] == {**DETECTOR, "quiet_steps": 100}
    json.dumps(out, allow_nan=False)
    empty = threshold_summary(np.ones((1, 100)), lam_steps, lam[:1], T=1000)
    assert (empty["mean"], empty["std"], empty["n_onsets"]) == (None, None, 0)


def gd_moving_valley(eta, kappa=2e-5, v=0.01, every=25, max_steps=30_000):
    """Gradient descent on F_t(x, y) = k(t)/2 (x - v t)^2 + 1/(2 eta) (y - v t)^2 with
    eta k(t) = 1.8 + kappa t: a valley moving at speed v whose curvature k grows slowly through
    2/eta (at t = 0.2 / kappa). Returns (F per step, probe steps, lambda_max = k at the probes);
    stops once F has blown up."""
    x = y = 0.0
    F, lam = [], []
    for t in range(max_steps):
        k = (1.8 + kappa * t) / eta
        F.append(0.5 * k * (x - v * t) ** 2 + 0.5 / eta * (y - v * t) ** 2)
        if t % every == 0:
            lam.append(max(k, 1 / eta))
        if F[-1] > 1e6:
            break
        x, y = x - eta * k * (x - v * t), y - (y - v * t)
    return np.array(F), every * np.arange(len(lam)), np.array(lam)


@pytest.mark.parametrize("eta", [0.5, 2.0])
def test_gradient_descent_threshold_is_two_over_eta(eta):
    F, steps, lam = gd_moving_valley(eta)
    out = threshold(F, steps, lam, T=1000)
    assert out["n"] == 1
    assert out["mean"] == pytest.approx(2 / eta, rel=0.03)
    # every onset-free stretch before the crossing is quiet: no cascade below 2/eta
    assert out["cascade_onsets"][0] > 0.2 / 2e-5


# --- dynamical MSE ------------------------------------------------------------------------------

def np_mse(logits, labels, g, by):
    r2 = (logits - np.eye(logits.shape[1])[labels]) ** 2
    w = g[labels][:, None] if by == "sample" else g[None, :]
    return (w * r2).sum() / (2 * len(labels)), r2.sum() / (2 * len(labels))


@pytest.mark.parametrize("by,fn", [("sample", dynamical_mse_by_sample), ("output", dynamical_mse_by_output)])
def test_dynamical_mse_matches_numpy(by, fn):
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(64, 5)) * 2, rng.integers(0, 5, 64)
    g = rng.uniform(0, 5, 5)
    g = 5 * g / g.sum()
    F, plain = fn(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(g))
    ref_F, ref_plain = np_mse(logits, labels, g, by)
    np.testing.assert_allclose([F, plain], [ref_F, ref_plain], rtol=1e-13)
    F1, plain1 = fn(jnp.asarray(logits), jnp.asarray(labels), jnp.ones(5))
    np.testing.assert_allclose(F1, plain1, rtol=1e-15)
    np.testing.assert_allclose(plain1, ref_plain, rtol=1e-13)
    grad = jax.grad(lambda z: fn(z, jnp.asarray(labels), jnp.asarray(g))[0])(jnp.asarray(logits))
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    assert LOSSES[f"mse_{by}"] is fn


def test_dynamical_mse_gradients_through_model_float32():
    with jax.enable_x64(False):
        F, _, params, _, _ = spiral_problem(width=16, loss="mse_output", gd_steps=0)
        grads = jax.grad(F)(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
