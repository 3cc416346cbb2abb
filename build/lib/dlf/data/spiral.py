"""The C-arm spiral of SPEC 2: the authors' training set and a held-out validation set."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    x: np.ndarray  # (N, 2) float64
    y: np.ndarray  # (N,) int32


def arm_points(r, j, classes, turns, noise):
    """Points of arm j at radii r: theta = 2 pi j / C + 2 pi turns r + noise."""
    theta = 2 * np.pi * j / classes + 2 * np.pi * turns * r + noise
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def spiral(classes=3, per_class=100, noise=0.2, turns=2.0, train_seed=0, val_seed=1):
    """(train, val). Train: r = linspace(0, 1, n) per arm, noise*randn from RandomState(train_seed)
    drawn arm by arm (the authors' set). Val: per arm r ~ U(0, 1) sorted then noise*randn, both from
    RandomState(val_seed) [decision, SPEC 2]. Labels: arm index; points ordered arm by arm."""
    def make(radii, rng):
        xs, ys = [], []
        for j in range(classes):
            r = radii(rng)
            xs.append(arm_points(r, j, classes, turns, noise * rng.randn(per_class)))
            ys.append(np.full(per_class, j, np.int32))
        return Split(np.concatenate(xs), np.concatenate(ys))

    train = make(lambda rng: np.linspace(0.0, 1.0, per_class), np.random.RandomState(train_seed))
    val = make(lambda rng: np.sort(rng.uniform(0.0, 1.0, per_class)), np.random.RandomState(val_seed))
    return train, val
