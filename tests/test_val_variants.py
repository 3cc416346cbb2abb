"""Validation-set variants of the spiral (dataset.val_radii, dataset.val_noise): the defaults give
the original arrays bit for bit, every variant leaves the training split as it is."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir

from dlf import config as config_lib
from dlf.data import build, spiral

C, N, NOISE, TURNS = 3, 40, 0.2, 2.0


def reference(classes=C, per_class=N, noise=NOISE, turns=TURNS, train_seed=0, val_seed=1):
    """The spiral as written before the variants existed (hand copy of the original formula)."""
    def points(r, j, eps):
        t = 2 * np.pi * j / classes + 2 * np.pi * turns * r + eps
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)

    rng = np.random.RandomState(train_seed)
    xt = [points(np.linspace(0.0, 1.0, per_class), j, noise * rng.randn(per_class)) for j in range(classes)]
    rng = np.random.RandomState(val_seed)
    xv = []
    for j in range(classes):
        r = np.sort(rng.uniform(0.0, 1.0, per_class))
        xv.append(points(r, j, noise * rng.randn(per_class)))
    y = np.repeat(np.arange(classes, dtype=np.int32), per_class)
    return (np.concatenate(xt), y), (np.concatenate(xv), y)


def split_of(**dataset):
    cfg = config_lib.from_dict({"dataset": {"classes": C, "per_class": N, **dataset}})
    return build(cfg.dataset)


def test_defaults_are_the_original_arrays():
    (xt, yt), (xv, yv) = reference()
    train, val = split_of()
    np.testing.assert_array_equal(train.x, xt)
    np.testing.assert_array_equal(train.y, yt)
    np.testing.assert_array_equal(val.x, xv)
    np.testing.assert_array_equal(val.y, yv)
    assert train.y.dtype == val.y.dtype == np.int32
    # the library default (100 per arm) too
    (xt, _), (xv, _) = reference(per_class=100)
    train, val = spiral()
    np.testing.assert_array_equal(train.x, xt)
    np.testing.assert_array_equal(val.x, xv)


@pytest.mark.parametrize("variant", [{"val_radii": "between"}, {"val_noise": 0.0}, {"val_noise": 0.5},
                                     {"val_radii": "between", "val_noise": 0.05}])
def test_every_variant_leaves_the_training_split(variant):
    (xt, yt), _ = reference()
    train, _ = split_of(**variant)
    np.testing.assert_array_equal(train.x, xt)
    np.testing.assert_array_equal(train.y, yt)


def test_between_radii_are_the_midpoints_arm_by_arm():
    train, val = split_of(val_radii="between")
    assert val.x.shape == (C * (N - 1), 2) and val.x.dtype == np.float64
    np.testing.assert_array_equal(val.y, np.repeat(np.arange(C, dtype=np.int32), N - 1))
    grid = np.linspace(0.0, 1.0, N)
    mid = (grid[:-1] + grid[1:]) / 2
    r = np.linalg.norm(val.x, axis=1).reshape(C, N - 1)
    for j in range(C):
        np.testing.assert_allclose(r[j], mid, rtol=1e-15, atol=1e-16)
        # each midpoint lies strictly between two consecutive training radii of the same arm
        r_train = np.linalg.norm(train.x[train.y == j], axis=1)
        assert (r_train[:-1] < r[j]).all() and (r[j] < r_train[1:]).all()
    # its noise: val_seed's first draws, arm by arm
    rng = np.random.RandomState(1)
    eps = NOISE * rng.randn(C, N - 1)
    theta = 2 * np.pi * np.arange(C)[:, None] / C + 2 * np.pi * TURNS * mid + eps
    expect = np.stack([mid * np.cos(theta), mid * np.sin(theta)], axis=-1).reshape(-1, 2)
    np.testing.assert_array_equal(val.x, expect)


def _angle_deviation(x, y_arm, r):
    """Each point's angle minus its arm's noise-free angle at radius r, wrapped into (-pi, pi]."""
    dev = np.arctan2(x[:, 1], x[:, 0]) - (2 * np.pi * y_arm / C + 2 * np.pi * TURNS * r)
    return np.angle(np.exp(1j * dev))


@pytest.mark.parametrize("val_radii", ["uniform", "between"])
def test_val_noise_scales_the_angle_deviation_only(val_radii):
    _, base = split_of(val_radii=val_radii)
    _, double = split_of(val_radii=val_radii, val_noise=2 * NOISE)
    _, clean = split_of(val_radii=val_radii, val_noise=0.0)
    r = np.linalg.norm(base.x, axis=1)
    np.testing.assert_allclose(np.linalg.norm(double.x, axis=1), r, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(clean.x, axis=1), r, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(base.y, double.y)
    far = r > 1e-3  # the angle of a point at the origin is meaningless
    assert far.sum() > 0.9 * r.size
    d1 = _angle_deviation(base.x, base.y, r)[far]
    d2 = _angle_deviation(double.x, double.y, r)[far]
    d0 = _angle_deviation(clean.x, clean.y, r)[far]
    assert np.abs(d1).max() > 0.1  # the noise is there
    np.testing.assert_allclose(d2, 2 * d1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d0, 0.0, atol=1e-9)


config_lib.register_resolvers()


@pytest.mark.parametrize("override, key, allowed", [
    ("dataset.val_radii=zigzag", "dataset.val_radii", "uniform, between"),
    ("dataset.val_noise=-1", "dataset.val_noise", ">= 0"),
    ("dataset.val_noise=abc", "dataset.val_noise", "number"),
])
def test_bad_value_is_a_one_line_config_error(override, key, allowed):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(config_lib.ConfigError) as e:
            config_lib.from_hydra(compose(config_name="config", overrides=[override]))
    msg = str(e.value)
    assert msg.startswith(key) and allowed in msg and "\n" not in msg, msg


def test_between_needs_two_points_per_arm():
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.from_dict({"dataset": {"per_class": 1, "val_radii": "between"}})
    assert "dataset.per_class" in str(e.value) and "\n" not in str(e.value)


def test_composed_defaults_and_variants():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        d = config_lib.from_hydra(compose(config_name="config")).dataset
        v = config_lib.from_hydra(compose(config_name="config", overrides=[
            "dataset.val_radii=between", "dataset.val_noise=0.1"])).dataset
    assert (d.val_radii, d.val_noise) == ("uniform", None)
    assert (v.val_radii, v.val_noise) == ("between", 0.1)
