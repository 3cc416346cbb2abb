"""What every sweep and every run pays besides training, before and after 2026-12-04, side by side in
one process: the `dlf.train -m` precheck and the run's dynamics.png.

    .venv/bin/python benchmarks/setup_costs.py [--seeds 30] [--repeats 3] [--no-write]

1. The precheck of `dlf.train -m schedule.A=1,10,50 schedule.T=100,300 seed='range(--seeds)'` (the
   README's sweep: 180 points at 30 seeds), which composes and validates every point before any job
   is launched: Hydra's compose per point (before) against dlf.cli.train.sweep_point (now: one
   composition per choice of config groups, each point's values applied to it); the two Configs of
   every point are checked equal.
2. dynamics.png of a default-size run (35 000 steps, 71 metrics rows, 8 seeds, 3 classes, T=100)
   and of a short one (40 steps, 5 rows, 2 seeds: the size of most test runs) with matplotlib's
   constrained layout (before) and with dlf's fixed margins (now).
Each pair runs alternately `--repeats` times; the medians and their ratio are printed and written
to BENCHMARKS.md (section `setup-costs`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _md import commit, machine, write_section  # noqa: E402

from dlf import config as config_lib  # noqa: E402
from dlf.cli import conf_dir  # noqa: E402
from dlf.cli.train import sweep_point  # noqa: E402
from dlf.tracking.naming import expand  # noqa: E402


def precheck(points: list[list[str]]) -> tuple[float, float]:
    """Seconds to validate every point: Hydra's compose each (before), sweep_point (now)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        t0 = time.perf_counter()
        before = [config_lib.from_hydra(compose(config_name="config", overrides=p)) for p in points]
        t1 = time.perf_counter()
        bases: dict = {}
        now = [sweep_point(p, lambda groups: compose(config_name="config", overrides=groups), bases) for p in points]
        t2 = time.perf_counter()
    if before != now:
        raise SystemExit("the fast precheck gave another Config than Hydra's composition")
    return t1 - t0, t2 - t1


RUNS = {"default": (35_000, 500, 8), "short": (40, 10, 2)}  # steps, log_every, seeds (T=100, 3 classes)


def run_rows(steps: int, every: int, seeds: int) -> tuple[list[dict], np.ndarray]:
    """Metrics rows and the dense Gamma of a spiral run of this size (synthetic values)."""
    from dlf.core.schedule import gamma

    T, n = 100, steps // every
    rng = np.random.default_rng(0)
    rows = []
    for i, step in enumerate(range(0, steps + 1, every)):
        loss = np.exp(-3 * i / n) * (1 + rng.random(seeds))
        rows.append({"step": step, "loss": loss.tolist(), "loss_min": (0.5 * loss).tolist(),
                     "loss_max": (2 * loss).tolist(), "train_acc": (0.3 + 0.7 * i / n * np.ones(seeds)).tolist(),
                     "val_acc": (0.3 + 0.6 * i / n * np.ones(seeds)).tolist()})
    off = steps - T if steps > T else steps + 1  # a short run: oscillating to its end
    return rows, np.asarray(gamma(np.arange(steps + 1), 10.0, T, 3, "triangle", off))


def figure(run: str, layout: str, out: Path) -> float:
    from dlf.figures.dynamics import dynamics

    steps, every, seeds = RUNS[run]
    rows, dense = run_rows(steps, every, seeds)
    t0 = time.perf_counter()
    dynamics(out / f"{layout}.png", rows, dense, 600, steps - 100 if steps > 100 else None,
             f"spiral width 100, A=10, T=100, {seeds} seed(s), float32", period=100, seeds=list(range(seeds)),
             layout=layout)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30, help="seeds of the swept grid (3 A x 2 T x seeds points)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.repeats < 1:
        ap.error(f"--seeds={args.seeds} --repeats={args.repeats} is not allowed; expected both >= 1")
    sweep = ["schedule.A=1,10,50", "schedule.T=100,300", f"seed=range({args.seeds})"]
    points = expand(sweep)
    times = {k: [] for k in ("compose", "sweep_point", *(f"{r} {la}" for r in RUNS for la in ("constrained", "fixed")))}
    with tempfile.TemporaryDirectory() as d:
        figure("short", "fixed", Path(d))  # matplotlib's first-figure start-up, in neither column
        for _ in range(args.repeats):
            before, now = precheck(points)
            times["compose"].append(before)
            times["sweep_point"].append(now)
            for run in RUNS:
                for layout in ("constrained", "fixed"):
                    times[f"{run} {layout}"].append(figure(run, layout, Path(d)))
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        "## Setup costs: the -m precheck and the dynamics figure",
        "",
        f"Command: `.venv/bin/python benchmarks/setup_costs.py --seeds {args.seeds} --repeats {args.repeats}` at "
        f"commit {commit()} — machine: {machine()}. One process; before and now alternate; medians.",
        "",
        "| what | before (s) | now (s) | before / now |",
        "|---|---:|---:|---:|",
        f"| precheck of `dlf.train -m {' '.join(sweep)}` ({len(points)} points): Hydra's compose per point, "
        f"now one per choice of config groups | {med['compose']:.2f} | {med['sweep_point']:.2f} | "
        f"x{med['compose'] / med['sweep_point']:.1f} |",
        *(f"| dynamics.png of a {run} run ({RUNS[run][0]:,} steps, {RUNS[run][0] // RUNS[run][1] + 1} rows, "
          f"{RUNS[run][2]} seeds): constrained layout, now fixed margins | {med[run + ' constrained']:.3f} | "
          f"{med[run + ' fixed']:.3f} | x{med[run + ' constrained'] / med[run + ' fixed']:.2f} |" for run in RUNS),
        "",
        "Every run writes one dynamics.png; every point of a sweep was composed by the precheck before any job "
        "was launched (Hydra composes each job again as it launches and runs it).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('setup-costs', text)}")


if __name__ == "__main__":
    main()
