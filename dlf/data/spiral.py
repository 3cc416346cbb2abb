"""The C-arm spiral of SPEC 2: the authors' training set and a held-out validation set."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

VAL_RADII = ("uniform", "between")


class Split(NamedTuple):
    x: np.ndarray  # (N, 2) float64
    y: np.ndarray  # (N,) int32


def arm_points(r, j, classes, turns, noise):
    """Points of arm j at radii r: theta = 2 pi j / C + 2 pi turns r + noise."""
    theta = 2 * np.pi * j / classes + 2 * np.pi * turns * r + noise
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def spiral(classes=3, per_class=100, noise=0.2, turns=2.0, train_seed=0, val_seed=1, val_radii="uniform",
           val_noise=None):
    """(train, val). Train: r = linspace(0, 1, n) per arm, noise*randn from RandomState(train_seed)
    drawn arm by arm (the authors' set). Val, drawn arm by arm from RandomState(val_seed): radii by
    `val_radii` (`uniform`: r ~ U(0, 1) sorted [decision, SPEC 2]; `between`: the n-1 midpoints of
    consecutive training radii, nothing drawn), then val_noise*randn (val_noise None: noise).
    Labels: arm index; points ordered arm by arm."""
    if val_radii not in VAL_RADII:
        raise ValueError(f"val_radii={val_radii!r}; choose one of {VAL_RADII}")

    def make(radii, rng, std):
        xs, ys = [], []
        for j in range(classes):
            r = radii(rng)
            xs.append(arm_points(r, j, classes, turns, std * rng.randn(r.size)))
            ys.append(np.full(r.size, j, np.int32))
        return Split(np.concatenate(xs), np.concatenate(ys))

    grid = np.linspace(0.0, 1.0, per_class)
    train = make(lambda rng: grid, np.random.RandomState(train_seed), noise)
    if val_radii == "uniform":
        radii = lambda rng: np.sort(rng.uniform(0.0, 1.0, per_class))  # noqa: E731
    else:
        radii = lambda rng: (grid[:-1] + grid[1:]) / 2  # noqa: E731
    val = make(radii, np.random.RandomState(val_seed), noise if val_noise is None else val_noise)
    return train, val
