"""`python -m dlf.aggregate <multirun dir> [--baseline A=1]` (dlf-aggregate): a sweep of dlf.train
jobs as one phase diagram over every key it varies, each cell compared with its baseline cell
(runs.csv, phase.csv, compare.csv, phase.png, aggregate.json in the sweep directory)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from dlf.drive.aggregate import aggregate

    ap = argparse.ArgumentParser(prog="python -m dlf.aggregate", description=__doc__.split("(dlf-aggregate): ")[1])
    ap.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multirun/<date>/<time>)")
    ap.add_argument("--baseline", default="A=1", help="key=value[,key=value] of the baseline cell (default A=1)")
    ap.add_argument("--metric", default="val_acc", choices=("val_acc", "train_acc"),
                    help="the final metric that picks the best cell (default val_acc)")
    args = ap.parse_args(argv)
    from dlf.drive.phase_dir import describe as describe_dir
    from dlf.errors import ConfigError

    try:
        rep = aggregate(args.sweep_dir, args.baseline, args.metric)
    except (FileNotFoundError, ValueError, ConfigError) as e:
        print(f"dlf.aggregate: error: {e}", file=sys.stderr)
        return 2
    print(f"dlf.aggregate: {rep['jobs_ok']} job(s) ok, {len(rep['failed'])} failed, "
          f"{len(rep['missing'])} missing, {len(rep['diverged'])} with diverged seeds -> {rep['points']} "
          f"cell(s) over {', '.join(rep['cell_keys'])} in {args.sweep_dir / 'phase.csv'} (comparisons: compare.csv)")
    for title, items in (("failed", rep["failed"]), ("missing", rep["missing"]), ("left out", rep["foreign"])):
        for job, why in items.items():
            print(f"  {title}: {job}: {why}")
    for job, seeds in rep["diverged"].items():
        print(f"  diverged: {job}: seeds {seeds}")
    if rep["duplicate_seed_runs"]:
        print(f"  note: {rep['duplicate_seed_runs']} run(s) repeated a (A, T, seed) of another job and were "
              "counted once (overlapping seed ranges: use seeds=1 with seed=range(N))")
    if rep["best"]:
        print(f"  {describe_dir(args.sweep_dir, args.metric)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
