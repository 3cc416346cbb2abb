"""Terminal progress lines of runs, grids and sweeps (rate-limited; the host is never waited on).

Epoch runs train whole chunks of `train.log_every` epochs in one compiled call, so the metrics
rows can be hours apart on a CPU; between them a heartbeat thread prints an estimate every
`HEARTBEAT_S` from the measured rate (no extra host syncs in the loop)."""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Any

from hydra.experimental.callback import Callback

from dlf import outputs

log = logging.getLogger("dlf")


HEARTBEAT_S = 30.0


def pm(stats: dict[str, Any]) -> str:
    """`mean ± half-width of its 95% interval` of seed statistics; the mean alone for one seed."""
    if not stats["n"]:
        return "nan"
    return f"{stats['mean']:.4f}" if stats["n"] == 1 else f"{stats['mean']:.4f} ± {stats['ci95']:.4f}"


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


class Progress:
    """One run: step (and epoch), F, accuracies, steps/s (images/s for mini-batch runs) and eta, at
    most every `every_s` s; epoch runs also get a heartbeat line every `heartbeat_s` between rows."""

    def __init__(self, steps: int, every_s: float = 2.0, epochs: int | None = None,
                 batch_size: int | None = None, heartbeat_s: float = HEARTBEAT_S):
        self.steps, self.every_s, self.epochs, self.batch_size = steps, every_s, epochs, batch_size
        self.t0 = self.last = self.step0 = None
        self.rate: float | None = None  # steps/s, measured
        self.prior_rate: float | None = None  # steps/s, estimated before training (expect)
        self.last_row = (None, None)  # (time, step) of the newest row
        self._stop = threading.Event()
        self._thread = None
        if epochs and heartbeat_s > 0:
            self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)
            self._started = time.perf_counter()
            self._thread.start()

    def _speed(self, rate: float, left_steps: float) -> str:
        unit = f"{rate * self.batch_size:.1f} images/s" if self.batch_size else f"{rate:.0f} steps/s"
        return f"{unit}, eta {_duration(left_steps / rate)}"

    def _beat(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            now = time.perf_counter()
            t, step = self.last_row
            rate, source = (self.rate, "the measured rate") if self.rate else (self.prior_rate, "the model size")
            if rate is None or t is None:
                log.info("dlf: training the first epochs (%s so far; compilation included)",
                         _duration(now - self._started))
                continue
            est = min(self.steps, step + rate * (now - t))
            spe = self.steps / self.epochs
            log.info("epoch ~%.1f/%d (estimated from %s) | %s", est / spe, self.epochs, source,
                     self._speed(rate, self.steps - est))

    def expect(self, total_s: float | None) -> None:
        """An a-priori duration (warn_if_slow's CPU estimate): heartbeat lines use it until the
        first chunk of epochs has been measured."""
        if total_s:
            self.prior_rate = self.steps / total_s

    def close(self) -> None:
        self._stop.set()

    def __call__(self, row: dict[str, Any]) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.step0 = now, row["step"]
        self.last_row = (now, row["step"])
        if row["step"] == self.steps:
            self.close()
        done = row["step"] - self.step0
        if now > self.t0 and done:
            self.rate = done / (now - self.t0)
        if row["step"] not in (self.step0, self.steps) and now - self.last < self.every_s:
            return
        self.last = now
        speed = self._speed(self.rate, self.steps - row["step"]) if self.rate and done else "compiled"
        stats = {k: outputs.seed_stats(row[k]) for k in ("loss", "train_acc", "val_acc")}
        fmt = lambda s: "nan" if s["mean"] is None else f"{s['mean']:.4f}"  # noqa: E731
        where = f"step {row['step']:>{len(str(self.steps))}d}/{self.steps}"
        if self.epochs:
            where = f"epoch {row['epoch']:>{len(str(self.epochs))}d}/{self.epochs} ({where})"
        log.info("%s | F %s | train_acc %s | val_acc %s | %s", where, fmt(stats["loss"]),
                 fmt(stats["train_acc"]), fmt(stats["val_acc"]), speed)


# Myrtle5 width 16, float32, 2 CPU cores: 20 images/s (BENCHMARKS.md "cifar-cpu") with ~7.3k
# parameters; conv-net training cost on a CPU scales about with the parameter count.
CPU_PARAM_IMAGES_PER_S = 20 * 7_300 / 2   # per core
SLOW_S = 3600.0


def cpu_estimate_s(n_params: int, train_images: int, eval_images: int, cores: int | None = None) -> float:
    """A rough CPU wall time of a mini-batch run: training images at the measured rate per
    parameter, evaluation (forward only) at three times that."""
    rate = CPU_PARAM_IMAGES_PER_S * (cores or os.cpu_count() or 1) / max(1, n_params)
    return (train_images + eval_images / 3) / rate


def warn_if_slow(cfg, params, n_train: int, n_eval: int, backend: str) -> float | None:
    """Before a mini-batch run on a CPU that is estimated to take more than an hour: one line with
    the estimate and the ways out. `params`: the stacked parameters of the seeds. Returns the
    estimate (None when not applicable)."""
    if backend != "cpu" or not cfg.epoch_run:
        return None
    import jax

    n_params = sum(int(x.size) for x in jax.tree.leaves(params)) // max(1, cfg.seeds)
    epochs = cfg.train.epochs
    evals = epochs // cfg.train.log_every + 1
    est = cpu_estimate_s(n_params, epochs * n_train * cfg.seeds, evals * (n_train + n_eval) * cfg.seeds)
    limit = cfg.train.max_cpu_hours
    if limit is not None and est > limit * 3600:
        from dlf.errors import ConfigError

        raise ConfigError(f"this run is estimated to take ~{_duration(est)} on this CPU ({n_params} parameters, "
                          f"{epochs} epochs of {n_train} images, {cfg.seeds} seed(s)), beyond "
                          f"train.max_cpu_hours={limit:g}; use a GPU, or make it smaller (dataset.subset=2000, "
                          "model.width=16, train.epochs=...), or give train.max_cpu_hours=null to run it anyway")
    if est > SLOW_S:
        log.warning("dlf: this run is estimated to take ~%s on this CPU (%d parameters, %d epochs of %d images, "
                    "%d seed(s)). Use a GPU, or make it smaller: dataset.subset=2000, model.width=16, "
                    "train.epochs=...", _duration(est), n_params, epochs, n_train, cfg.seeds)
    return est


@contextmanager
def slow_notice(what: str, after_s: float = 5.0):
    """Long work is never silent: a line once `what` has taken after_s (from a timer thread, while
    it runs: XLA compiles with Python's threads running), and a line with its time when it ends."""
    t0 = time.perf_counter()
    fired = threading.Event()

    def note() -> None:
        fired.set()
        log.info("dlf: %s (%g s so far) ...", what, after_s)

    timer = threading.Timer(after_s, note)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if fired.is_set():
            log.info("dlf: %s: done in %.1f s", what, time.perf_counter() - t0)


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


class SweepProgress(Callback):
    """A Hydra callback (hydra.callbacks in conf/config.yaml): in a multirun, a line as each job
    starts and ends (jobs done of all, elapsed, eta), and at the end the aggregate command."""

    def __init__(self):
        self.total, self.done, self.failed, self.t0 = None, 0, 0, None

    def on_multirun_start(self, config, **kw) -> None:
        from dlf.tracking.naming import sweep_size

        self.t0 = time.perf_counter()
        self.total = sweep_size(list(config.hydra.overrides.task), config.hydra.sweeper.get("params"))

    def on_job_start(self, config, **kw) -> None:
        if self.t0 is not None:
            log.info("dlf: sweep job %d/%s starting", int(config.hydra.job.num) + 1, self.total or "?")

    def on_job_end(self, config, job_return, **kw) -> None:
        if self.t0 is None:
            return
        from hydra.core.utils import JobStatus

        self.done += 1
        self.failed += job_return.status != JobStatus.COMPLETED
        el = time.perf_counter() - self.t0
        eta = f", eta {_duration(el / self.done * (self.total - self.done))}" if self.total else ""
        log.info("dlf: sweep %d/%s jobs done (%d failed) | %s elapsed%s", self.done, self.total or "?",
                 self.failed, _duration(el), eta)

    def on_multirun_end(self, config, **kw) -> None:
        if self.t0 is None:
            return
        d = config.hydra.sweep.dir
        # jobs run elsewhere (submitit) report their ends in their own logs, not to this process
        counts = f"{self.done} job(s), {self.failed} failed, " if self.done else ""
        log.info("dlf: sweep finished: %s%s. %s", counts, _duration(time.perf_counter() - self.t0),
                 next_command(config, d))


def next_command(config, sweep_dir: str) -> str:
    """What to run on a finished sweep: the threshold fit of a sweep with the Hessian probe on
    (dlf.fig5), else the phase diagram and paired comparisons of every varying key (dlf.aggregate)."""
    from omegaconf import OmegaConf

    if (OmegaConf.select(config, "probes.hessian.every", default=0) or 0) > 0:
        return f"Threshold against the learning rate (Fig. 5): python -m dlf.fig5 {sweep_dir}"
    return f"Phase diagram and paired comparisons of it: python -m dlf.aggregate {sweep_dir}"
