"""The results layer: typed records of runs read back from their directories (a dlf.train run,
a multirun sweep of them, or a dlf.phase grid), and `load(path)` as a pandas DataFrame of one
schema (SCHEMA, then the config keys that vary) whatever the kind of directory.

    import dlf.results
    df = dlf.results.load("outputs/multirun/2026-12-02/10-00-00")   # one row per (run, seed)
    dlf.results.compare(df, baseline="A=1")                         # paired differences, 95% CI

Reading never runs code: stored configs are typed without importing their `plugins`."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlf.config import FREE, Config, ConfigError, stored, to_dict

METRICS = ("train_acc", "val_acc", "loss", "ce", "val_ce")
RUNS_COLUMNS = ("A", "T", "seed", *METRICS, "diverged_step")
PROBE_COLUMNS = ("threshold", "threshold_cascades")  # runs.csv of a grid with a Hessian probe: per-run threshold
# dlf.results.load's columns and dtypes, for every kind of directory (then the varying config keys)
SCHEMA = {"path": "str", "status": "str", "A": "float64", "T": "int64", "seed": "int64",
          **{m: "float64" for m in METRICS}, "diverged_step": "int64", "diverged": "bool"}
# keys a phase diagram pools over, and keys that never change what a run computes (rundir.FREE)
POOLED_OUT = ("seed", "seeds", "schedule.A", "schedule.T", "compile_cache", "paths.output_dir")
_JOB_DIR = re.compile(r"^(\d+)_")


class ResultsError(ValueError):
    """A path that holds no results this layer can read (one line, naming the path)."""


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
        """One dict per seed in SCHEMA's columns (a metric the run did not record is None)."""
        at = self.summary.get("diverged_at_step", {})
        return [{"path": str(self.path), "status": "diverged" if s in self.diverged_seeds else self.status,
                 "A": self.A, "T": self.T, "seed": s,
                 **{m: self.finals[m][i] if m in self.finals else None for m in METRICS},
                 "diverged_step": int(at.get(str(s), -1)), "diverged": s in self.diverged_seeds}
                for i, s in enumerate(self.seeds)]


def identity(cfg: Config) -> dict[str, Any]:
    """The flat dotted keys that define what a run computes (FREE keys left out)."""
    return {k: v for k, v in settings(cfg).items() if k.split(".")[0] not in FREE}


def differing(a: Config, b: Config) -> list[str]:
    """The dotted keys whose values differ between two configs (FREE keys ignored)."""
    ia, ib = identity(a), identity(b)
    return sorted(k for k in set(ia) | set(ib) if json.dumps(ia.get(k)) != json.dumps(ib.get(k)))


def _other_config(job: Path, summary_config: Config) -> str | None:
    """The keys in which a run's summary.json and its config.yaml disagree (a summary left by a run
    of another configuration, a copied file), or None."""
    from dlf.config import read_yaml

    f = job / "config.yaml"
    if not f.exists():
        return None
    try:
        return ", ".join(differing(read_yaml(f), summary_config)) or None
    except ConfigError as e:  # an unreadable config.yaml: the run cannot be trusted
        return f"config.yaml, which cannot be read ({e})"


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
    if cfg is not None and (other := _other_config(path, cfg)):
        return RunResult(path, "failed", error=f"summary.json belongs to another configuration than config.yaml "
                         f"(differs in {other}); the directory cannot be trusted", summary=s)
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
    """The runs of a multirun directory that belong to its launch, the jobs of the launch that never
    started, and the directories inside that are not jobs of the launch (left out, with why)."""
    root: Path
    runs: list[RunResult]
    never_started: dict[str, str]  # "job N (overrides)" -> why
    foreign: dict[str, str] = field(default_factory=dict)  # directory -> why it is left out

    @property
    def varying(self) -> list[str]:
        """Config keys that differ between the complete runs (beyond those a diagram pools over)."""
        return varying([r.settings for r in self.runs if r.complete])


