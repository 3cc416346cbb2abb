"""The results layer: typed records of runs read back from their directories (a dlf.train run,
a multirun sweep of them, or a dlf.phase grid), and `load(path)` as a pandas DataFrame.

    import dlf.results
    df = dlf.results.load("outputs/multirun/2026-12-02/10-00-00")   # one row per (run, seed)
    df.groupby(["A", "T"]).val_acc.agg(["mean", "std", "count"])
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlf.config import Config, ConfigError, stored, to_dict

RUNS_COLUMNS = ("A", "T", "seed", "train_acc", "val_acc", "loss", "diverged_step")
# keys a phase diagram pools over, and keys that never change what a run computes (rundir.FREE)
POOLED_OUT = ("seed", "seeds", "schedule.A", "schedule.T", "compile_cache", "paths.output_dir")
_JOB_DIR = re.compile(r"^(\d+)_")


def flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def settings(cfg: Config | None) -> dict[str, Any]:
    """A typed config as flat dotted keys ({} for None): the columns of a results table."""
    return {} if cfg is None else flat(to_dict(cfg))


@dataclass(frozen=True)
class RunResult:
    """One run directory: its status (ok, diverged, failed, or incomplete: no summary.json), its
    typed config (None when there is none, or it cannot be read), and per-seed final values (None
    where a seed diverged)."""
    path: Path
    status: str
    config: Config | None = None
    seeds: tuple[int, ...] = ()
    finals: dict[str, tuple] = field(default_factory=dict)  # metric -> per-seed values
    diverged_seeds: tuple[int, ...] = ()
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status in ("ok", "diverged")

    @property
    def settings(self) -> dict[str, Any]:
        """The config as flat dotted keys."""
        return settings(self.config)

    @property
    def A(self) -> float | None:
        return self.summary.get("A", self.config.schedule.A if self.config else None)

    @property
    def T(self) -> int | None:
        return self.summary.get("T", self.config.schedule.T if self.config else None)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per seed: path, status, A, T, seed, the final metrics, diverged."""
        return [{"path": str(self.path), "status": self.status, "A": self.A, "T": self.T, "seed": s,
                 **{k: v[i] for k, v in self.finals.items()}, "diverged": s in self.diverged_seeds}
                for i, s in enumerate(self.seeds)]


def read_run(path: Path) -> RunResult:
    """The record of one dlf.train run directory."""
    path = Path(path)
    f = path / "summary.json"
    if not f.exists():
        return RunResult(path, "incomplete", error="started but wrote no summary.json (killed or still running)")
    try:
        s = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        return RunResult(path, "failed", error=f"summary.json cannot be read ({type(e).__name__}: {e})")
    if not isinstance(s, dict):
        return RunResult(path, "failed", error=f"summary.json holds a {type(s).__name__}, not a run's summary")
    try:
        cfg = stored(s["config"]) if s.get("config") is not None else None
    except ConfigError as e:
        return RunResult(path, "failed", error=f"the config in summary.json cannot be read ({e})", summary=s)
    status = s.get("status")
    if status in ("running", "interrupted"):
        return RunResult(path, "incomplete", cfg, summary=s,
                         error=f"status {status} (killed, interrupted or still running; rerun to finish)")
    if status not in ("ok", "diverged"):  # failed, or a status this reader does not know
        return RunResult(path, "failed", cfg, error=s.get("error", f"status {status!r}"), summary=s)
    finals = {k: tuple(v["per_seed"]) for k, v in s.get("final", {}).items()}
    return RunResult(path, status, cfg, tuple(s.get("seeds", ())), finals,
                     tuple(s.get("diverged_seeds", [])), summary=s)


@dataclass
class Sweep:
    """The runs of a multirun directory, and the jobs that never started."""
    root: Path
    runs: list[RunResult]
    never_started: dict[str, str]  # "job N (overrides)" -> why

    @property
    def varying(self) -> list[str]:
        """Config keys that differ between the complete runs (beyond those a diagram pools over)."""
        configs = [r.settings for r in self.runs if r.complete]
        if not configs:
            return []
        keys = set().union(*configs)
        return sorted(k for k in keys if k not in POOLED_OUT and len({json.dumps(c.get(k)) for c in configs}) > 1)


def _job_order(p: Path) -> tuple:
    m = _JOB_DIR.match(p.name)
    return (int(m.group(1)) if m else 1 << 30, p.name)


def expected_jobs(root: Path) -> list[list[str]] | None:
    """The override lists of every job of a basic-sweeper multirun, in job-number order, from
    the sweep's multirun.yaml (None when it is absent)."""
    f = root / "multirun.yaml"
    if not f.exists():
        return None
    from omegaconf import OmegaConf

    from dlf.tracking.naming import expand

    return expand([str(t) for t in OmegaConf.load(f).hydra.overrides.task])


def read_sweep(root: Path) -> Sweep:
    """Every job directory below `root` (those with a summary.json or a .hydra/), in job order."""
    root = Path(root)
    jobs = sorted({p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob(".hydra")},
                  key=_job_order)
    runs = [read_run(j) for j in jobs if j != root]
    nums = {int(m.group(1)) for r in runs if (m := _JOB_DIR.match(r.path.name))}
    never = {}
    expected = expected_jobs(root)
    if expected is not None:
        for num, overrides in enumerate(expected):
            if num not in nums:
                never[f"job {num} ({' '.join(overrides)})"] = "never started"
    return Sweep(root, runs, never)


def write_runs_csv(path: Path, final: list[dict]) -> None:
    """runs.csv: one row per (A, T, seed) with its final values ('' where None), written atomically."""
    from dlf.outputs import write_csv

    write_csv(path, RUNS_COLUMNS, final)


def read_runs_csv(path: Path) -> list[dict[str, Any]]:
    from dlf.outputs import read_csv

    return read_csv(path, ints=("T", "seed", "diverged_step"))


def _with_config(row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """row plus config keys; a key the row has already (the config's `loss` = the loss function's
    name vs the metric `loss`) goes in as `config.<key>`: a run's values are never replaced."""
    return {**row, **{(f"config.{k}" if k in row else k): v for k, v in config.items()}}


def records(path: Path) -> list[dict[str, Any]]:
    """One dict per (run, seed) of a dlf.phase directory (its runs.csv), a sweep, or one run."""
    path = Path(path)
    if (path / "runs.csv").exists():
        cfg = settings(read_run(path).config) if (path / "summary.json").exists() else {}
        cfg = {k: v for k, v in cfg.items() if k not in POOLED_OUT and k not in ("grid.A", "grid.T")}
        return [_with_config({"path": str(path), "status": "diverged" if r["diverged_step"] is not None
                              and r["diverged_step"] >= 0 else "ok", **r,
                              "diverged": r["diverged_step"] is not None and r["diverged_step"] >= 0}, cfg)
                for r in read_runs_csv(path / "runs.csv")]
    if (path / "summary.json").exists() and not any(path.glob("*/summary.json")):
        runs = [read_run(path)]
        varying: list[str] = []
    else:
        sweep = read_sweep(path)
        runs, varying = sweep.runs, sweep.varying
    return [_with_config(row, {k: r.settings.get(k) for k in varying}) for r in runs for row in r.rows()]


def load(path: Path):
    """A pandas DataFrame of `records(path)`: one row per (run, seed) with A, T, seed, the final
    metrics (train_acc, val_acc, loss, ...), status and every config key that varies."""
    import pandas as pd

    return pd.DataFrame(records(path))
