"""The one writer of a phase-diagram directory, used by `dlf.phase` grids, merged grid shards and
`dlf.aggregate` sweeps: runs.csv (one row per run), phase.csv (one row per (A, T)), phase.png and
a JSON record (summary.json of a grid, aggregate.json of a sweep), written last."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dlf import outputs
from dlf.analysis import phase_table, results
from dlf.config import Config

log = logging.getLogger("dlf")


def title(cfg: Config) -> str:
    """The phase figure's title of a grid's config."""
    from dlf.models import MODELS

    return (f"{cfg.dataset.name} {MODELS[cfg.model.name].describe(cfg.model)}, lr {cfg.optimizer.lr:g}, "
            f"{cfg.schedule.shape}: {cfg.seeds} seeds, {cfg.train.steps} steps")


def records(runs: list[dict[str, Any]]) -> list[phase_table.Record]:
    """runs.csv rows as the records a phase table pools (a diverged run has diverged_step >= 0)."""
    return [phase_table.Record(r["A"], r["T"], r["seed"], r["train_acc"], r["val_acc"],
                               r["diverged_step"] is not None and r["diverged_step"] >= 0) for r in runs]


def write(root: Path, runs: list[dict[str, Any]], figure_title: str, record: dict[str, Any],
          record_name: str = "summary.json") -> dict[str, Any]:
    """Write runs.csv, phase.csv, phase.png (a failure there is a warning) and `record_name` (the
    `record` plus points, runs, diverged_runs and the best point) into `root`; returns that record."""
    root = Path(root)
    recs = records(runs)
    rows = phase_table.table(recs)
    results.write_runs_csv(root / "runs.csv", runs)
    phase_table.write_csv(root / "phase.csv", rows)
    if rows:
        try:
            from dlf.figures.phase import plot

            plot(root / "phase.png", rows, figure_title)
        except Exception as e:  # noqa: BLE001 - a picture of the results; never the results themselves
            log.warning("dlf: the phase figure failed (%s: %s); the results are kept", type(e).__name__, e)
    head = {k: record[k] for k in ("status",) if k in record}
    out = {**head, "points": len(rows), "runs": len(runs), "diverged_runs": sum(r.diverged for r in recs),
           "best": phase_table.best(rows), **record}
    outputs.write_json(root / record_name, out)
    return out


def describe(root: Path) -> str:
    """The one-line summary of the best point of a written phase directory."""
    return phase_table.describe(phase_table.read_csv(Path(root) / "phase.csv"))
