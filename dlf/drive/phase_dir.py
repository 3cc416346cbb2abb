"""The one writer of a phase-diagram directory, used by `dlf.phase` grids, merged grid shards and
`dlf.aggregate` sweeps: runs.csv (one row per run), phase.csv (one row per cell: mean, 95%
interval, std, n), compare.csv (every cell against its baseline, paired by seed), phase.png and a
JSON record (summary.json of a grid, aggregate.json of a sweep), written last."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dlf import outputs
from dlf.analysis import compare as cmp
from dlf.analysis import phase_table, results
from dlf.config import Config

log = logging.getLogger("dlf")


def title(cfg: Config) -> str:
    """The phase figure's title of a grid's config."""
    from dlf.models import MODELS

    g = cfg.grid
    lr = ",".join(f"{x:g}" for x in g.lr) if g.lr else f"{cfg.optimizer.lr:g}"
    steps = ",".join(str(n) for n in g.lr_steps) if g.lr and g.lr_steps else str(cfg.train.steps)
    return (f"{cfg.dataset.name} {MODELS[cfg.model.name].describe(cfg.model)}, lr {lr}, "
            f"{cfg.schedule.shape}: {cfg.seeds} seeds, {steps} steps")


def records(runs: list[dict[str, Any]], keys: list[str] = ()) -> list[phase_table.Record]:
    """runs.csv rows as the records a phase table pools (a diverged run has diverged_step >= 0)."""
    return [phase_table.Record(r["A"], r["T"], r["seed"], r["train_acc"], r["val_acc"],
                               r["diverged_step"] is not None and r["diverged_step"] >= 0,
                               tuple((k, r[k]) for k in keys), tuple((k, r[k]) for k in phase_table.STATS if k in r))
            for r in runs]


def best(rows: list[dict], comparison: list[dict], metric: str) -> dict | None:
    """The best cell: by the lower 95% bound of its paired difference to the baseline (the cell's
    row with the difference beside it), else (no baseline) by the lower bound of its own mean."""
    v = cmp.verdict(comparison, metric)
    if v["best"] is None:
        return phase_table.best(rows, metric)
    b = v["best"]
    row = next(r for r in rows if all(r[k] == b[k] for k in phase_table.cell_keys(r)) and
               (r["A"], r["T"]) == (b["A"], b["T"]))
    return {**row, **{f"{metric}_{k}": b[k] for k in ("diff", "lo", "hi", "n", "wins", "losses", "p_holm")},
            "baseline": b["baseline"]}


def write(root: Path, runs: list[dict[str, Any]], figure_title: str, record: dict[str, Any],
          record_name: str = "summary.json", keys: list[str] = (), baseline: str = "A=1",
          metric: str = "val_acc", figure: bool = True) -> dict[str, Any]:
    """Write runs.csv, phase.csv, compare.csv, phase.png (when `figure`; a failure there is a warning) and
    `record_name` (the `record` plus points, runs, diverged_runs, the comparison's verdict and the
    best cell) into `root`; `keys` are the other varying keys that define cells beside (A, T).
    Returns that record."""
    root, keys = Path(root), list(keys)
    recs = records(runs, keys)
    rows = phase_table.table(recs)
    comparison = cmp.compare(runs, [*keys, "A", "T"], baseline)
    verdict = cmp.verdict(comparison, metric, baseline)
    results.write_runs_csv(root / "runs.csv", runs, keys,
                           [c for c in results.PROBE_COLUMNS if any(c in r for r in runs)])
    phase_table.write_csv(root / "phase.csv", rows)
    outputs.write_csv(root / "compare.csv", [*keys, "A", "T", *cmp.COLUMNS], comparison)
    (root / "phase.png").unlink(missing_ok=True)  # an earlier write's figure never stays beside these tables
    if rows and figure:
        try:
            from dlf.figures.phase import plot

            plot(root / "phase.png", rows, figure_title, comparison=comparison, reading=cmp.reading(verdict))
        except Exception as e:  # noqa: BLE001 - a picture of the results; never the results themselves
            log.warning("dlf: the phase figure failed (%s: %s); the results are kept", type(e).__name__, e)
    head = {k: record[k] for k in ("status",) if k in record}
    out = {**head, "points": len(rows), "runs": len(runs), "diverged_runs": sum(r.diverged for r in recs),
           "best": best(rows, comparison, metric), "comparison": {k: v for k, v in verdict.items() if k != "best"},
           **record}
    outputs.write_json(root / record_name, out)
    return out


def describe(root: Path, metric: str = "val_acc") -> str:
    """The one-line summary of a written phase directory: its best cell (as `best` picks it) and
    the comparison's reading."""
    rows = phase_table.read_csv(Path(root) / "phase.csv")
    comparison = outputs.read_csv(Path(root) / "compare.csv", ints=("T", "n", "wins", "ties", "losses", "family",
                                                                    "n_cell", "n_base"), text_ok=True)
    b = best(rows, comparison, metric)
    if b is None:
        return "no point has a surviving seed"
    m = f"{metric} {phase_table.fmt(b[f'{metric}_mean'], b[f'{metric}_ci95'], b['n'])} (95% CI, n={b['n']})"
    if f"{metric}_diff" in b and b[f"{metric}_lo"] is not None:
        m += (f", {b[f'{metric}_diff']:+.4f} [{b[f'{metric}_lo']:+.4f}, {b[f'{metric}_hi']:+.4f}] against "
              f"{b['baseline']} (paired, n={b[f'{metric}_n']})")
    return f"best cell {phase_table.cell_name(b)}: {m}; {cmp.reading(cmp.verdict(comparison, metric))}"
