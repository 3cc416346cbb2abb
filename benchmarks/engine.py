"""Engine vs the authors' notebook loop on the spiral (width 100, 3 x 100 points), side by side.

    .venv/bin/python benchmarks/engine.py [--ref-steps 2000] [--engine-steps 20000] [--repeats 3]

Prints a table and writes it into BENCHMARKS.md (between this script's markers). Each row runs
the reference loop and the engine alternately `--repeats` times in one process and reports the
median of each, so machine noise hits both alike; the ratio is the figure to read.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dlf import config as config_lib
from dlf.core import fused
from dlf.core.engine import fit
from dlf.drive.build import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _md import cpu_name, write_section  # noqa: E402


def reference_loop(b, lr: float, steps: int) -> float:
    """The notebook's way: a Python for loop dispatching one jitted GD step, reading loss,
    accuracy, weighted loss and Gamma back to the host every step. Returns seconds per step."""
    prog, data, hp = b.program, b.data, b.hp
    params = jax.tree.map(lambda x: x[0], b.states.params)

    @jax.jit
    def step(params, t):
        g = prog.gamma(t, hp, data.x_train.dtype)

        def objective(p):
            logits = prog.apply(p, {}, data.x_train, True)[0]
            F, ce = prog.loss(logits, data.y_train, g)
            return F, (ce, jnp.mean(jnp.argmax(logits, -1) == data.y_train))

        (F, (ce, acc)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return jax.tree.map(lambda p, d: p - lr * d, params, grads), ce, acc, F, g

    history = []
    params = step(params, 0)[0]  # compile
    t0 = time.perf_counter()
    for t in range(steps):
        params, ce, acc, F, g = step(params, t)
        history.append((float(ce), float(acc), float(F), np.asarray(g)))  # host sync every step
    return (time.perf_counter() - t0) / steps


def engine(cfg, steps: int, vmap_size) -> float:
    """Seconds per (program) step of the compiled engine, compile excluded."""
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg)
        _, timing = fit(b.program, b.states, b.hp, b.data, steps, cfg.train.log_every,
                        lambda s, m: None, vmap_size=vmap_size)
    return timing.train_s / steps


def ref_for(cfg, steps):
    with jax.enable_x64(cfg.precision == "float64"):
        return reference_loop(build(config_lib.replace(cfg, seeds=1)), cfg.optimizer.lr, steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-steps", type=int, default=2000)
    ap.add_argument("--engine-steps", type=int, default=20000)
    ap.add_argument("--vmap-steps", type=int, default=2000, help="steps for the 50-seed rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    base = config_lib.from_dict({"model": {"width": 100}, "schedule": {"A": 10, "T": 100},
                                 "train": {"log_every": 500}, "seeds": 1})
    cases = [  # label, cfg, engine steps, vmap_size
        ("1 seed, float32", base, args.engine_steps, None),
        ("1 seed, float64", config_lib.replace(base, precision="float64"), args.engine_steps, None),
        ("50 seeds vmapped, float32", config_lib.replace(base, seeds=50), args.vmap_steps, None),
        ("50 seeds looped in one program (vmap_size=1), float32", config_lib.replace(base, seeds=50),
         args.vmap_steps, 1),
    ]
    rows = []
    for label, cfg, steps, vmap_size in cases:
        ref_s, eng_s = [], []
        for _ in range(args.repeats):
            ref_s.append(ref_for(cfg, args.ref_steps))
            eng_s.append(engine(cfg, steps, vmap_size))
        ref, eng = statistics.median(ref_s), statistics.median(eng_s)
        n = cfg.seeds
        rows.append((label, 1 / ref, n / eng, 1e6 * ref, 1e6 * eng / n, ref * n / eng))
        print(f"{label:55s} ref {1/ref:8.0f} run-steps/s | engine {n/eng:8.0f} run-steps/s | "
              f"{1e6*eng/n:7.1f} us/run-step | x{ref*n/eng:.1f}", flush=True)
    table = [
        "| case | reference loop (run-steps/s) | engine (run-steps/s) | reference us/run-step "
        "| engine us/run-step | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ] + [f"| {r[0]} | {r[1]:,.0f} | {r[2]:,.0f} | {r[3]:,.1f} | {r[4]:,.1f} | **{r[5]:.1f}x** |" for r in rows]
    one = rows[0][4]
    text = "\n".join([
        "## Engine vs the notebook loop (spiral, width 100, 3 x 100 points, full-batch GD)",
        "",
        f"Command: `.venv/bin/python benchmarks/engine.py` (`make bench`) — machine: {cpu_name()}, "
        f"{jax.device_count()} x {jax.default_backend()} device, {len(__import__('os').sched_getaffinity(0))} cores, "
        f"jax {jax.__version__}, Python {platform.python_version()}. Median of {args.repeats} alternating "
        f"repeats; reference {args.ref_steps} steps, engine {args.engine_steps} steps (1 seed) / "
        f"{args.vmap_steps} steps (50 seeds), compile time excluded from both.",
        "",
        *table,
        "",
        "- *Reference loop*: a Python `for` loop dispatching one jitted GD step and reading loss, "
        "accuracy, weighted loss and Gamma back to the host every step (the authors' notebook). For 50 "
        "seeds it is 50 such loops, so its per-run-step rate is that of one seed. It is a generous "
        "rendering of the notebook: one dispatch computes all four values. The authors' notebook itself "
        f"was measured at ~2.7 ms per step on this kind of CPU (measured outside the project), "
        f"~{2700 / one:.0f}x the engine.",
        "- *Engine*: `dlf.core.engine.fit`, steps in `lax.scan` chunks of 500, metrics read one chunk behind.",
        f"- Arithmetic floor: one width-100 step on 300 points is ~1 MFLOP (forward + backward), ~20 us "
        f"at a 2-core CPU's ~50 GFLOP/s; the engine's one-seed float32 step is {one:.0f} us, "
        f"{one / 20:.1f}x that floor. The gap is per-kernel overhead of XLA:CPU on ~25 small kernels "
        "per step (300 x 100 arrays, matmuls with K=2 or N=3), not arithmetic; variants measured no "
        "faster: one-hot instead of gathered cross-entropy, the first layer as broadcast multiply-adds "
        "(7x slower), no per-step divergence guard (-5%), XLA flags for XNNPACK, oneDNN, "
        "single-threaded Eigen.",
        "- On CPU, vmapping MLP runs is slower per run-step than looping over them inside the same "
        "program (XLA:CPU's batched matmuls), so `train.vmap_size` defaults to 1 on CPU for the generic "
        "step (this table) and to all runs on accelerators; the fused MLP step, the CPU default where it "
        f"applies, vectorises {fused.VMAP_SIZE} runs (BENCHMARKS section fused).",
    ])
    if not args.no_write:
        print(f"wrote {write_section('engine', text)}")
    return rows


if __name__ == "__main__":
    main()
