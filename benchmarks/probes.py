"""Cost of one probe call in units of one training step (spiral, width 100, full batch, float32).

    .venv/bin/python benchmarks/probes.py [--order 20] [--ntk-order 20] [--steps 5000] [--calls 50]
        [--repeats 3]

The training step is the engine's (`Program.train_step`: value_and_grad of F + optax update +
divergence guard), run `--steps` times in one lax.scan; each probe runs `--calls` times in one
lax.scan with a fresh key per call (as it would inside the engine). Compile time excluded;
median of `--repeats`. Prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dlf import config as config_lib
from dlf.probes import hessian_top, ntk_top
from dlf.probes.lanczos import lanczos
from dlf.probes.ntk import balanced_subset
from dlf.run import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _md import machine  # noqa: E402


def per_call(fn, arg, n: int, repeats: int) -> float:
    """Median seconds per iteration of `fn(carry, i) -> carry` scanned n times (compile excluded)."""
    run = jax.jit(lambda a: jax.lax.scan(lambda c, i: (fn(c, i), None), a, jnp.arange(n))[0])
    jax.block_until_ready(run(arg))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(arg))
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=20, help="Hessian Lanczos order")
    ap.add_argument("--ntk-order", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    cfg = config_lib.from_dict({"model": {"width": 100}, "schedule": {"A": 10, "T": 100}, "seeds": 1})
    b = build(cfg)
    prog, data, hp = b.program, b.data, b.hp
    state = jax.tree.map(lambda x: x[0], b.states)
    params = state.params
    g = prog.gamma(jnp.asarray(150), hp, data.x_train.dtype)
    F = lambda p: prog.loss(prog.apply(p, data.x_train), data.y_train, g)[0]  # noqa: E731
    key = jax.random.key(0)
    sub = data.x_train[balanced_subset(np.asarray(data.y_train), 50, 3)]

    def probe(value):  # carry a scalar so that the scan cannot drop the probe
        return lambda c, i: c + value(jax.random.fold_in(key, i))

    def hessian_relinearised(k):  # the HVP as jvp of grad inside every Lanczos step
        flat, unravel = ravel_pytree(params)
        mv = lambda u: ravel_pytree(jax.jvp(jax.grad(F), (params,), (unravel(u),))[1])[0]  # noqa: E731
        return lanczos(mv, flat.size, args.order, k, flat.dtype)[0]

    step_s = per_call(lambda s, i: prog.train_step(s, hp, data), state, args.steps, args.repeats)
    zero = jnp.zeros((), data.x_train.dtype)
    cases = [
        (f"Hessian lambda_max, order {args.order}, 300 points (linearised HVP)",
         lambda k: hessian_top(F, params, k, args.order)[0]),
        (f"Hessian lambda_max, order {args.order}, 300 points (jvp of grad per step)", hessian_relinearised),
        (f"NTK lambda_max matrix-free, order {args.ntk_order}, 300 points (dim 900)",
         lambda k: ntk_top(prog.apply, params, data.x_train, k, args.ntk_order)[0]),
        (f"NTK lambda_max matrix-free, order {args.ntk_order}, 50 points (dim 150)",
         lambda k: ntk_top(prog.apply, params, sub, k, args.ntk_order)[0]),
    ]
    print(f"machine: {machine()}")
    print(f"training step (engine, float32, width 100, 300 points): {1e6 * step_s:.1f} us")
    print("| probe | us per call | training steps per call |\n|---|---:|---:|")
    rows = []
    for label, value in cases:
        s = per_call(probe(value), zero, args.calls, args.repeats)
        rows.append((label, s, s / step_s))
        print(f"| {label} | {1e6 * s:,.0f} | {s / step_s:.1f} |", flush=True)
    return step_s, rows


if __name__ == "__main__":
    main()