def varying(configs: list[dict[str, Any]]) -> list[str]:
    """The keys whose values differ between flat configs (POOLED_OUT left out)."""
    if not configs:
        return []
    keys = set().union(*configs)
    return sorted(k for k in keys if k not in POOLED_OUT and k.split(".")[0] not in FREE
                  and len({json.dumps(c.get(k)) for c in configs}) > 1)


def _job_order(p: Path) -> tuple:
    m = _JOB_DIR.match(p.name)
    return (int(m.group(1)) if m else 1 << 30, p.name)


def expected_jobs(root: Path) -> list[list[str]] | None:
    """The override lists of every job of a basic-sweeper multirun, in job-number order, from
    the sweep's multirun.yaml (its command line and hydra.sweeper.params); None when it is absent."""
    f = root / "multirun.yaml"
    if not f.exists():
        return None
    from omegaconf import OmegaConf

    from dlf.tracking.naming import expand

    try:
        conf = OmegaConf.load(f)
        task = OmegaConf.select(conf, "hydra.overrides.task", throw_on_missing=True)
        params = OmegaConf.select(conf, "hydra.sweeper.params")
        if not OmegaConf.is_list(task) or not (params is None or OmegaConf.is_dict(params)):
            raise ValueError("no hydra.overrides.task list")
        return expand([str(t) for t in task], {str(k): str(v) for k, v in params.items()} if params else None)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file gives: named, never a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ResultsError(f"{f} is not a Hydra multirun.yaml ({type(e).__name__}: {first}); it says which jobs "
                           "belong to the sweep: restore it, or move it away to read every job directory") from None


def _job_overrides(job: Path) -> list[str] | None:
    f = job / ".hydra" / "overrides.yaml"
    if not f.exists():
        return None
    import yaml

    try:
        got = yaml.safe_load(f.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in got] if isinstance(got, list) else None


def read_sweep(root: Path) -> Sweep:
    """The job directories of `root` (those with a summary.json or a .hydra/), in job order. With a
    multirun.yaml, a job belongs to the launch when it is a direct child named `<num>_...` with a
    job number of the launch and (where it kept them) the launch's overrides for that number; any
    other directory is named in `foreign` and left out."""
    root = Path(root)
    found = {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob(".hydra")}
    expected = expected_jobs(root)
    runs, foreign = [], {}
    for job in sorted(found - {root}, key=_job_order):
        name = job.relative_to(root).as_posix()
        if expected is not None:
            m = _JOB_DIR.match(job.name)
            if job.parent != root or not m or int(m.group(1)) >= len(expected):
                if not any(f in job.parents for f in found - {root}):  # name the top directory only
                    foreign[name] = "not a job of this sweep's launch (multirun.yaml)"
                continue
            got = _job_overrides(job)
            if got is not None and sorted(got) != sorted(expected[int(m.group(1))]):
                foreign[name] = (f"its overrides ({' '.join(got)}) are not job {m.group(1)}'s of this launch "
                                 f"({' '.join(expected[int(m.group(1))])})")
                continue
        runs.append(read_run(job))
    nums = {int(m.group(1)) for r in runs if (m := _JOB_DIR.match(r.path.name))}
    never = {}
    if expected is not None:
        for num, overrides in enumerate(expected):
            if num not in nums:
                never[f"job {num} ({' '.join(overrides)})"] = "never started"
    return Sweep(root, runs, never, foreign)


def write_runs_csv(path: Path, final: list[dict], keys: list[str] = (), extra: list[str] = ()) -> None:
    """runs.csv: one row per run with the other varying `keys` first, then RUNS_COLUMNS and the
    `extra` columns (PROBE_COLUMNS of a grid with probes; '' where None), written atomically."""
    from dlf.outputs import write_csv

    write_csv(path, [*keys, *RUNS_COLUMNS, *extra], final)


def read_runs_csv(path: Path) -> list[dict[str, Any]]:
    """runs.csv back as rows (a column a grid of an older version did not write is None)."""
    from dlf.outputs import read_csv

    rows = read_csv(path, ints=("T", "seed", "diverged_step", "threshold_cascades"), text_ok=True)
    return [{**{k: None for k in RUNS_COLUMNS}, **r} for r in rows]


