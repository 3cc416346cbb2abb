"""logger=wandb for phase diagrams: one summary W&B run per `dlf.phase` grid or `dlf.aggregate`d
sweep (job_type `phase`), in the sweep's group, holding

- `phase/table`: phase.csv as a wandb.Table (one row per (A, T): means, stds, n, diverged_frac);
- `figures/phase`: phase.png as a wandb.Image;
- an artifact `phase-<group>` of type `phase-diagram` with phase.csv and runs.csv;
- summary: `best/<column>` (the row with the best validation mean), `points`, `runs`.

Its W&B files go to `<dir>/wandb/` and its id is derived from the directory (rerunning
`dlf.aggregate` on a grown sweep updates the same run). Failures warn once and never cost the
local files, as for runs (dlf.tracking.wandb_mirror).
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

from dlf.tracking import naming
from dlf.tracking.wandb_mirror import one_line, start

log = logging.getLogger("dlf")


def _num(v: str) -> Any:
    if v == "":
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def read_csv(path: Path) -> tuple[list[str], list[list[Any]]]:
    with Path(path).open() as f:
        rows = list(csv.reader(f))
    return rows[0], [[_num(v) for v in r] for r in rows[1:]]


def artifact_name(group: str) -> str:
    return "phase-" + re.sub(r"[^\w.-]", "-", group)


def mirror_phase(logger, out_dir: Path, *, group: str, name: str, config: dict[str, Any], tags: list[str],
                 summary: dict[str, Any]) -> None:
    """Send the phase diagram in out_dir (phase.csv, runs.csv, phase.png) as one W&B run."""
    out_dir = Path(out_dir)
    if logger.name != "wandb" or logger.mode == "disabled" or not (out_dir / "phase.csv").exists():
        return
    run = None
    try:
        import wandb

        run = start(wandb, logger, out_dir, name=name, group=group, job_type="phase", tags=tags, config=config)
        columns, data = read_csv(out_dir / "phase.csv")
        item: dict[str, Any] = {"phase/table": wandb.Table(columns=columns, data=data)}
        if (out_dir / "phase.png").exists():
            item["figures/phase"] = wandb.Image(str(out_dir / "phase.png"))
        run.log(item)
        art = wandb.Artifact(artifact_name(group), type="phase-diagram",
                             description=f"phase.csv and runs.csv of {name}")
        for f in ("phase.csv", "runs.csv"):
            if (out_dir / f).exists():
                art.add_file(str(out_dir / f), name=f)
        run.log_artifact(art)
        run.summary.update(summary)
        run.finish(exit_code=0)
    except Exception as e:  # noqa: BLE001 - W&B must never cost the local outputs
        log.warning("dlf: logger=wandb could not mirror the phase diagram (%s); the local files are not "
                    "affected", one_line(e))
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass


def best_summary(best: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {**{f"best/{k}": v for k, v in (best or {}).items()}, **extra}


def mirror_grid(cfg, out_dir: Path, summary: dict[str, Any]) -> None:
    """`dlf.phase`: the grid is its own group (logger.group wins)."""
    from dlf.config import to_dict

    group = cfg.logger.group or naming.group_of(out_dir)
    tags = [f"A={','.join(f'{a:g}' for a in cfg.grid.A or (cfg.schedule.A,))}",
            f"T={','.join(str(t) for t in cfg.grid.T or (cfg.schedule.T,))}", f"seeds={cfg.seeds}", "phase",
            *cfg.logger.tags]
    mirror_phase(cfg.logger, out_dir, group=group, name=f"{group}/phase", config=to_dict(cfg), tags=tags,
                 summary=best_summary(summary.get("best"), points=summary.get("points"), runs=summary.get("runs")))


def mirror_sweep(root: Path, configs: list, report: dict[str, Any]) -> None:
    """`dlf.aggregate`: one summary run in the group of the sweep's jobs, if they used logger=wandb
    (configs: the jobs' typed configs, as dlf.analysis.results reads them)."""
    used = [c.logger for c in configs if c.logger.name == "wandb" and c.logger.mode != "disabled"]
    if not used:
        return
    logger = used[0]
    group = logger.group or naming.group_of(root)
    mirror_phase(logger, root, group=group, name=f"{group}/aggregate", config={"sweep_dir": str(root)},
                 tags=["phase", "aggregate", *logger.tags],
                 summary=best_summary(report.get("best"), points=report.get("points"), jobs_ok=report.get("jobs_ok")))
