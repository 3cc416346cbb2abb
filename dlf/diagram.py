"""Phase diagrams: per-(A, T) statistics over seeds, phase.csv and the Fig. 3 contour plots.
Shared by `dlf.phase` (a grid in one program) and `dlf.aggregate` (a sweep of jobs)."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

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
    with Path(path).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})


def read_csv(path: Path) -> list[dict]:
    """phase.csv back as rows of numbers (empty cells -> None)."""
    def num(k, v):
        if v == "":
            return None
        return int(v) if k in ("T", "n", "runs") else float(v)
    with Path(path).open() as f:
        return [{k: num(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def best(rows: list[dict], key: str = "val_acc_mean") -> dict | None:
    ok = [r for r in rows if r[key] is not None]
    return max(ok, key=lambda r: r[key]) if ok else None


def _grid(rows: list[dict], key: str):
    As = sorted({r["A"] for r in rows})
    Ts = sorted({r["T"] for r in rows})
    Z = np.full((len(As), len(Ts)), np.nan)
    for r in rows:
        if r[key] is not None:
            Z[As.index(r["A"]), Ts.index(r["T"])] = r[key]
    return np.asarray(Ts, float), np.asarray(As, float), Z


def plot(path: Path, rows: list[dict], title: str) -> None:
    """Fig. 3 style: final train and validation accuracy over (T, A), A on the y axis, T on the x
    axis (log scale when T spans a decade), filled contours from 0 to 1 with the grid points
    marked; points where every seed diverged are crossed. Falls back to a colour map when the
    grid has a single A or T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
    levels = np.linspace(0.0, 1.0, 21)
    for ax, key, name in zip(axes, ("train_acc_mean", "val_acc_mean"), ("train", "validation")):
        T, A, Z = _grid(rows, key)
        if len(T) > 1 and len(A) > 1 and np.isfinite(Z).sum() >= 4:
            im = ax.contourf(T, A, np.ma.masked_invalid(Z), levels=levels, cmap="viridis", extend="neither")
        else:
            im = ax.pcolormesh(_edges(T), _edges(A), np.ma.masked_invalid(Z), cmap="viridis", vmin=0, vmax=1)
        TT, AA = np.meshgrid(T, A)
        ax.plot(TT.ravel(), AA.ravel(), "k.", ms=2)
        dead = [(r["T"], r["A"]) for r in rows if r["n"] == 0]
        if dead:
            ax.plot(*zip(*dead), "rx", ms=6, label="all seeds diverged")
            ax.legend(loc="upper right", fontsize=8)
        if len(T) > 1 and T.max() / T.min() >= 10:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(T, [f"{t:g}" for t in T])
        if len(A) <= 12:
            ax.set_yticks(A, [f"{a:g}" for a in A])
        ax.set_xlabel("T (steps)")
        ax.set_ylabel("A")
        ax.set_title(f"final {name} accuracy")
        fig.colorbar(im, ax=ax, ticks=np.linspace(0, 1, 6))
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _edges(v: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (for pcolormesh)."""
    if len(v) == 1:
        return np.array([v[0] * 0.9, v[0] * 1.1]) if v[0] else np.array([-0.5, 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def describe(rows: list[dict]) -> str:
    """A one-line summary of the best point, for logs."""
    b = best(rows)
    if b is None:
        return "no point has a surviving seed"
    fmt = lambda m, s: "nan" if m is None or math.isnan(m) else f"{m:.4f} ± {s:.4f}"  # noqa: E731
    return (f"best val_acc at A={b['A']:g} T={b['T']}: val {fmt(b['val_acc_mean'], b['val_acc_std'])}, "
            f"train {fmt(b['train_acc_mean'], b['train_acc_std'])} (n={b['n']})")


def main(argv: list[str] | None = None) -> int:
    """`python -m dlf.diagram <dir> [-o out.png]`: redraw phase.png of a dlf.phase or
    dlf.aggregate directory from its phase.csv (e.g. after changing the plotting code)."""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m dlf.diagram", description=main.__doc__.split(":", 1)[1].strip())
    ap.add_argument("dir", type=Path)
    ap.add_argument("-o", "--out", type=Path, help="output file (default: <dir>/phase.png)")
    args = ap.parse_args(argv)
    csv_path = args.dir / "phase.csv"
    if not csv_path.exists():
        print(f"dlf.diagram: error: {csv_path} does not exist (expected a dlf.phase or dlf.aggregate directory)",
              file=sys.stderr)
        return 2
    title = args.dir.name
    if (args.dir / "summary.json").exists():
        from dlf.config import from_dict
        from dlf.phase import title as phase_title

        title = phase_title(from_dict(json.loads((args.dir / "summary.json").read_text())["config"]))
    out = args.out or args.dir / "phase.png"
    plot(out, read_csv(csv_path), title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
