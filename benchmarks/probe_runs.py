"""Probe runs at grid speed (issue 22), side by side in one invocation, as a user runs them.

    .venv/bin/python benchmarks/probe_runs.py [--before 6a8f557] [--fig4-steps 70000]
        [--grid-steps 2000] [--fig5-scale 0.1] [--fig5-widths 100] [--fig5-lrs 0.5,1,2,4,8] [--no-write]

1. Fig. 4, the whole process: `python -m dlf.train experiment=fig4_dynamics` (70 000 float64
   steps, Hessian and NTK probes every 25 steps) at `--before` (a commit whose probe points end the
   compiled chunks; run from a temporary git worktree of it) and at this checkout, one after the
   other, in fresh processes, wall time end to end.
2. Probe overhead per run-step in a grid: `dlf.phase` on a float64 grid (A in {1, 10} x T in
   {100, 300} x 2 seeds, width 100) with the Hessian probe every 25 steps, against the same grid
   without probes on the step the probed grid uses (generic) and on the default (fused on CPU).
3. The Fig. 5 protocol (5 learning rates x 4 seeds x `--fig5-widths`, float64, Hessian and NTK
   probes every 25 steps, T = 5000/eta, 70 000/eta steps) as one program (`dlf.phase grid.lr=...`,
   one command per width) and as jobs (`dlf.train -m optimizer.lr=... model.width=...`), both scaled
   by `--fig5-scale` (steps and T; 1 = the paper's protocol). The full-size time is extrapolated
   from the scaled one (training time grows with the steps; start-up and compilation do not) and
   labelled so.
Prints a table and writes it to BENCHMARKS.md (section `probe-runs`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _md import ROOT, machine, write_section  # noqa: E402

LRS = (0.5, 1, 2, 4, 8)


def _env(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_") and k != "XLA_FLAGS"}
    return env | {"PYTHONPATH": str(tree), "DLF_COMPILE_CACHE": ""}


def timed(argv: list[str], tree: Path, cwd: Path) -> float:
    """Wall seconds of `python -m ...argv` run from `tree` (its dlf and conf/); raises on failure."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=_env(tree), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    return wall


def summary(path: Path) -> dict:
    return json.loads(path.read_text())


def fig4(before: str, steps: int, work: Path) -> dict:
    """Fig. 4 end to end at `before` and here."""
    old = work / "before"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), before], cwd=ROOT, check=True)
    try:
        out = {}
        for label, tree in (("before", old), ("after", ROOT)):
            run_dir = work / f"fig4_{label}"
            short = [] if steps >= 70_000 else ["schedule.off_last_periods=0"]  # T=5000: the switch-off needs > T steps
            wall = timed(["dlf.train", "experiment=fig4_dynamics", f"train.steps={steps}", "compile_cache=null", *short,
                          f"hydra.run.dir={run_dir}"], tree, work)
            s = summary(run_dir / "summary.json")
            out[label] = {"wall_s": wall, "compile_s": s["compile_s"], "train_s": s["train_s"],
                          "steps_per_s": steps / s["train_s"]}
            print(f"fig4 {label:6s} | wall {wall:6.1f} s | compile {s['compile_s']:5.1f} s | "
                  f"train {s['train_s']:6.1f} s | {steps / s['train_s']:,.0f} steps/s", flush=True)
        return out
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)


def grid_overhead(steps: int, work: Path) -> dict:
    """run-steps/s of the float64 grid with the Hessian probe every 25 steps and without."""
    base = ["dlf.phase", "grid.A=1,10", "grid.T=100,300", "seeds=2", "precision=float64", "model.width=100",
            f"train.steps={steps}", f"train.log_every={steps}", "schedule.off_last_periods=0", "compile_cache=null"]
    cases = {"hessian every 25 (generic step)": ["probes.hessian.every=25", "probes.hessian.order=10"],
             "no probes, generic step": ["train.step=generic"],
             "no probes, default step": []}
    out = {}
    for label, extra in cases.items():
        run_dir = work / ("grid_" + str(len(out)))
        timed([*base, *extra, f"hydra.run.dir={run_dir}"], ROOT, work)
        s = summary(run_dir / "summary.json")
        out[label] = {"run_steps_per_s": s["run_steps_per_s"], "us_per_run_step": 1e6 / s["run_steps_per_s"],
                      "compile_s": s["compile_s"], "runs": s["runs"]}
        print(f"grid {label:32s} | {s['run_steps_per_s']:9,.0f} run-steps/s | "
              f"{1e6 / s['run_steps_per_s']:7.1f} us/run-step | compile {s['compile_s']:.1f} s", flush=True)
    return out


