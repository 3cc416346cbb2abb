"""Per-job wall time of a small sweep with and without the persistent compilation cache.

    .venv/bin/python benchmarks/cache.py [--repeats 2] [--no-write]

A 4-job sweep (`python -m dlf.train -m schedule.A=1,10 schedule.T=100,300 seeds=2`, width 100,
2000 steps, basic launcher) is run three ways, alternately `--repeats` times: `compile_cache=null`,
a cold cache (fresh directory) and a warm cache (the directory the cold sweep filled). Reported:
median per-job wall time and compile time from the jobs' summary.json, and the sweep's process
wall time (Python start and imports included). A SLURM job is a fresh process per job, like the
first job of these sweeps: the cache saves the most there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SWEEP = ["-m", "schedule.A=1,10", "schedule.T=100,300", "seeds=2", "train.steps=2000", "train.log_every=500"]


def sweep(workdir: Path, cache: str | None) -> dict:
    out = workdir / f"sweep{len(list(workdir.iterdir()))}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dlf.train", *SWEEP, f"hydra.sweep.dir={out}",
                    f"compile_cache={cache or 'null'}"], cwd=workdir, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    sums = [json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))]
    assert len(sums) == 4 and all(s["status"] == "ok" for s in sums)
    return dict(process=wall, job=statistics.median(s["wall_s"] for s in sums),
                first=sums[0]["wall_s"], compile=statistics.median(s["compile_s"] for s in sums))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from _md import machine, write_section

    res: dict[str, list[dict]] = {"off": [], "cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for i in range(args.repeats):
            cache = str(work / f"cache{i}")
            res["off"].append(sweep(work, None))
            res["cold"].append(sweep(work, cache))
            res["warm"].append(sweep(work, cache))
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in res.items()}
    rows = []
    for k, label in (("off", "no cache (`compile_cache=null`)"), ("cold", "cold cache (first sweep)"),
                     ("warm", "warm cache (later sweeps)")):
        m = med[k]
        rows.append(f"| {label} | {m['job']:.2f} | {m['first']:.2f} | {m['compile']:.2f} | {m['process']:.1f} |")
        print(f"{label:35s} job {m['job']:.2f} s | first job {m['first']:.2f} s | compile {m['compile']:.2f} s | "
              f"sweep process {m['process']:.1f} s", flush=True)
    text = "\n".join([
        "## Persistent compilation cache (a 4-job sweep, basic launcher)",
        "",
        f"Command: `.venv/bin/python benchmarks/cache.py` — machine: {machine()}. Sweep: "
        f"`python -m dlf.train {' '.join(SWEEP)}`; median of {args.repeats} alternating repeats.",
        "",
        "| cache | per-job wall (s, median) | first job wall (s) | per-job compile (s, median) "
        "| sweep process wall (s) |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"- Warm vs no cache: per-job wall x{med['off']['job'] / med['warm']['job']:.2f} faster, compile "
        f"x{med['off']['compile'] / max(med['warm']['compile'], 1e-9):.1f} faster.",
        "- The cache is on by default (`compile_cache: .jax_cache`, inside `paths.output_dir`), with "
        "JAX's thresholds lowered so that small programs are cached too.",
    ])
    if not args.no_write:
        print(f"wrote {write_section('cache', text)}")


if __name__ == "__main__":
    main()
