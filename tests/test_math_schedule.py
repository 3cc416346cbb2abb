"""Math tier: Gamma_i(t) against hand-computed values (SPEC 1)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf.core.schedule import NEVER, gamma


def hand_gamma(t, A, T, C, off=None):
    """SPEC 1 written out with Python floats, independently of dlf.schedule."""
    if off is not None and t >= off:
        return [1.0] * C
    tT, k = t % T, (t // T) % C
    m = 2 * (A - 1) / T
    g = 1 + m * tT if tT <= T / 2 else 2 * A - 1 - m * tT
    G = [g if i == k else 1.0 for i in range(C)]
    return [C * Gi / sum(G) for Gi in G]


CASES = [(70.0, 100, 3), (10.0, 300, 3), (2.5, 8, 10), (50.0, 5000, 3), (5.0, 40, 2)]


@pytest.mark.parametrize("A,T,C", CASES)
def test_triangle_at_landmarks(A, T, C):
    peak = [C * A / (C - 1 + A)] + [C / (C - 1 + A)] * (C - 1)  # at T/2, class 0 emphasised
    quarter_g = (A + 1) / 2  # g(T/4) = g(3T/4)
    quarter = [C * quarter_g / (C - 1 + quarter_g)] + [C / (C - 1 + quarter_g)] * (C - 1)
    last_g = 1 + 2 * (A - 1) / T  # g(T-1)
    last = [C * last_g / (C - 1 + last_g)] + [C / (C - 1 + last_g)] * (C - 1)
    second = [1.0] * C  # t = T: class 1 starts at weight 1
    expected = {0: [1.0] * C, T // 4: quarter, T // 2: peak, 3 * T // 4: quarter, T - 1: last,
                T: second, C * T: [1.0] * C, C * T + T // 2: peak}
    ts = np.array(list(expected))
    got = np.asarray(gamma(ts, A, T, C))
    np.testing.assert_allclose(got, np.array(list(expected.values())), rtol=2e-6, atol=1e-7)
    for t in ts:  # and the independent formula
        np.testing.assert_allclose(got[list(ts).index(t)], hand_gamma(int(t), A, T, C), rtol=2e-6)


def test_spec_peak_numbers():
    g = np.asarray(gamma(50, 70.0, 100, 3))
    np.testing.assert_allclose(g, [2.9166667, 0.0416667, 0.0416667], atol=1e-6)


@pytest.mark.parametrize("A,T,C", CASES + [(3.0, 7, 3), (9.0, 3, 4)])
def test_every_step_matches_hand_formula_float64(A, T, C):
    ts = np.arange(0, 2 * C * T + 3)
    with jax.enable_x64(True):
        got = np.asarray(gamma(ts, A, T, C, dtype=jnp.float64))
    want = np.array([hand_gamma(int(t), A, T, C) for t in ts])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape", ["triangle", "cosine", "square", "static"])
@pytest.mark.parametrize("C", [2, 3, 10])
def test_sum_is_C_and_range(shape, C):
    rng = np.random.default_rng(C)
    f = jax.jit(gamma, static_argnums=(3, 4))  # traced A, T: one compile for all draws
    for _ in range(20):
        T = int(rng.integers(2, 500))
        A = 1.0 if shape == "static" else float(rng.uniform(1, 100))
        g = np.asarray(f(jnp.asarray(rng.integers(0, 3 * C * T, 256)), A, T, C, shape))
        np.testing.assert_allclose(g.sum(-1), C, rtol=1e-5)
        assert np.all(g >= 0) and np.all(g <= C + 1e-5)


@pytest.mark.parametrize("shape", ["triangle", "cosine", "square", "static"])
def test_A_one_is_ordinary_loss(shape):
    g = np.asarray(gamma(np.arange(0, 1000, 7), 1.0, 37, 3, shape))
    np.testing.assert_array_equal(g, np.ones_like(g))


def test_cosine_and_square_profiles():
    A, T, C = 9.0, 40, 3
    t = np.arange(T)
    cos_g = 1 + (A - 1) * (1 - np.cos(2 * math.pi * t / T)) / 2
    sq_g = np.where((t >= T / 4) & (t < 3 * T / 4), A, 1.0)
    for shape, g in (("cosine", cos_g), ("square", sq_g)):
        want = np.stack([C * g / (C - 1 + g)] + [C / (C - 1 + g)] * (C - 1), axis=1)
        np.testing.assert_allclose(np.asarray(gamma(t, A, T, C, shape)), want, rtol=2e-6)


def test_classes_emphasised_in_order():
    A, T, C = 20.0, 10, 4
    peaks = np.arange(3 * C) * T + T // 2
    k = np.argmax(np.asarray(gamma(peaks, A, T, C)), axis=-1)
    np.testing.assert_array_equal(k, np.arange(3 * C) % C)


def test_stop_step_honoured():
    A, T, C, off = 30.0, 100, 3, 250
    t = np.arange(0, 400)
    g = np.asarray(gamma(t, A, T, C, off_step=off))
    np.testing.assert_array_equal(g[off:], np.ones((400 - off, C)))
    np.testing.assert_allclose(g[:off], [hand_gamma(int(s), A, T, C) for s in t[:off]], rtol=2e-6)
    assert np.any(g[off - 60] != 1.0)  # oscillating right before the stop
    np.testing.assert_allclose(np.asarray(gamma(t, A, T, C, off_step=NEVER)),
                               [hand_gamma(int(s), A, T, C) for s in t], rtol=2e-6)


def test_one_program_serves_every_A_T():
    traces = []

    @jax.jit
    def f(step, A, T, off):
        traces.append(1)
        return gamma(step, A, T, 3, "triangle", off)

    for A, T in [(2.0, 10), (70.0, 5000), (13.0, 7)]:
        for t in (0, 3, T // 2, 2 * T + 1):
            got = np.asarray(f(jnp.int32(t), jnp.float32(A), jnp.int32(T), jnp.int32(NEVER)))
            np.testing.assert_allclose(got, hand_gamma(t, A, T, 3), rtol=2e-6)
    assert len(traces) == 1


# --- the controls and readings of issue 23: random and fixed class order, constant shape, T+1 periods

def test_random_order_visits_every_class_once_per_cycle_and_keeps_the_profile():
    """order=random: each cycle of C periods is a permutation of the classes, the orders differ
    between cycles and seeds and repeat for one seed; the emphasised class's weight over time (the
    profile) is the cyclic one's, only which class gets it changes."""
    A, T, C = 10.0, 20, 4
    t = np.arange(0, 40 * C * T)
    cyc = np.asarray(gamma(t, A, T, C))
    rnd = np.asarray(gamma(t, A, T, C, order="random", order_seed=3))
    np.testing.assert_allclose(np.sort(rnd, axis=1), np.sort(cyc, axis=1), rtol=1e-6)
    k = np.argmax(rnd[T // 2::T], axis=1).reshape(40, C)  # the emphasised class at each period's peak
    assert all(sorted(row) == list(range(C)) for row in k)
    assert len({tuple(row) for row in k}) > 5  # many orders over 40 cycles (24 possible)
    again = np.asarray(gamma(t, A, T, C, order="random", order_seed=3))
    other = np.asarray(gamma(t, A, T, C, order="random", order_seed=4))
    np.testing.assert_array_equal(rnd, again)
    assert not np.array_equal(np.argmax(other[T // 2::T], axis=1), k.ravel())


def test_fixed_order_with_constant_shape_is_a_static_nonuniform_weighting():
    A, T, C, off = 7.0, 30, 3, 500
    g = np.asarray(gamma(np.arange(600), A, T, C, "constant", off, order="fixed"))
    want = np.array([C * A, C, C]) / (A + C - 1)
    np.testing.assert_allclose(g[:off], np.broadcast_to(want, (off, C)), rtol=1e-6)
    np.testing.assert_array_equal(g[off:], 1.0)
    # the fixed order with the triangle: class 0 always emphasised, with the triangle's profile
    tri = np.asarray(gamma(np.arange(600), A, T, C, order="fixed"))
    assert np.all(np.argmax(tri, axis=1)[np.arange(600) % T != 0] == 0)
    np.testing.assert_allclose(tri[:, 0], np.max(np.asarray(gamma(np.arange(600), A, T, C)), axis=1), rtol=1e-6)


@pytest.mark.parametrize("A,T,C", [(70.0, 100, 3), (2.5, 8, 10), (5.0, 7, 2)])
def test_notebook_period_lasts_T_plus_1_steps(A, T, C):
    """period_extra=1 (schedule.period=T+1): the authors' counter runs 0..T, so the profile g(c)
    of c = t mod (T+1) is the triangle of period T and the class changes every T+1 steps."""
    t = np.arange(0, 4 * C * (T + 1))
    got = np.asarray(gamma(t, A, T, C, dtype=jnp.float32, period_extra=1))
    m = 2 * (A - 1) / T
    for s in t[:: max(1, len(t) // 200)]:
        c, k = s % (T + 1), (s // (T + 1)) % C
        g = 1 + m * c if 2 * c <= T else 2 * A - 1 - m * c
        G = [g if i == k else 1.0 for i in range(C)]
        np.testing.assert_allclose(got[s], [C * x / sum(G) for x in G], rtol=2e-6)
    assert not np.allclose(got, np.asarray(gamma(t, A, T, C)))
