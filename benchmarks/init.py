"""Start-up cost of the stacked initial states: one compiled init over the seeds, as vmap (before)
and as lax.map (dlf.core.seeds.init_states now), side by side in one process.

    .venv/bin/python benchmarks/init.py [--repeats 3] [--seeds 4] [--no-write]

Each case builds the model and optimiser of a configuration and times compiling and running the
init program of `--seeds` seeds both ways, alternately, `--repeats` times; a fresh model width per
repeat, so that neither way reuses a compiled program. Both ways give the same values bit for bit
(checked here; tests/test_math_model.py checks init_states against each seed's init).
Prints a table and writes it to BENCHMARKS.md (section `init`).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _md import commit, machine, write_section  # noqa: E402

from dlf import config as config_lib  # noqa: E402
from dlf.core import optim  # noqa: E402
from dlf.core.engine import TrainState  # noqa: E402
from dlf.core.seeds import init_states, streams  # noqa: E402
from dlf.models import build as build_model  # noqa: E402

CASES = {  # label: config overrides (spiral MLP; the init does not see the data beyond one example)
    "MLP width 100, lecun, gd, float32": dict(model={"width": 100}),
    "MLP width 100, glorot, adam, float32": dict(model={"width": 100, "init": "glorot"}, optimizer={"name": "adam"}),
    "MLP width 1000, lecun, momentum, float64": dict(model={"width": 1000}, optimizer={"name": "momentum"},
                                                     precision="float64"),
}


def vmapped(model, tx, seeds, x):
    """init_states before 2026-12: jax.vmap over the seeds (as dlf.drive.build calls it)."""
    def one(seed):
        keys = streams(seed)
        params, model_state = model.init(keys["init"], x)
        return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32), -jnp.ones((), jnp.int32), model_state,
                          keys["data"], keys["probe"])
    return jax.jit(jax.vmap(one))(jnp.asarray(seeds, jnp.uint32))


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t0, out


def leaves(tree):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree.leaves(tree)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.seeds < 1:
        ap.error(f"--repeats={args.repeats} --seeds={args.seeds} is not allowed; expected both >= 1")
    seeds = list(range(args.seeds))
    rows = []
    for label, over in CASES.items():
        times = {"vmap": [], "lax.map": []}
        for r in range(args.repeats):
            over_r = {**over, "model": {**over["model"], "width": over["model"]["width"] + r}}  # a new program
            cfg = config_lib.from_dict({**over_r, "compile_cache": None})
            with jax.enable_x64(cfg.precision == "float64"):
                model = build_model(cfg.model, cfg.dataset.classes, cfg.precision)
                tx = optim.build(cfg.optimizer)
                x = jnp.ones((1, 2), jnp.float64 if cfg.precision == "float64" else jnp.float32)
                ways = [("vmap", lambda: vmapped(model, tx, seeds, x)),
                        ("lax.map", lambda: init_states(model, tx, seeds, x, lambda m, k, x: m.init(k, x)))]
                outs = {}
                for name, fn in (ways if r % 2 == 0 else ways[::-1]):  # alternate which goes first
                    t, outs[name] = timed(fn)
                    times[name].append(t)
                same = all(np.array_equal(a, b) for a, b in zip(leaves(outs["vmap"]), leaves(outs["lax.map"])))
                if not same:
                    raise SystemExit(f"{label}: the two inits differ; the comparison is void")
        v, m = statistics.median(times["vmap"]), statistics.median(times["lax.map"])
        rows.append((label, v, m))
        print(f"{label:42s} | vmap {v:5.2f} s | lax.map {m:5.2f} s | x{v / m:.2f}", flush=True)
    text = "\n".join([
        "## Initial states: compile and run the init of a new program (vmap vs lax.map over the seeds)",
        "",
        f"Command: `.venv/bin/python benchmarks/init.py --repeats {args.repeats} --seeds {args.seeds}` at commit "
        f"{commit()} — machine: {machine()}. One process; each repeat a new width, so each time is a first "
        "compilation plus one run; medians; both ways give the same values bit for bit (checked).",
        "",
        "| configuration | vmap (s) | lax.map (s) | vmap / lax.map |",
        "|---|---:|---:|---:|",
        *[f"| {label} | {v:.2f} | {m:.2f} | x{v / m:.2f} |" for label, v, m in rows],
        "",
        "Every run and grid compiles its init once: this is start-up time, paid per program, not per step.",
    ])
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('init', text)}")


if __name__ == "__main__":
    main()
