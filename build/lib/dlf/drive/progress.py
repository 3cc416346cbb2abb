"""Terminal progress lines of runs and grids (rate-limited; the host is never waited on)."""
from __future__ import annotations

import logging
import time
from typing import Any

from dlf import outputs

log = logging.getLogger("dlf")


class Progress:
    """One run: step (and epoch), F, accuracies and steps/s, at most every `every_s` s."""

    def __init__(self, steps: int, every_s: float = 2.0, epochs: int | None = None):
        self.steps, self.every_s, self.epochs = steps, every_s, epochs
        self.t0 = self.last = self.step0 = None

    def __call__(self, row: dict[str, Any]) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.step0 = now, row["step"]
        if row["step"] not in (self.step0, self.steps) and now - self.last < self.every_s:
            return
        self.last = now
        done = row["step"] - self.step0
        if now > self.t0 and done:
            rate = done / (now - self.t0)
            speed = f"{rate:.0f} steps/s, eta {(self.steps - row['step']) / rate:.0f} s"
        else:
            speed = "compiled"
        stats = {k: outputs.seed_stats(row[k]) for k in ("loss", "train_acc", "val_acc")}
        fmt = lambda s: "nan" if s["mean"] is None else f"{s['mean']:.4f}"  # noqa: E731
        where = f"step {row['step']:>{len(str(self.steps))}d}/{self.steps}"
        if self.epochs:
            where = f"epoch {row['epoch']:>{len(str(self.epochs))}d}/{self.epochs} ({where})"
        log.info("%s | F %s | train_acc %s | val_acc %s | %s", where, fmt(stats["loss"]),
                 fmt(stats["train_acc"]), fmt(stats["val_acc"]), speed)


class GridProgress:
    """A grid: points done, run-steps/s and eta, at most every few seconds."""

    def __init__(self, n_points: int, n_runs: int, steps: int, n_chunks: int, every_s: float = 5.0):
        self.n_points, self.n_runs, self.steps, self.n_chunks = n_points, n_runs, steps, n_chunks
        self.runs_done = 0
        self.every_s, self.last = every_s, time.perf_counter()

    def step(self, i: int, step: int) -> None:
        now = time.perf_counter()
        if 0 < step < self.steps and now - self.last >= self.every_s:
            self.last = now
            log.info("dlf.phase: chunk %d/%d at step %d/%d", i + 1, self.n_chunks, step, self.steps)

    def chunk_done(self, i: int, n: int, train_s: float) -> None:
        self.runs_done += n
        rate = self.runs_done * self.steps / train_s
        eta = (self.n_runs - self.runs_done) * self.steps / rate
        pts = self.runs_done * self.n_points // self.n_runs
        log.info("dlf.phase: %d/%d points (%d/%d runs) | %.0f run-steps/s | eta %.0f s", pts, self.n_points,
                 self.runs_done, self.n_runs, rate, eta)
        self.last = time.perf_counter()
