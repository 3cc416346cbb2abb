"""Phase-diagram tables: per-cell statistics over seeds (phase.csv). A cell is an (A, T) point, and
in a sweep of jobs over other keys (optimizer.lr, model.width, ...) also its values of those keys.
Shared by `dlf.phase` grids and `dlf.aggregate` sweeps (dlf.drive.phase_dir writes them)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dlf import outputs
from dlf.analysis.stats import interval

BASE = ("A", "T", "n", "train_acc_mean", "train_acc_ci95", "train_acc_std", "val_acc_mean", "val_acc_ci95",
        "val_acc_std", "diverged_frac", "runs")
INTS = ("T", "n", "runs", "threshold_n")
STATS = ("threshold",)  # per-run values a cell may also pool (a grid with a Hessian probe), after BASE


@dataclass(frozen=True)
class Record:
    """The final state of one run: a (A, T, seed) point (and its values of the other keys a sweep
    varies, `cell`: ((key, value), ...)); accuracies are None if it diverged."""
    A: float
    T: int
    seed: int
    train_acc: float | None
    val_acc: float | None
    diverged: bool
    cell: tuple = ()
    stats: tuple = ()  # ((name, value or None), ...) of STATS


def is_stat(key: str) -> bool:
    """Whether a phase.csv column holds a statistic of STATS (threshold_mean, ...) rather than a cell key."""
    return key.startswith(tuple(f"{s}_" for s in STATS))


def cell_keys(row: dict) -> list[str]:
    """The other varying keys of a phase.csv row (neither BASE nor a statistic of STATS)."""
    return [k for k in row if k not in BASE and not is_stat(k)]


def columns(rows: list[dict]) -> list[str]:
    """phase.csv's columns: the other varying keys first (in the rows' order), then BASE, then the
    statistics of STATS the rows hold."""
    first = rows[0] if rows else {}
    return [*cell_keys(first), *BASE, *(k for k in first if is_stat(k))]


def table(records: Iterable[Record]) -> list[dict]:
    """One row per cell, sorted by the other keys, then A, then T: n = seeds that did not diverge
    (mean, 95% interval half-width `_ci95` and sample std over those), diverged_frac = diverged
    seeds / all seeds of the cell."""
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        groups.setdefault((r.cell, float(r.A), int(r.T)), []).append(r)
    rows = []
    for (cell, A, T), rs in sorted(groups.items(), key=lambda kv: (_sortable(kv[0][0]), kv[0][1], kv[0][2])):
        ok = [r for r in rs if not r.diverged]
        tr, va = interval(r.train_acc for r in ok), interval(r.val_acc for r in ok)
        rows.append({**dict(cell), "A": A, "T": T, "n": len(ok), "train_acc_mean": tr["mean"],
                     "train_acc_ci95": tr["ci95"], "train_acc_std": tr["std"], "val_acc_mean": va["mean"],
                     "val_acc_ci95": va["ci95"], "val_acc_std": va["std"],
                     "diverged_frac": (len(rs) - len(ok)) / len(rs), "runs": len(rs)})
        for name in dict(rs[0].stats):  # mean, 95% interval, std and n over the runs that have a value
            st = interval(v for r in ok if (v := dict(r.stats).get(name)) is not None)
            rows[-1].update({f"{name}_mean": st["mean"], f"{name}_ci95": st["ci95"], f"{name}_std": st["std"],
                             f"{name}_n": st["n"]})
    return rows


def _sortable(cell: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))
                 for _, v in cell)


def write_csv(path: Path, rows: list[dict]) -> None:
    """phase.csv, written atomically."""
    outputs.write_csv(path, columns(rows), rows)


def read_csv(path: Path) -> list[dict]:
    """phase.csv back as rows (numbers as numbers, empty cells None, other keys' text as text); a
    file without phase.csv's columns, or with a cell that does not parse, is a ValueError naming it."""
    with Path(path).open() as f:
        header = f.readline().strip().split(",")
    if missing := [c for c in BASE if c not in header]:
        raise ValueError(f"{path} is not a phase.csv (no {', '.join(missing)})")
    try:
        rows = outputs.read_csv(path, ints=INTS, text_ok=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a phase.csv ({type(e).__name__}: {e})") from None
    if bad := [i for i, r in enumerate(rows, 2) if not all(isinstance(r.get(c), (int, float)) for c in ("A", "T"))]:
        raise ValueError(f"{path} is not a phase.csv (line {bad[0]} has no numeric A and T)")
    return rows


def best(rows: list[dict], key: str = "val_acc") -> dict | None:
    """The row with the highest lower 95% bound of `key`'s mean (mean - ci95; the mean itself
    where n = 1), i.e. the best cell that is not only lucky."""
    ok = [r for r in rows if r[f"{key}_mean"] is not None]
    return max(ok, key=lambda r: (r[f"{key}_mean"] - (r[f"{key}_ci95"] or 0.0), r[f"{key}_mean"])) if ok else None


def cell_name(row: dict) -> str:
    """`A=10 T=100` (and the other keys' values) of a row."""
    extra = [f"{k.rsplit('.', 1)[-1]}={row[k]}" for k in cell_keys(row)
             if k not in STAT_KEYS and not k.startswith(("train_acc_", "val_acc_"))]
    return " ".join([*extra, f"A={row['A']:g}", f"T={row['T']}"])


STAT_KEYS = ("n", "runs", "diverged_frac", "metric", "baseline", "kind", "diff", "lo", "hi", "ci95", "wins",
             "ties", "losses", "p", "p_holm", "n_cell", "n_base")


def fmt(mean: float | None, half: float | None, n: int) -> str:
    """`0.9563 ± 0.0081` (95% interval half-width), the mean alone for n = 1, `nan` without one."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "nan"
    return f"{mean:.4f}" if n <= 1 or half is None else f"{mean:.4f} ± {half:.4f}"


def describe(rows: list[dict]) -> str:
    """A one-line summary of the best cell (by the lower bound of its validation interval), for logs."""
    b = best(rows)
    if b is None:
        return "no point has a surviving seed"
    return (f"best val_acc (by its lower 95% bound) at {cell_name(b)}: "
            f"val {fmt(b['val_acc_mean'], b['val_acc_ci95'], b['n'])}, "
            f"train {fmt(b['train_acc_mean'], b['train_acc_ci95'], b['n'])} (95% CI, n={b['n']})")
