"""A sweep of dlf.train jobs read back (dlf.analysis.results) and written as one phase-diagram
directory (dlf.drive.phase_dir): `python -m dlf.aggregate <multirun dir>` (dlf.cli.aggregate).

Jobs that are missing (never started, or started without a summary: killed or still running),
failed, or that had diverged seeds are listed; a partial sweep aggregates what is there."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlf import config as config_lib
from dlf.analysis.results import METRICS, read_sweep
from dlf.drive import phase_dir


@dataclass
class Sweep:
    """A sweep's runs for the phase diagram, and the jobs left out of it (and why)."""
    runs: list[dict] = field(default_factory=list)  # runs.csv rows, one per (A, T, seed)
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job -> error
    diverged: dict[str, list[int]] = field(default_factory=dict)  # job -> seeds
    missing: dict[str, str] = field(default_factory=dict)  # job -> why
    foreign: dict[str, str] = field(default_factory=dict)  # directory inside, not a job of the launch -> why
    duplicates: int = 0
    varying: list[str] = field(default_factory=list)  # config keys that differ between jobs
    configs: list[config_lib.Config] = field(default_factory=list)  # the complete jobs' configs (W&B settings)


def collect(root: Path) -> Sweep:
    """The phase-diagram view of a sweep (dlf.analysis.results.read_sweep)."""
    sweep = read_sweep(root)
    sw = Sweep(varying=sweep.varying, missing=dict(sweep.never_started), foreign=dict(sweep.foreign))
    seen: set[tuple] = set()
    for run in sweep.runs:
        name = run.path.relative_to(root).as_posix()
        if run.status == "incomplete":
            sw.missing[name] = run.error
            continue
        if not run.complete:
            sw.failed[name] = run.error
            continue
        if run.diverged_seeds:
            sw.diverged[name] = sorted(run.diverged_seeds)
        sw.ok.append(name)
        sw.configs.append(run.config)
        diverged_at = run.summary.get("diverged_at_step", {})
        cell = {k: run.settings.get(k) for k in sw.varying}
        for row in run.rows():
            key = (*(json.dumps(v) for v in cell.values()), float(run.A), int(run.T), int(row["seed"]))
            if key in seen:
                sw.duplicates += 1  # overlapping seed ranges (e.g. seed=0,1 with seeds=8): count once
                continue
            seen.add(key)
            sw.runs.append({**cell, "A": float(run.A), "T": int(run.T), "seed": int(row["seed"]),
                            **{m: row[m] for m in METRICS},
                            "diverged_step": int(diverged_at.get(str(row["seed"]), -1))})
    return sw


def aggregate(root: Path, baseline: str = "A=1", metric: str = "val_acc") -> dict[str, Any]:
    """Write runs.csv, phase.csv, compare.csv, phase.png and aggregate.json into the sweep directory
    `root`: cells are the (A, T) points and the values of every other key the jobs vary (lr, width,
    ...), each compared with its `baseline` cell. A directory that holds no sweep (or is a dlf.phase
    or dlf.train output) is refused and nothing is written."""
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
    from dlf.analysis.compare import parse_baseline

    parse_baseline(baseline, [*sw.varying, "A", "T"])  # one line before anything is written
    seeds = sorted({r["seed"] for r in sw.runs})
    points = len({tuple(r[k] for k in (*sw.varying, "A", "T")) for r in sw.runs})
    report = phase_dir.write(root, sw.runs, f"{root.name}: {len(sw.ok)} jobs, {len(seeds)} seed(s) per cell at "
                             f"most, {points} cells", {
                                 "jobs_ok": len(sw.ok), "failed": sw.failed, "diverged": sw.diverged,
                                 "missing": sw.missing, "foreign": sw.foreign, "duplicate_seed_runs": sw.duplicates,
                                 "cell_keys": [*sw.varying, "A", "T"]},
                             record_name="aggregate.json", keys=sw.varying, baseline=baseline, metric=metric)
    from dlf.tracking.wandb_phase import mirror_sweep  # jobs with logger=wandb: the diagram in their group

    mirror_sweep(root, sw.configs, report)
    return report