def fig5(scale: float, widths: list[int], work: Path, lr_list: tuple[float, ...] = LRS) -> dict:
    """The Fig. 5 protocol as one program per width and as a sweep of jobs, scaled by `scale`: wall
    time, and the time extrapolated to scale 1 (each summary.json's training time / scale, the rest
    of the wall time as it is)."""
    scaled = [f"train.steps='${{div:{round(70000 * scale)},${{optimizer.lr}}}}'",
              f"schedule.T='${{div:{round(5000 * scale)},${{optimizer.lr}}}}'", "compile_cache=null"]
    lrs = ",".join(f"{x:g}" for x in lr_list)
    out = {"scale": scale, "widths": widths}
    wall = train = 0.0
    for w in widths:
        run_dir = work / f"fig5_program_w{w}"
        wall += timed(["dlf.phase", "experiment=fig5_threshold", f"grid.lr={lrs}", "seeds=4", f"model.width={w}",
                       *scaled, f"hydra.run.dir={run_dir}"], ROOT, work)
        train += summary(run_dir / "summary.json")["train_s"]
        print(f"fig5 width {w} one program: {wall:.1f} s so far", flush=True)
    out["program"] = {"wall_s": wall, "train_s": train, "full_s": wall - train + train / scale}
    sweep = work / "fig5_jobs"
    wall = timed(["dlf.train", "-m", "experiment=fig5_threshold", f"optimizer.lr={lrs}",
                  "model.width=" + ",".join(map(str, widths)), *scaled, f"hydra.sweep.dir={sweep}"], ROOT, work)
    train = sum(summary(f)["train_s"] for f in sweep.glob("*/summary.json"))
    out["jobs"] = {"wall_s": wall, "train_s": train, "full_s": wall - train + train / scale}
    print(f"fig5 as jobs: {wall:.1f} s", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="6a8f557", help="the commit to compare Fig. 4 against")
    ap.add_argument("--fig4-steps", type=int, default=70000)
    ap.add_argument("--grid-steps", type=int, default=2000)
    ap.add_argument("--fig5-scale", type=float, default=0.1, help="steps and T of the Fig. 5 protocol x this")
    ap.add_argument("--fig5-widths", default="100", help="comma list of widths (the paper's: 100,1000)")
    ap.add_argument("--fig5-lrs", default=",".join(f"{x:g}" for x in LRS),
                    help="comma list of learning rates (the paper's: 0.5,1,2,4,8; fewer for a smoke run)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.fig5_scale <= 0 or args.fig5_scale > 1:
        ap.error(f"--fig5-scale={args.fig5_scale} is not allowed; expected 0 < scale <= 1")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    widths = [int(w) for w in args.fig5_widths.split(",")]
    try:
        lr_list = tuple(float(x) for x in args.fig5_lrs.split(","))
    except ValueError:
        ap.error(f"--fig5-lrs={args.fig5_lrs} is not allowed; expected a comma list of positive numbers")
    if not all(x > 0 for x in lr_list):
        ap.error(f"--fig5-lrs={args.fig5_lrs} is not allowed; expected a comma list of positive numbers")
    lrs_arg = "" if lr_list == LRS else f" --fig5-lrs {args.fig5_lrs}"
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        f4 = fig4(args.before, args.fig4_steps, work)
        g = grid_overhead(args.grid_steps, work)
        f5 = fig5(args.fig5_scale, widths, work, lr_list)
    probed, plain = g["hessian every 25 (generic step)"], g["no probes, generic step"]
    per_probe = (probed["us_per_run_step"] - plain["us_per_run_step"]) * 25
    print(f"grid probe overhead: {probed['us_per_run_step'] - plain['us_per_run_step']:.1f} us per run-step "
          f"({per_probe / plain['us_per_run_step']:.1f} training steps per probe call)")
    b, a = f4["before"], f4["after"]
    text = "\n".join([
        "## Probe runs at grid speed (Fig. 4 and Fig. 5 protocols)",
        "",
        f"Command: `.venv/bin/python benchmarks/probe_runs.py --before {args.before} --fig4-steps {args.fig4_steps} "
        f"--grid-steps {args.grid_steps} --fig5-scale {args.fig5_scale:g} --fig5-widths {args.fig5_widths}"
        f"{lrs_arg}` at "
        f"commit {commit} — machine: {machine()}. One invocation, fresh processes, one after the other.",
        "",
        f"**Fig. 4, whole process** (`python -m dlf.train experiment=fig4_dynamics`, 1 seed, {args.fig4_steps:,} "
        "float64 steps, Hessian and NTK probes every 25 steps; goal <= 30 s):",
        "",
        "| code | wall (s) | compile (s) | train (s) | steps/s |",
        "|---|---:|---:|---:|---:|",
        f"| before ({args.before}: each probe point ends a compiled chunk) | {b['wall_s']:.1f} | "
        f"{b['compile_s']:.1f} | {b['train_s']:.1f} | {b['steps_per_s']:,.0f} |",
        f"| after ({commit}: probes inside the scan) | {a['wall_s']:.1f} | {a['compile_s']:.1f} | "
        f"{a['train_s']:.1f} | {a['steps_per_s']:,.0f} |",
        f"| after / before | x{b['wall_s'] / a['wall_s']:.2f} faster | | | "
        f"x{a['steps_per_s'] / b['steps_per_s']:.2f} |",
        "",
        f"**Probe overhead in a grid** (`dlf.phase`, float64, A in {{1, 10}} x T in {{100, 300}} x 2 seeds, "
        f"width 100, {args.grid_steps} steps):",
        "",
        "| grid | run-steps/s | us per run-step | compile (s) |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {v['run_steps_per_s']:,.0f} | {v['us_per_run_step']:.1f} | {v['compile_s']:.1f} |"
          for k, v in g.items()],
        "",
        f"The Hessian probe (order 10) every 25 steps costs {probed['us_per_run_step'] - plain['us_per_run_step']:.1f} "
        f"us per run-step on the same (generic) step, i.e. {per_probe / plain['us_per_run_step']:.1f} training "
        "steps per probe call.",
        "",
        f"**The Fig. 5 protocol** ({len(lr_list)} learning rates x 4 seeds, widths {args.fig5_widths}, float64, "
        f"Hessian and NTK probes every 25 steps), scaled to {args.fig5_scale:g} of its steps and periods "
        f"({round(70000 * args.fig5_scale):,}/eta steps, T = {round(5000 * args.fig5_scale):,}/eta):",
        "",
        "| route | wall, scaled (s) | of which training (s) | extrapolated to the full protocol (min) |",
        "|---|---:|---:|---:|",
        *[f"| {label} | {f5[k]['wall_s']:.1f} | {f5[k]['train_s']:.1f} | ~{f5[k]['full_s'] / 60:.1f} |"
          for k, label in (("program", "one program per width (`python -m dlf.phase experiment=fig5_threshold "
                                       "grid.lr=...`)"),
                           ("jobs", "as jobs (`python -m dlf.train -m experiment=fig5_threshold optimizer.lr=...`)"))],
        f"| jobs / program | x{f5['jobs']['wall_s'] / f5['program']['wall_s']:.2f} | | "
        f"x{f5['jobs']['full_s'] / f5['program']['full_s']:.2f} |",
        "",
        "The extrapolation is not a measurement: it divides each summary.json's training time by the scale and "
        "keeps the rest of the wall time (start-up, compilation, writing) as it is.",
    ])
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('probe-runs', text)}")


if __name__ == "__main__":
    main()
