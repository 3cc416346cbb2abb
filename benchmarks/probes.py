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
from dlf.drive.build import build
from dlf.probes import hessian_top, ntk_matrix, ntk_top
from dlf.probes.lanczos import lanczos
from dlf.probes.ntk import balanced_subset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _md import machine, write_section  # noqa: E402


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
    ap.add_argument("--fig4-steps", type=int, default=2000, help="steps of the Fig. 4 overhead comparison")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    cfg = config_lib.from_dict({"model": {"width": 100}, "schedule": {"A": 10, "T": 100}, "seeds": 1})
    b = build(cfg)
    prog, data, hp = b.program, b.data, b.hp
    state = jax.tree.map(lambda x: x[0], b.states)
    params = state.params
    g = prog.gamma(jnp.asarray(150), hp, data.x_train.dtype)
    apply = lambda p, x: prog.apply(p, {}, x, False)[0]  # noqa: E731 - the MLP as (params, x) -> logits
    F = lambda p: prog.loss(apply(p, data.x_train), data.y_train, g)[0]  # noqa: E731
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
         lambda k: ntk_top(apply, params, data.x_train, k, args.ntk_order)[0]),
        (f"NTK lambda_max matrix-free, order {args.ntk_order}, 50 points (dim 150)",
         lambda k: ntk_top(apply, params, sub, k, args.ntk_order)[0]),
        ("NTK lambda_max explicit (J J^T + eigvalsh), 50 points (dim 150)",
         lambda k: jnp.linalg.eigvalsh(ntk_matrix(apply, params, sub))[-1]),
    ]
    print(f"machine: {machine()}")
    print(f"training step (engine, float32, width 100, 300 points): {1e6 * step_s:.1f} us")
    print("| probe | us per call | training steps per call |\n|---|---:|---:|")
    rows = []
    for label, value in cases:
        s = per_call(probe(value), zero, args.calls, args.repeats)
        rows.append((label, s, s / step_s))
        print(f"| {label} | {1e6 * s:,.0f} | {s / step_s:.1f} |", flush=True)
    fig4 = fig4_overhead(args.fig4_steps)
    print(f"Fig. 4 run (float64, probes every 25 steps): {fig4[25]:.0f} steps/s with probes, {fig4[0]:.0f} without, "
          f"x{fig4[0] / fig4[25]:.1f}")
    text = "\n".join([
        "## Probe cost (spiral, width 100, 300 points)",
        "",
        f"Command: `.venv/bin/python benchmarks/probes.py` — machine: {machine()}. Each probe runs "
        f"{args.calls} times in one lax.scan with a fresh key per call; the training step is the engine's "
        f"`train_step` ({1e6 * step_s:.1f} us, float32) scanned {args.steps} times; median of {args.repeats}.",
        "",
        "| probe | us per call | training steps per call |",
        "|---|---:|---:|",
        *[f"| {label} | {1e6 * s:,.0f} | {r:.1f} |" for label, s, r in rows],
        "",
        f"Overhead in the Fig. 4 run (`experiment=fig4_dynamics`: float64, A=70, T=5000, Hessian order 10, "
        "matrix-free NTK (order 20) on the whole training set (300 points x 3 outputs), probes every 25 steps, "
        f"{args.fig4_steps} steps): **{fig4[25]:.0f} steps/s with "
        f"probes vs {fig4[0]:.0f} without (x{fig4[0] / fig4[25]:.1f})**. The probes run inside the chunks' scans "
        "(a branch taken every 25 steps): chunks end at log points only, so the overhead is the two probes.",
    ])
    if not args.no_write:
        print(f"wrote {write_section('probes', text)}")
    return step_s, rows


def fig4_overhead(steps: int) -> dict[int, float]:
    """Training steps/s of the Fig. 4 configuration with probes every 25 steps and without."""
    from dlf.core.engine import Compiled

    out = {}
    for every in (0, 25):
        cfg = config_lib.from_dict({"seeds": 1, "precision": "float64",
                                    "schedule": {"A": 70, "T": 5000, "off_last_periods": 0},
                                    "train": {"steps": steps, "log_every": 1000},
                                    "probes": {"hessian": {"every": every, "order": 10}, "ntk": {"every": every}}})
        with jax.enable_x64(True):
            b = build(cfg)
            c = Compiled(b.program, b.states, b.hp, b.data, steps, 1000)
            _, train_s = c(b.states, b.hp, b.data, lambda u, m: None)
        out[every] = steps / train_s
    return out


if __name__ == "__main__":
    main()
