"""`python -m dlf.aggregate <multirun dir>` (dlf-aggregate): a sweep of dlf.train jobs as one
phase diagram (runs.csv, phase.csv, phase.png, aggregate.json in the sweep directory)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from dlf.analysis.phase_table import describe
    from dlf.drive.aggregate import aggregate

    ap = argparse.ArgumentParser(prog="python -m dlf.aggregate", description=__doc__.split("(dlf-aggregate): ")[1])
    ap.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multirun/<date>/<time>)")
    args = ap.parse_args(argv)
    try:
        rep = aggregate(args.sweep_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"dlf.aggregate: error: {e}", file=sys.stderr)
        return 2
    print(f"dlf.aggregate: {rep['jobs_ok']} job(s) ok, {len(rep['failed'])} failed, "
          f"{len(rep['missing'])} missing, {len(rep['diverged'])} with diverged seeds -> {rep['points']} "
          f"point(s) in {args.sweep_dir / 'phase.csv'}")
    for title, items in (("failed", rep["failed"]), ("missing", rep["missing"])):
        for job, why in items.items():
            print(f"  {title}: {job}: {why}")
    for job, seeds in rep["diverged"].items():
        print(f"  diverged: {job}: seeds {seeds}")
    if rep["duplicate_seed_runs"]:
        print(f"  note: {rep['duplicate_seed_runs']} run(s) repeated a (A, T, seed) of another job and were "
              "counted once (overlapping seed ranges: use seeds=1 with seed=range(N))")
    if rep["best"]:
        print(f"  {describe([rep['best']])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