def kind(path: Path) -> str:
    """`run` (a dlf.train run directory), `grid` (a dlf.phase directory) or `sweep` (a multirun
    directory); a path that holds none of them is a ResultsError."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path} does not exist; give a run, sweep or dlf.phase directory")
    if not path.is_dir():
        raise ResultsError(f"{path} is a file; give a run, sweep or dlf.phase directory")
    if (path / "summary.json").exists():
        try:
            s = json.loads((path / "summary.json").read_text())
        except (OSError, ValueError):
            s = None
        grid = isinstance(s, dict) and "points" in s
        return "grid" if grid or (path / "runs.csv").exists() or (path / "runs.partial.jsonl").exists() else "run"
    jobs = any(c.is_dir() and ((c / "summary.json").exists() or (c / ".hydra").is_dir()) for c in path.iterdir())
    if (path / "multirun.yaml").exists() or jobs:
        return "sweep"
    raise ResultsError(f"{path} holds no results (no summary.json, no multirun.yaml, no job directories)")


def records(path: Path) -> list[dict[str, Any]]:
    """One dict per (run, seed) of a dlf.phase directory (its runs.csv), a sweep (the jobs of its
    launch) or one run, in SCHEMA's columns, then the config keys that vary between its runs."""
    path = Path(path)
    k = kind(path)
    if k == "grid":
        run = read_run(path)
        if not (path / "runs.csv").exists():
            raise ResultsError(f"{path}: a dlf.phase grid without runs.csv (status {run.status}: "
                               f"{run.error or 'not finished'}); rerun its command to finish it")
        rows = []
        for r in read_runs_csv(path / "runs.csv"):
            dead = r["diverged_step"] is not None and r["diverged_step"] >= 0
            rows.append({"path": str(path), "status": "diverged" if dead else "ok", "A": r["A"], "T": r["T"],
                         "seed": r["seed"], **{m: r[m] for m in METRICS},
                         "diverged_step": -1 if r["diverged_step"] is None else r["diverged_step"], "diverged": dead,
                         **{c: r[c] for c in r if c not in RUNS_COLUMNS}})
        return rows
    runs = [read_run(path)] if k == "run" else read_sweep(path).runs
    keys = varying([r.settings for r in runs if r.complete])
    rows = [{**row, **{c: r.settings.get(c) for c in keys}} for r in runs for row in r.rows()]
    if not rows and k == "run":
        raise ResultsError(f"{path}: no finished run ({runs[0].status}: {runs[0].error or 'no seeds'})")
    return rows


def load(path: Path):
    """A pandas DataFrame of `records(path)`: one row per (run, seed) with SCHEMA's columns and
    dtypes (metrics NaN where a seed diverged or did not record them), then every config key that
    varies (with a `config.` prefix where the key is also a column, e.g. `config.loss`)."""
    import pandas as pd

    rows = records(path)
    df = pd.DataFrame(rows, columns=list(SCHEMA) + [c for c in (rows[0] if rows else {}) if c not in SCHEMA])
    extra = {c: f"config.{c}" for c in df.columns[len(SCHEMA):] if c in SCHEMA}
    return df.astype(SCHEMA).rename(columns=extra)


def compare(df, baseline: str = "A=1", metrics: tuple[str, ...] = ("val_acc", "train_acc")):
    """Paired comparisons (dlf.analysis.compare) of every cell of a `load`ed table against its
    baseline cell: one row per (cell, metric) with the mean difference, its 95% interval, wins,
    ties, losses, n, raw and Holm-adjusted p and the family size."""
    import pandas as pd

    from dlf.analysis.compare import COLUMNS
    from dlf.analysis.compare import compare as compare_runs

    keys = [*cell_keys(df), "A", "T"]
    rows = compare_runs(df.to_dict("records"), keys, baseline, metrics)
    return pd.DataFrame(rows, columns=[*keys, *COLUMNS])


def cell_keys(df) -> list[str]:
    """The columns of a loaded table (after SCHEMA) that define cells beside A and T: the varying
    config keys."""
    return [c for c in df.columns if c not in SCHEMA]
