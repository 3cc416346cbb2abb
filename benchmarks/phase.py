"""Phase-diagram grid throughput (run-steps/s) vs the notebook loop, spiral widths 100 and 1000.

    .venv/bin/python benchmarks/phase.py [--repeats 2] [--no-write]

For each width, alternately `--repeats` times: the reference loop of benchmarks/engine.py (one
run, one jitted step per Python iteration, four values read back per step) and `dlf.phase` on a
reduced grid (A in {1, 10} x T in {100, 300} x 4 seeds = 16 runs, traced A/T, compiled once),
the latter in subprocesses with the CPU exposed as 1 and as all-cores XLA devices. Medians and
ratios go to BENCHMARKS.md. On a GPU the same script measures the GPU (one device).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = dict(A=[1.0, 10.0], T=[100, 300])
SEEDS = 4


def worker(width: int, steps: int, step: str) -> None:
    """One dlf.phase run of the reduced grid in this process (train.step=`step`); prints its summary as JSON."""
    from dlf import config as config_lib
    from dlf.drive.grid import run_phase

    cfg = config_lib.from_dict({"model": {"width": width}, "seeds": SEEDS, "grid": GRID,
                                # the protocol's switch-off; a run shorter than a period (a toy size) oscillates
                                "schedule": {"off_last_periods": 1 if steps > max(GRID["T"]) else 0},
                                "train": {"steps": steps, "log_every": min(500, steps), "step": step}})
    with tempfile.TemporaryDirectory() as d:
        s = run_phase(cfg, Path(d))
    print(json.dumps({k: s[k] for k in ("run_steps_per_s", "compile_s", "devices", "runs", "chunk_runs")}))


FIG3_CMD = ["experiment=fig3_spiral_narrow", "grid.A=1,5,10,20,30,50,70", "grid.T=50,100,200,300,500,1000",
            "seeds=50", "compile_cache=null"]


def fig3(no_write: bool) -> None:
    """The full Fig. 3 width-100 grid (42 points x 50 seeds x 35 000 steps), as a user runs it:
    `python -m dlf.phase ...` in a subprocess (the CLI's own device set-up), timed end to end."""
    import time

    sys.path.insert(0, str(HERE))
    from _md import ROOT, machine, write_section

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":!BENCHMARKS.md"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
    # a fresh grid (not a resumed one), and never another invocation's directory
    root = Path(os.environ.get("DLF_OUTPUT_DIR", ROOT / "outputs"))  # paths.output_dir, as conf/paths
    out = root / "bench" / "fig3-grid" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    cmd = [sys.executable, "-m", "dlf.phase", *FIG3_CMD, f"hydra.run.dir={out}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    us = 1e6 / s["run_steps_per_s"]
    line = (f"| {s['points']} points x {len(s['seeds'])} seeds = {s['runs']} runs x {s['steps']} steps | "
            f"{s['devices']} {s['backend']} | {wall / 60:.1f} | {s['wall_s']:.0f} | {s['compile_s']:.1f} | "
            f"{s['train_s']:.0f} | {s['run_steps_per_s']:,.0f} | {us:.2f} |")
    b = s.get("best") or {}
    best = (f"A={b['A']:g}, T={b['T']}: train {b['train_acc_mean']:.3f} ± {b['train_acc_std']:.3f}, "
            f"val {b['val_acc_mean']:.3f} ± {b['val_acc_std']:.3f} (n={b['n']})") if b else "none"
    print(line)
    text = "\n".join([
        "## Full Fig. 3 width-100 grid in one program",
        "",
        f"Command: `.venv/bin/python benchmarks/phase.py --fig3`, which runs and times "
        f"`python -m dlf.phase {' '.join(FIG3_CMD)}` (outputs in `{out.relative_to(ROOT)}/`) — "
        f"machine: {machine()}; commit {commit}{' (with uncommitted changes)' if dirty else ''}; "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| grid | devices | command wall (min) | dlf.phase wall (s) | compile (s) | train (s) | run-steps/s | "
        "us/run-step (train) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        line,
        "",
        "- Step: " + ("fused (dlf.core.fused, `train.step=auto` on CPU)" if s.get("step") == "fused"
                      else s.get("step", "?"))
        + f"; {s['chunks']} chunk(s) of {s['chunk_runs']} runs; metrics every 500 steps.",
        "- *Command wall*: the whole process (start-up, data, compilation, training, phase.csv and phase.png); "
        "*train*: the compiled training calls alone.",
        f"- Result (`phase.csv` there): {s['diverged_runs']} diverged runs; best validation "
        f"accuracy at {best}.",
    ])
    if not no_write:
        print(f"wrote {write_section('fig3-grid', text)}")


def grid_rate(width: int, steps: int, devices: int | None, step: str = "auto") -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out = subprocess.run([sys.executable, __file__, "--worker", str(width), str(steps), step], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--fig3", action="store_true",
                    help="instead: time the full Fig. 3 width-100 grid (42 points x 50 seeds x 35 000 steps)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(int(args.worker[0]), int(args.worker[1]), args.worker[2])
    if args.fig3:
        return fig3(args.no_write)

    import jax

    sys.path.insert(0, str(HERE))
    from _md import machine, write_section
    from engine import ref_for

    from dlf import config as config_lib

    cores = len(os.sched_getaffinity(0))
    cpu = jax.default_backend() == "cpu"
    cases = [(100, 2000, 1000), (1000, 400, 200)]  # width, grid steps, reference steps
    table, lines, rates = [], [], {}
    for width, steps, ref_steps in cases:
        cfg = config_lib.from_dict({"model": {"width": width}, "seeds": 1,
                                    "schedule": {"A": 10, "T": 100}})
        ref, one, many, gen = [], [], [], []
        for _ in range(args.repeats):
            ref.append(1 / ref_for(cfg, ref_steps))
            if cpu:
                one.append(grid_rate(width, steps, 1)["run_steps_per_s"])
            many.append(grid_rate(width, steps, cores if cpu else None)["run_steps_per_s"])
            gen.append(grid_rate(width, steps, cores if cpu else None, "generic")["run_steps_per_s"])
        r, m, g = statistics.median(ref), statistics.median(many), statistics.median(gen)
        o = statistics.median(one) if one else None
        rates[width] = m
        row = (f"| {width} | {r:,.0f} | " + (f"{o:,.0f} (**{o / r:.1f}x**) | " if o else "n/a | ")
               + f"{m:,.0f} (**{m / r:.1f}x**) | {1e6 / m:,.1f} | {g:,.0f} ({1e6 / g:,.1f} us) | **{m / g:.1f}x** |")
        table.append(row)
        lines.append(f"width {width:5d}: reference {r:9.0f} | grid 1 device {o or float('nan'):9.0f} | "
                     f"grid {cores if cpu else 1} device(s) {m:9.0f} run-steps/s | {1e6 / m:.1f} us/run-step | "
                     f"generic step {g:9.0f} run-steps/s | default vs generic x{m / g:.1f}")
        print(lines[-1], flush=True)
    n_dev = f"{cores} CPU devices" if cpu else "1 device"
    text = "\n".join([
        "## Phase-diagram grid throughput (spiral, full-batch GD, float32)",
        "",
        f"Command: `.venv/bin/python benchmarks/phase.py` — machine: {machine()}. Median of "
        f"{args.repeats} alternating repeats. Grid: A in {{1, 10}} x T in {{100, 300}} x {SEEDS} seeds "
        f"= 16 runs, traced A/T, one compiled program (`dlf.phase`, compile excluded); "
        f"{cases[0][1]} steps (width 100), {cases[1][1]} steps (width 1000).",
        "",
        f"| width | reference loop (run-steps/s) | grid, 1 device (run-steps/s, vs ref) | grid, {n_dev} "
        "(run-steps/s, vs ref) | grid us/run-step | same, `train.step=generic` (run-steps/s) | default vs generic |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *table,
        "",
        "- *Reference loop*: the notebook's way (benchmarks/engine.py), one run at a time; a grid of "
        "N runs costs N times one run.",
        "- *Grid*: `dlf.phase` with its defaults: runs sharded over XLA devices "
        "(`--xla_force_host_platform_device_count` = cores, set by the CLI); on CPU the fused step "
        "(`train.step=auto`, 32 runs vectorised at a time; BENCHMARKS.md \"Fused step\"). Within one device "
        "XLA splits each fused loop over the cores, so with few runs (8 per device here) one device can "
        "beat one per core.",
        f"- *Same, `train.step=generic`*: the generic engine (`value_and_grad` of the Flax MLP, runs looped "
        f"with `lax.map`) on the same grid and {n_dev}, in the same alternation: the engine `dlf.phase` "
        "used on CPU before the fused step.",
        "- Full Fig. 3 width-100 grid (42 points x 50 seeds x 35 000 steps = 73.5 M run-steps) at the "
        f"measured width-100 rate: ~{73.5e6 / rates[100] / 60:.0f} min on this machine (extrapolated; "
        "measured end to end: \"Full Fig. 3 width-100 grid in one program\", `benchmarks/phase.py --fig3`).",
    ])
    if not args.no_write:
        print(f"wrote {write_section('phase', text)}")


if __name__ == "__main__":
    main()
