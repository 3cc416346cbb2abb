"""Probes of a `dlf.phase` grid: the per-run series of each chunk of runs (per-step F and the probe
values, computed inside the grid's program) written as one `probes/<run>.npz` per run, in the
format of a dlf.train run's probes.npz with one run, and each run's threshold for runs.csv."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dlf import outputs
from dlf.analysis.bifurcation import threshold
from dlf.config import Config
from dlf.drive import report

DIR = "probes"


def run_file(out_dir: Path, run) -> Path:
    """A grid run's (build.Run) probe series: probes/A<A>_T<T>_seed<s>.npz (lr<lr>_A... with grid.lr)."""
    lr = "" if run.lr is None else f"lr{run.lr:g}_"
    return Path(out_dir) / DIR / f"{lr}A{run.A:g}_T{run.T}_seed{run.seed}.npz"


class ChunkProbes:
    """The probe outputs of one compiled call (a chunk of runs), gathered from on_metrics."""

    def __init__(self, names: tuple[str, ...]):
        self.names = set(names)
        self.traces: list[np.ndarray] = []  # per-step F of each step chunk: (runs, steps)
        self.rows: list[dict[str, Any]] = []  # probes.jsonl-style rows: per-run lists

    def take(self, step: int, out: dict[str, np.ndarray]) -> None:
        """Keep what `out` holds of probes: F(t) of the chunk's steps and the probe values due at `step`."""
        if "loss_trace" in out:
            self.traces.append(np.asarray(out.pop("loss_trace")))
        values = {k: v for k, v in out.items() if k in self.names}
        if values:
            self.rows.append(outputs.metrics_row(step, {**values, "diverged_step": out["diverged_step"]}))

    def finish(self, cfg: Config, out_dir: Path, runs: list, ends: list[int]) -> list[dict[str, Any]]:
        """Write probes/<run>.npz of each of the chunk's `runs` (its first len(runs) runs; F and the
        probe values up to the run's own end step) and return their runs.csv threshold columns
        (threshold: the mean over the run's cascades as dlf.train's summary.json `threshold`
        per_seed gives it, threshold_cascades: the number of cascades; None without a Hessian probe)."""
        F = np.concatenate(self.traces, axis=1) if self.traces else np.zeros((len(runs), 0))
        steps, series = report.probe_series(self.rows, F.shape[0])
        h = cfg.probes["hessian"]
        cols = []
        for j, (r, end) in enumerate(zip(runs, ends)):
            keep = steps <= end
            mine = {k: v[j:j + 1, keep] for k, v in series.items()}
            _write_npz(run_file(out_dir, r), F=F[j:j + 1, :end], F_steps=np.arange(end),
                       probe_steps=steps[keep], **mine)
            if "hessian_lambda_max" not in mine:
                cols.append({"threshold": None, "threshold_cascades": None})
                continue
            lam = mine["hessian_lambda_max"][0]
            probed = np.isfinite(series["hessian_lambda_max"]).any(axis=0)[keep]  # the steps the Hessian ran
            t = threshold(F[j, :end], steps[keep][probed], lam[probed], r.T, quiet_frac=h.quiet_frac,
                          onset_amp=h.onset_amp)
            cols.append({"threshold": t["mean"], "threshold_cascades": t["n"]})
        return cols


def _write_npz(path: Path, **arrays) -> None:
    """An npz written atomically (a kill leaves the old file or none, never half of one)."""
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
