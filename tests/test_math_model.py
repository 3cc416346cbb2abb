"""Math tier: loss, data, model init and the engine's step against explicit references."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlf import config as config_lib
from dlf.core.engine import Data, Hyper, Program, fit, plain_apply
from dlf.core.losses import dynamical_cross_entropy
from dlf.core.schedule import NEVER
from dlf.core.seeds import init_states
from dlf.data import spiral
from dlf.drive.build import build
from dlf.models.mlp import MLP


def np_weighted_ce(logits, labels, g):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    ce = -logp[np.arange(len(labels)), labels]
    return np.mean(g[labels] * ce)


def test_dynamical_ce_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 5)) * 3
    labels = rng.integers(0, 5, 64)
    g = rng.uniform(0, 5, 5)
    g = 5 * g / g.sum()
    with jax.enable_x64(True):
        F, ce = dynamical_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(g))
        np.testing.assert_allclose(float(F), np_weighted_ce(logits, labels, g), rtol=1e-13)
        np.testing.assert_allclose(float(ce), np_weighted_ce(logits, labels, np.ones(5)), rtol=1e-13)


def test_A_one_equals_optax_mean_ce():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(300, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, 300))
    F, _ = dynamical_cross_entropy(logits, labels, jnp.ones(3))
    ref = optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 3)).mean()
    np.testing.assert_allclose(float(F), float(ref), rtol=1e-6)


def test_spiral_matches_spec_formula():
    train, val = spiral()
    assert train.x.shape == (300, 2) and val.x.shape == (300, 2)
    np.testing.assert_array_equal(train.y, np.repeat(np.arange(3), 100))
    rs = np.random.RandomState(0)
    for j in range(3):
        r = np.linspace(0, 1, 100)
        theta = 2 * np.pi * j / 3 + 4 * np.pi * r + 0.2 * rs.randn(100)
        np.testing.assert_allclose(train.x[train.y == j], np.c_[r * np.cos(theta), r * np.sin(theta)],
                                   atol=1e-15)
    r_val = np.linalg.norm(val.x, axis=1).reshape(3, 100)
    assert np.all(np.diff(r_val, axis=1) >= 0) and r_val.max() <= 1 and not np.allclose(
        r_val[0], np.linspace(0, 1, 100))
    assert not np.allclose(val.x, train.x)


def _kernels(init, width, seeds=20):
    W1, W2, b1, b2 = [], [], [], []
    for s in range(seeds):
        p = MLP(width, 3, init_scheme=init).init(jax.random.key(s), jnp.zeros((1, 2)))["params"]
        W1.append(p["Dense_0"]["kernel"])
        W2.append(p["Dense_1"]["kernel"])
        b1.append(p["Dense_0"]["bias"])
        b2.append(p["Dense_1"]["bias"])
    return [np.concatenate([np.ravel(a) for a in x]) for x in (W1, W2, b1, b2)]


def test_param_count():
    p = MLP(100, 3).init(jax.random.key(0), jnp.zeros((1, 2)))["params"]
    assert sum(x.size for x in jax.tree.leaves(p)) == 603


def test_lecun_init_is_plain_normal_fan_in():
    W1, W2, b1, b2 = _kernels("lecun", 1000)
    assert abs(W1.var() / (1 / 2) - 1) < 0.03 and abs(W2.var() / (1 / 1000) - 1) < 0.03
    assert np.abs(W1).max() / np.sqrt(1 / 2) > 3.0  # not truncated at 2 std
    assert np.all(b1 == 0) and np.all(b2 == 0)


def test_glorot_init_is_truncated_fan_avg_with_small_bias():
    W1, W2, b1, b2 = _kernels("glorot", 1000)
    for W, fi, fo in ((W1, 2, 1000), (W2, 1000, 3)):
        var = 2 / (fi + fo)
        assert abs(W.var() / var - 1) < 0.03
        # jax's truncated normal: cut at 2 std of the unscaled draw, std 1/0.8796
        assert np.abs(W).max() <= 2 * np.sqrt(var) / 0.87962566103423978 + 1e-6
    assert abs(b1.std() / 0.01 - 1) < 0.03 and abs(b1.mean()) < 1e-3


def _problem(width=16, lr=0.5, dtype=jnp.float64):
    train, val = spiral(per_class=20)
    data = Data(jnp.asarray(train.x, dtype), jnp.asarray(train.y), jnp.asarray(val.x, dtype),
                jnp.asarray(val.y))
    model = MLP(width, 3)
    tx = optax.sgd(lr)
    prog = Program(apply=plain_apply(lambda p, x: model.apply({"params": p}, x)), tx=tx,
                   loss=dynamical_cross_entropy, num_classes=3)
    return model, tx, prog, data


def test_stacked_initial_states_are_each_seeds_own_bit_for_bit():
    """init_states maps over the seeds (lax.map): run i holds exactly what its seed gives alone, from its
    named streams: flax's init from `init`, the optimiser's initial state, `data` and `probe` keys."""
    from dlf.core.seeds import streams

    model, _, _, data = _problem(width=5, dtype=jnp.float32)
    tx = optax.adam(0.1)
    seeds = [4, 0, 7]
    states = init_states(model, tx, seeds, data.x_train)
    for i, seed in enumerate(seeds):
        keys = streams(seed)
        params = jax.jit(model.init)(keys["init"], data.x_train)["params"]
        mu = tx.init(params)[0].mu
        for got, want in ((states.params, params), (states.opt_state[0].mu, mu)):
            jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)), got, want)
        for got, name in ((states.key, "data"), (states.probe_key, "probe")):
            np.testing.assert_array_equal(jax.random.key_data(got[i]), jax.random.key_data(keys[name]))
    assert states.step.tolist() == [0, 0, 0] and states.diverged_step.tolist() == [-1, -1, -1]


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_engine_steps_are_exact_gradient_descent():
    """k engine steps == k hand-written GD steps on F(t) with explicitly computed Gamma(t)."""
    with jax.enable_x64(True):
        model, tx, prog, data = _problem()
        A, T, lr, k = 7.0, 6, 0.5, 13
        states = init_states(model, tx, [3], data.x_train)
        hp = Hyper(jnp.float64(A), jnp.int32(T), jnp.int32(NEVER))
        params = jax.tree.map(lambda x: np.asarray(x[0]), states.params)
        for t in range(k):
            tT, c = t % T, (t // T) % 3
            m = 2 * (A - 1) / T
            g_raw = 1 + m * tT if 2 * tT <= T else 2 * A - 1 - m * tT
            G = np.ones(3)
            G[c] = g_raw
            g = 3 * G / G.sum()

            def F(p):
                h = jnp.maximum(data.x_train @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
                z = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
                logp = z - jax.scipy.special.logsumexp(z, axis=1, keepdims=True)
                return jnp.mean(jnp.asarray(g)[data.y_train] * -logp[jnp.arange(60), data.y_train])

            grads = jax.grad(F)(params)
            params = jax.tree.map(lambda p, d: p - lr * d, params, grads)
        out, _ = fit(prog, states, hp, data, k, 5, lambda s, m: None)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a)[0], b, rtol=1e-12, atol=1e-14),
                     out.params, params)
        assert int(out.step[0]) == k


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_chunking_and_vmap_do_not_change_results():
    with jax.enable_x64(True):
        model, tx, prog, data = _problem()
        hp = Hyper(jnp.float64(20.0), jnp.int32(10), jnp.int32(35))
        finals = []
        for log_every, vmap_size in ((50, None), (7, 1), (3, 2)):
            states = init_states(model, tx, [0, 1, 2], data.x_train)
            rows = []
            out, _ = fit(prog, states, hp, data, 50, log_every, lambda s, m: rows.append(s),
                         vmap_size=vmap_size)
            assert rows[0] == 0 and rows[-1] == 50 and len(rows) == -(-50 // log_every) + 1
            finals.append(out.params)
        single = init_states(model, tx, [2], data.x_train)
        out1, _ = fit(prog, single, hp, data, 50, 50, lambda s, m: None)
        for f in finals[1:]:
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13), f, finals[0])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[2], b[0], rtol=1e-11, atol=1e-13),
                     finals[0], out1.params)


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
@pytest.mark.parametrize("vmap_size", [None, 1])
def test_nonfinite_seed_is_frozen_and_others_unaffected(vmap_size):
    model, tx, prog, data = _problem(dtype=jnp.float32)
    hp = Hyper(jnp.float32(10.0), jnp.int32(10), jnp.int32(NEVER))
    clean = init_states(model, tx, [0, 1, 2], data.x_train)
    poisoned = init_states(model, tx, [0, 1, 2], data.x_train)  # own buffers: fit donates its input
    k = poisoned.params["Dense_1"]["kernel"]
    poisoned.params["Dense_1"]["kernel"] = k.at[1, 0, 0].set(jnp.inf)
    before = jax.tree.map(np.asarray, poisoned.params)
    rows = []
    out_clean, _ = fit(prog, clean, hp, data, 20, 10, lambda s, m: None, vmap_size=vmap_size)
    out, _ = fit(prog, poisoned, hp, data, 20, 10, lambda s, m: rows.append(m), vmap_size=vmap_size)
    np.testing.assert_array_equal(np.asarray(out.diverged_step), [-1, 0, -1])
    np.testing.assert_array_equal(rows[-1]["diverged_step"], [-1, 0, -1])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a)[1], b[1]), out.params, before)
    for i in (0, 2):
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)[i]),
                     out.params, out_clean.params)


def test_overflow_during_training_is_caught():
    """A run that blows up by itself (huge lr) is flagged at the step its F or params go non-finite."""
    model, tx, prog, data = _problem(lr=1e30, dtype=jnp.float32)
    hp = Hyper(jnp.float32(50.0), jnp.int32(10), jnp.int32(NEVER))
    rows = []
    out, _ = fit(prog, init_states(model, tx, [0, 1], data.x_train), hp, data, 30, 10,
                 lambda s, m: rows.append(m))
    d = np.asarray(out.diverged_step)
    assert np.all(d >= 0) and np.all(d < 30)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(out.params))


def test_build_uses_config():
    cfg = config_lib.from_dict({"seeds": 3, "seed": 5, "model": {"width": 7},
                                "schedule": {"A": 4, "T": 9, "off_last_periods": 1},
                                "train": {"steps": 100}})
    b = build(cfg)
    assert b.seeds == [5, 6, 7]
    assert b.states.params["Dense_0"]["kernel"].shape == (3, 2, 7)
    # off for the last period: the first period boundary at or after 100 - 9 (off_align=notebook)
    assert int(b.hp.T) == 9 and float(b.hp.A) == 4.0 and int(b.hp.off_step) == 99


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
@pytest.mark.parametrize("vmap_size", [None, 2])
def test_grid_of_A_T_in_one_program_equals_separate_runs(vmap_size):
    """Per-run (A, T, off_step) as traced values (hp_axis=0): one program, many grid points."""
    with jax.enable_x64(True):
        model, tx, prog, data = _problem()
        grid = [(1.0, 2, NEVER), (30.0, 7, 20), (5.0, 12, NEVER)]
        hp = Hyper(jnp.asarray([g[0] for g in grid], jnp.float64), jnp.asarray([g[1] for g in grid], jnp.int32),
                   jnp.asarray([g[2] for g in grid], jnp.int32))
        rows = []
        out, _ = fit(prog, init_states(model, tx, [0, 0, 0], data.x_train), hp, data, 30, 10,
                     lambda s, m: rows.append(m), hp_axis=0, vmap_size=vmap_size)
        for i, (A, T, off) in enumerate(grid):
            one, _ = fit(prog, init_states(model, tx, [0], data.x_train),
                         Hyper(jnp.float64(A), jnp.int32(T), jnp.int32(off)), data, 30, 30, lambda s, m: None)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b[0], rtol=1e-11, atol=1e-13),
                         out.params, one.params)
        assert not np.allclose(out.params["Dense_0"]["kernel"][0], out.params["Dense_0"]["kernel"][1])
        # each run reports its own Gamma: at step 10, run 0 has A=1; run 1 (A=30, T=7) is at
        # tT=3, class 1, g = 1 + 2*29/7*3; run 2 (A=5, T=12) at tT=10, class 0, g = 9 - 2*4/12*10
        g1, g2 = 1 + 2 * 29 / 7 * 3, 9 - 2 * 4 / 12 * 10
        np.testing.assert_allclose(rows[1]["gamma"], [
            [1, 1, 1],
            [3 / (2 + g1), 3 * g1 / (2 + g1), 3 / (2 + g1)],
            [3 * g2 / (2 + g2), 3 / (2 + g2), 3 / (2 + g2)]], rtol=1e-12)
        np.testing.assert_array_equal(rows[-1]["gamma"][1], np.ones(3))  # run 1 off from step 20


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_chunk_is_one_compiled_loop_without_host_callbacks():
    """The steps between log points are a device loop: no host callback or transfer per step."""
    from functools import partial

    model, tx, prog, data = _problem(dtype=jnp.float32)
    states = init_states(model, tx, [0, 1], data.x_train)
    hp = Hyper(jnp.float32(10.0), jnp.int32(10), jnp.int32(NEVER))
    hlo = jax.jit(jax.vmap(partial(prog.chunk, n_steps=500), in_axes=(0, None, None))).lower(
        states, hp, data).as_text()
    assert "stablehlo.while" in hlo
    assert "callback" not in hlo and "outfeed" not in hlo
    calls = []
    fit(prog, states, hp, data, 1000, 500, lambda s, m: calls.append(s))
    assert calls == [0, 500, 1000]  # the host sees the metrics at log points only


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
@pytest.mark.parametrize("vmap_size", [1, None])
def test_runs_with_their_own_end_step_and_lr_equal_each_run_alone(vmap_size):
    """Per-run end_step and learning rate as traced values: one program runs to the longest end
    and freezes each run at its own (params, optimizer state and step counter), and each run's
    params equal the same run alone (its own lr in the optimizer, its own number of steps): bit for
    bit when runs go one at a time (vmap_size 1), to rounding when vmapped."""
    with jax.enable_x64(True):
        model, _, prog1, data = _problem(lr=1.0)  # the grid's transformation: lr 1, scaled per run
        runs = [(0.5, 17), (2.0, 30), (1.0, 9)]  # (lr, end_step)
        hp = Hyper(jnp.full(3, 20.0), jnp.full(3, 6, jnp.int32), jnp.full(3, NEVER, jnp.int32),
                   end_step=jnp.asarray([e for _, e in runs], jnp.int32), lr=jnp.asarray([lr for lr, _ in runs]))
        rows = []
        out, _ = fit(prog1, init_states(model, prog1.tx, [4, 4, 4], data.x_train), hp, data, 30, 10,
                     lambda s, m: rows.append((s, m)), hp_axis=0, vmap_size=vmap_size)
        assert out.step.tolist() == [17, 30, 9]
        for i, (lr, end) in enumerate(runs):
            _, tx, prog, _ = _problem(lr=lr)
            one = {}
            states, _ = fit(prog, init_states(model, tx, [4], data.x_train),
                            Hyper(jnp.float64(20.0), jnp.int32(6), jnp.int32(NEVER)), data, end, end,
                            lambda s, m: one.update({s: m}), vmap_size=vmap_size)
            for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(states.params)):
                if vmap_size == 1:  # one run at a time (the CPU default): bit for bit
                    np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)[0])
                else:  # vmapped runs: XLA's batched dots round otherwise than a lone run's
                    np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=1e-11, atol=1e-13)
            # the frozen run's last metrics row is its own end's
            np.testing.assert_allclose(rows[-1][1]["loss"][i], one[end]["loss"][0], rtol=1e-12)
            np.testing.assert_allclose(rows[-1][1]["gamma"][i], one[end]["gamma"][0], rtol=1e-12)
        assert not np.array_equal(out.params["Dense_0"]["kernel"][0], out.params["Dense_0"]["kernel"][2])


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_lr_target_oscillates_the_step_size_on_the_ordinary_loss():
    """schedule.target=lr (a control): the loss keeps Gamma = 1 and step t is scaled by the
    emphasised class's Gamma_k(t) of the same (A, T): k engine steps == k hand-written GD steps on
    the plain CE with learning rate lr * max_i Gamma_i(t); the metrics report Gamma = 1."""
    import dataclasses

    with jax.enable_x64(True):
        model, tx, prog, data = _problem()
        prog = dataclasses.replace(prog, target="lr")
        A, T, lr, k = 7.0, 6, 0.5, 13
        states = init_states(model, tx, [3], data.x_train)
        hp = Hyper(jnp.float64(A), jnp.int32(T), jnp.int32(NEVER))
        params = jax.tree.map(lambda x: np.asarray(x[0]), states.params)

        def ce(p):
            z = model.apply({"params": p}, data.x_train)
            logp = z - jax.scipy.special.logsumexp(z, axis=1, keepdims=True)
            return jnp.mean(-logp[jnp.arange(60), data.y_train])

        for t in range(k):
            tT, m = t % T, 2 * (A - 1) / T
            g_raw = 1 + m * tT if 2 * tT <= T else 2 * A - 1 - m * tT
            factor = 3 * g_raw / (g_raw + 2)
            params = jax.tree.map(lambda p, d: p - lr * factor * d, params, jax.grad(ce)(params))
        rows = []
        out, _ = fit(prog, states, hp, data, k, k, lambda s, m: rows.append(m))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a)[0], b, rtol=1e-12, atol=1e-14),
                     out.params, params)
        np.testing.assert_array_equal(rows[-1]["gamma"], 1.0)
        assert rows[-1]["loss"][0] == pytest.approx(rows[-1]["ce"][0], rel=1e-14)
