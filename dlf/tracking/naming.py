"""Names of runs and sweep jobs from what varies: which override keys a sweep sweeps (from its
command line and `hydra.sweeper.params`), each job's values of them, and from those the job's
directory suffix, W&B tags, group, display name and a stable W&B run id.

    hydra.sweep.subdir: ${hydra.job.num}_A${schedule.A}_T${schedule.T}_s${seed}${dlf_varying:}
    -> 3_A10_T100_s0_lr0.5_width100   (a Fig. 5 sweep over optimizer.lr and model.width)
"""
from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHOWN = ("schedule.A", "schedule.T", "seed")  # always in a job's directory name (A.._T.._s..)
MAX_NAME = 64


@dataclass(frozen=True)
class Job:
    """Where a run sits: its sweep's group ('' for a single run), job number and swept values."""
    group: str = ""
    num: int | None = None
    varying: dict[str, str] = field(default_factory=dict)  # swept key -> this job's value


def parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([str(o) for o in overrides])


def _sweep(task: list[str], sweeper_params: dict | None) -> list[Any]:
    """The sweep overrides of a multirun: `hydra.sweeper.params` (experiment files) first, then
    the command line's (`a=1,2`, `range(3)`, ...), which replace a param of the same key."""
    by_key: dict[str, Any] = {}
    for o in parse([*(f"{k}={v}" for k, v in (sweeper_params or {}).items()), *task]):
        by_key.pop(o.key_or_group, None)
        if o.is_sweep_override():
            by_key[o.key_or_group] = o
    return list(by_key.values())


def swept_keys(task: list[str], sweeper_params: dict | None) -> list[str]:
    """The keys a multirun sweeps."""
    return [o.key_or_group for o in _sweep(task, sweeper_params)]


def expand(task: list[str], sweeper_params: dict | None = None) -> list[list[str]]:
    """Every job's overrides of a basic-sweeper multirun, in job-number order, as Hydra's basic
    sweeper makes them: `hydra.sweeper.params` first, then the command line (a later override of
    the same key takes its value, the first one's place), the product of the sweep values with
    the last key varying fastest."""
    final: dict[str, list[str]] = {}
    for o in parse([*(f"{k}={v}" for k, v in (sweeper_params or {}).items()), *task]):
        key = o.get_key_element()
        final[key] = ([f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
                      else [f"{key}={o.get_value_element_as_str()}"])
    return [list(c) for c in itertools.product(*final.values())]


def sweep_size(task: list[str], sweeper_params: dict | None) -> int | None:
    """How many jobs a basic-sweeper multirun has (None when a sweep cannot be counted)."""
    n = 1
    try:
        for o in _sweep(task, sweeper_params):
            n *= len(list(o.sweep_string_iterator()))
    except Exception:  # noqa: BLE001 - intervals and other sweeps a basic sweeper does not count
        return None
    return n


def job_values(task: list[str], keys: list[str]) -> dict[str, str]:
    """This job's value (as written) of each swept key, from the job's own overrides."""
    values = {o.key_or_group: o.get_value_element_as_str() for o in parse(task)}
    return {k: values[k] for k in keys if k in values}


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each key's last dotted component (`optimizer.lr` -> `lr`), the full key where two share it."""
    leaf = {k: k.rsplit(".", 1)[-1].rsplit("/", 1)[-1] for k in keys}
    return {k: leaf[k] if list(leaf.values()).count(leaf[k]) == 1 else k for k in keys}


def dir_suffix(varying: dict[str, str]) -> str:
    """`_lr0.5_width100_model-wrn16_4` for the swept keys other than A, T and seed."""
    rest = {k: v for k, v in varying.items() if k not in SHOWN}
    short = short_keys(list(rest))
    parts = []
    for k, v in rest.items():
        v = re.sub(r"[^\w.+-]", "-", v)
        parts.append(f"{short[k]}{v}" if re.match(r"^[-+.\d]", v) else f"{short[k]}-{v}")
    return "".join(f"_{p}" for p in parts)


def tags(varying: dict[str, str]) -> list[str]:
    """`lr=0.5`, `width=100`, ... for the swept keys other than A, T and seed (those are tagged
    from the config)."""
    rest = [k for k in varying if k not in SHOWN]
    short = short_keys(rest)
    return [f"{short[k]}={varying[k]}" for k in rest]


def group_of(sweep_dir: str | Path) -> str:
    """A sweep's W&B group: its directory's last two path components (`2026-12-02_10-00-00` for
    outputs/multirun/2026-12-02/10-00-00), the same whether the path is given relative or absolute
    (dlf.aggregate recomputes it from the directory)."""
    return "_".join(Path(sweep_dir).resolve().parts[-2:])


def run_id(out_dir: str | Path) -> str:
    """A W&B run id derived from the run directory: a rerun in the same directory (a resumed
    CIFAR run, a requeued SLURM job) continues the same W&B run."""
    return "dlf-" + hashlib.sha1(str(Path(out_dir).resolve()).encode()).hexdigest()[:16]


def display_name(out_dir: str | Path, job: Job, fallback: str) -> str:
    """`<group>/<job dir>` for a sweep job (unique across sweeps); a single run's directory name,
    or `fallback` plus a hash of it when that is longer than MAX_NAME (CIFAR run dirs are their
    command-line overrides)."""
    name = Path(out_dir).name
    if job.group:
        return f"{job.group}/{name}"
    if len(name) <= MAX_NAME:
        return name
    return f"{fallback}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def current_job() -> Job:
    """The Hydra job this process is running (a single run outside a multirun or outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return Job()
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return Job()
    except (ImportError, ValueError):
        return Job()
    task = list(hc.overrides.task)
    keys = swept_keys(_sweep_task(Path(hc.sweep.dir)) or task, _params(hc))
    return Job(group_of(hc.sweep.dir), int(hc.job.num), job_values(task, keys))


def _params(hc) -> dict | None:
    params = hc.sweeper.get("params") if hasattr(hc.sweeper, "get") else None
    return dict(params) if params else None


def _sweep_task(sweep_dir: Path) -> list[str] | None:
    """The sweep's own command-line overrides (with their sweep values), from the multirun.yaml
    that Hydra writes before it starts the first job."""
    f = sweep_dir / "multirun.yaml"
    if not f.exists():
        return None
    from omegaconf import OmegaConf

    task = OmegaConf.select(OmegaConf.load(f), "hydra.overrides.task")
    return None if task is None else [str(t) for t in task]


def varying_suffix() -> str:
    """The `${dlf_varying:}` resolver of hydra.sweep.subdir: '' outside a multirun."""
    return dir_suffix(current_job().varying)


def register_resolver() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("dlf_varying", varying_suffix, replace=True)
