"""Phase-diagram tables: per-(A, T) statistics over seeds and phase.csv. Shared by `dlf.phase` (a
grid in one program) and `dlf.aggregate` (a sweep of jobs)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dlf import outputs
from dlf.outputs import seed_stats

COLUMNS = ("A", "T", "n", "train_acc_mean", "train_acc_std", "val_acc_mean", "val_acc_std",
           "diverged_frac", "runs")


@dataclass(frozen=True)
class Record:
    """The final state of one run: a (A, T, seed) point; accuracies are None if it diverged."""
    A: float
    T: int
    seed: int
    train_acc: float | None
    val_acc: float | None
    diverged: bool


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    s = seed_stats(values)  # the same mean and sample std as a run's summary.json
    return s["mean"], s["std"]


def table(records: Iterable[Record]) -> list[dict]:
    """One row per (A, T), sorted by A then T: n = seeds that did not diverge (the mean and the
    sample std, ddof=1, are over those), diverged_frac = diverged seeds / all seeds of the point."""
    groups: dict[tuple[float, int], list[Record]] = {}
    for r in records:
        groups.setdefault((float(r.A), int(r.T)), []).append(r)
    rows = []
    for (A, T), rs in sorted(groups.items()):
        ok = [r for r in rs if not r.diverged]
        tr_m, tr_s = _stats([r.train_acc for r in ok])
        va_m, va_s = _stats([r.val_acc for r in ok])
        rows.append(dict(A=A, T=T, n=len(ok), train_acc_mean=tr_m, train_acc_std=tr_s,
                         val_acc_mean=va_m, val_acc_std=va_s,
                         diverged_frac=(len(rs) - len(ok)) / len(rs), runs=len(rs)))
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    """phase.csv, written atomically."""
    outputs.write_csv(path, COLUMNS, rows)


def read_csv(path: Path) -> list[dict]:
    """phase.csv back as rows of numbers (empty cells -> None)."""
    return outputs.read_csv(path, ints=("T", "n", "runs"))


def best(rows: list[dict], key: str = "val_acc_mean") -> dict | None:
    ok = [r for r in rows if r[key] is not None]
    return max(ok, key=lambda r: r[key]) if ok else None


def describe(rows: list[dict]) -> str:
    """A one-line summary of the best point, for logs."""
    b = best(rows)
    if b is None:
        return "no point has a surviving seed"
    fmt = lambda m, s: "nan" if m is None or math.isnan(m) else (  # noqa: E731 - one seed: no spread
        f"{m:.4f}" if b["n"] == 1 else f"{m:.4f} ± {s:.4f}")
    return (f"best val_acc at A={b['A']:g} T={b['T']}: val {fmt(b['val_acc_mean'], b['val_acc_std'])}, "
            f"train {fmt(b['train_acc_mean'], b['train_acc_std'])} (n={b['n']})")
