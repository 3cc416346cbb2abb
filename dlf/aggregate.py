"""Aggregate a sweep of jobs into a phase diagram: `python -m dlf.aggregate <multirun dir>`.

Reads every job's summary.json (basic or SLURM launcher), pools seeds per (A, T) and writes
phase.csv and phase.png (the same as `dlf.phase`) plus aggregate.json into the sweep directory.
Jobs that are missing (never started, or started without a summary: killed or still running),
failed, or that had diverged seeds are listed; a partial sweep aggregates what is there.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlf import diagram
from dlf.outputs import write_json

log = logging.getLogger("dlf")
_JOB_DIR = re.compile(r"^(\d+)_")
_POOLED_OUT = ("seed", "seeds", "schedule.A", "schedule.T", "compile_cache")


@dataclass
class Sweep:
    records: list[diagram.Record] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job -> error
    diverged: dict[str, list[int]] = field(default_factory=dict)  # job -> seeds
    missing: dict[str, str] = field(default_factory=dict)  # job -> why
    duplicates: int = 0
    varying: list[str] = field(default_factory=list)  # config keys that differ between jobs


def expected_jobs(root: Path) -> list[list[str]] | None:
    """The override lists of every job of a basic-sweeper multirun, in job-number order, from
    the sweep's multirun.yaml (None when it is absent)."""
    f = root / "multirun.yaml"
    if not f.exists():
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    task = OmegaConf.load(f).hydra.overrides.task
    lists = []
    for o in OverridesParser.create().parse_overrides(list(task)):
        key = o.get_key_element()
        if o.is_sweep_override():
            lists.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            lists.append([f"{key}={o.get_value_element_as_str()}"])
    return [list(c) for c in itertools.product(*lists)]


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def collect(root: Path) -> Sweep:
    """Read every job directory below `root` (directories with a summary.json or a .hydra/)."""
    sw = Sweep()
    jobs = sorted({p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob(".hydra")},
                  key=lambda p: (int(m.group(1)) if (m := _JOB_DIR.match(p.name)) else 1 << 30, p.name))
    jobs = [j for j in jobs if j != root]
    seen: dict[tuple, diagram.Record] = {}
    configs: dict[str, dict] = {}
    nums = set()
    for job in jobs:
        name = job.relative_to(root).as_posix()
        if m := _JOB_DIR.match(job.name):
            nums.add(int(m.group(1)))
        f = job / "summary.json"
        if not f.exists():
            sw.missing[name] = "started but wrote no summary.json (killed or still running)"
            continue
        s = json.loads(f.read_text())
        if s.get("status") == "failed" or "final" not in s:
            sw.failed[name] = s.get("error", f"status {s.get('status')!r}")
            continue
        configs[name] = _flat(s.get("config", {}))
        diverged = set(s.get("diverged_seeds", []))
        if diverged:
            sw.diverged[name] = sorted(diverged)
        sw.ok.append(name)
        fin = s["final"]
        for i, seed in enumerate(s["seeds"]):
            r = diagram.Record(float(s["A"]), int(s["T"]), int(seed), fin["train_acc"]["per_seed"][i],
                               fin["val_acc"]["per_seed"][i], seed in diverged)
            key = (r.A, r.T, r.seed)
            if key in seen:
                sw.duplicates += 1  # overlapping seed ranges (e.g. seed=0,1 with seeds=8): count once
                continue
            seen[key] = r
    sw.records = list(seen.values())
    if configs:
        keys = set().union(*configs.values())
        sw.varying = sorted(k for k in keys if k not in _POOLED_OUT
                            and len({json.dumps(c.get(k)) for c in configs.values()}) > 1)
    expected = expected_jobs(root)
    if expected is not None:
        for num, overrides in enumerate(expected):
            if num not in nums:
                sw.missing[f"job {num} ({' '.join(overrides)})"] = "never started"
    return sw


def aggregate(root: Path) -> dict[str, Any]:
    """Write phase.csv, phase.png and aggregate.json into the sweep directory `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    sw = collect(root)
    if sw.varying:
        raise ValueError(f"the jobs differ in {', '.join(sw.varying)}; a phase diagram pools seeds over "
                         "(A, T) only: aggregate one value at a time (one sweep directory each)")
    rows = diagram.table(sw.records)
    diagram.write_csv(root / "phase.csv", rows)
    if rows:
        seeds = sorted({r.seed for r in sw.records})
        diagram.plot(root / "phase.png", rows, f"{root.name}: {len(sw.ok)} jobs, {len(seeds)} seed(s) "
                     f"per point at most, {len(rows)} points")
    report = {
        "points": len(rows),
        "jobs_ok": len(sw.ok),
        "failed": sw.failed,
        "diverged": sw.diverged,
        "missing": sw.missing,
        "duplicate_seed_runs": sw.duplicates,
        "best": diagram.best(rows),
    }
    write_json(root / "aggregate.json", report)
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
        print(f"  {diagram.describe([rep['best']])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
