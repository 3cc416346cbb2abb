"""Aggregate a sweep of jobs into a phase diagram: `python -m dlf.aggregate <multirun dir>`.

Reads every job's summary.json (basic or SLURM launcher), pools seeds per (A, T) and writes
phase.csv and phase.png (the same as `dlf.phase`) plus aggregate.json into the sweep directory.
Jobs that are missing (never started, or started without a summary: killed or still running),
failed, or that had diverged seeds are listed; a partial sweep aggregates what is there.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlf.analysis.phase_table import Record, best, describe, table, write_csv
from dlf.analysis.results import read_sweep, write_runs_csv
from dlf.outputs import write_json

log = logging.getLogger("dlf")


@dataclass
class Sweep:
    """A sweep's records for the phase diagram, and the jobs left out of it (and why)."""
    records: list[Record] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job -> error
    diverged: dict[str, list[int]] = field(default_factory=dict)  # job -> seeds
    missing: dict[str, str] = field(default_factory=dict)  # job -> why
    duplicates: int = 0
    varying: list[str] = field(default_factory=list)  # config keys that differ between jobs
    runs: list[dict] = field(default_factory=list)  # runs.csv rows
    configs: list[dict] = field(default_factory=list)  # flat configs of the complete jobs (W&B settings)


def collect(root: Path) -> Sweep:
    """The phase-diagram view of a sweep (dlf.analysis.results.read_sweep)."""
    sweep = read_sweep(root)
    sw = Sweep(varying=sweep.varying, missing=dict(sweep.never_started))
    seen: dict[tuple, Record] = {}
    for run in sweep.runs:
        name = run.path.relative_to(root).as_posix()
        if run.status == "incomplete":
            sw.missing[name] = run.error
            continue
        if not run.complete:
            sw.failed[name] = run.error
            continue
        if other := _other_config(run.path, run.summary.get("config")):
            sw.failed[name] = f"summary.json belongs to another configuration than config.yaml (differs in {other})"
            continue
        if run.diverged_seeds:
            sw.diverged[name] = sorted(run.diverged_seeds)
        sw.ok.append(name)
        sw.configs.append(run.config)
        diverged_at = run.summary.get("diverged_at_step", {})
        for row in run.rows():
            r = Record(float(run.A), int(run.T), int(row["seed"]), row.get("train_acc"), row.get("val_acc"),
                       row["diverged"])
            key = (r.A, r.T, r.seed)
            if key in seen:
                sw.duplicates += 1  # overlapping seed ranges (e.g. seed=0,1 with seeds=8): count once
                continue
            seen[key] = r
            sw.runs.append(dict(A=r.A, T=r.T, seed=r.seed, train_acc=r.train_acc, val_acc=r.val_acc,
                                loss=row.get("loss"), diverged_step=int(diverged_at.get(str(r.seed), -1))))
    sw.records = list(seen.values())
    return sw


def _other_config(job: Path, summary_config: dict | None) -> str | None:
    """The keys in which a job's summary.json and its config.yaml disagree (a summary left by an
    earlier run of another configuration), or None."""
    f = job / "config.yaml"
    if summary_config is None or not f.exists():
        return None
    import yaml

    from dlf import config as config_lib
    from dlf.drive.rundir import differing

    try:
        stored = config_lib.to_dict(config_lib.from_dict(yaml.safe_load(f.read_text()) or {}))
    except Exception as e:  # noqa: BLE001 - an unreadable config.yaml: the job cannot be trusted
        return f"config.yaml, which cannot be read: {type(e).__name__}"
    return ", ".join(differing(stored, summary_config)) or None


def aggregate(root: Path) -> dict[str, Any]:
    """Write phase.csv, phase.png and aggregate.json into the sweep directory `root`; a directory
    that holds no sweep (or is a dlf.phase or dlf.train output) is refused and nothing is written."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    if (root / "summary.json").exists():
        raise ValueError(f"{root} is the output directory of one dlf.phase or dlf.train run, not a sweep; "
                         "its results are already there (dlf.results.load reads them)")
    sw = collect(root)
    if not (sw.ok or sw.failed or sw.missing or sw.diverged):
        raise ValueError(f"{root} holds no sweep (no job directory with a summary.json or .hydra/, no "
                         "multirun.yaml); give the directory of a `python -m dlf.train -m` sweep")
    if sw.varying:
        raise ValueError(f"the jobs differ in {', '.join(sw.varying)}; a phase diagram pools seeds over "
                         "(A, T) only: aggregate one value at a time (one sweep directory each)")
    rows = table(sw.records)
    write_csv(root / "phase.csv", rows)
    write_runs_csv(root / "runs.csv", sw.runs)
    if rows:
        from dlf.figures.phase import plot

        seeds = sorted({r.seed for r in sw.records})
        plot(root / "phase.png", rows, f"{root.name}: {len(sw.ok)} jobs, {len(seeds)} seed(s) "
                     f"per point at most, {len(rows)} points")
    report = {
        "points": len(rows),
        "jobs_ok": len(sw.ok),
        "failed": sw.failed,
        "diverged": sw.diverged,
        "missing": sw.missing,
        "duplicate_seed_runs": sw.duplicates,
        "best": best(rows),
    }
    write_json(root / "aggregate.json", report)
    from dlf.tracking.wandb_phase import mirror_sweep  # jobs with logger=wandb: the diagram in their group

    mirror_sweep(root, sw.configs, report)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dlf.aggregate", description=__doc__.split("\n\n")[0])
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
