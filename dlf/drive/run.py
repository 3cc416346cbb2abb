"""The run driver: train one config's seeds in one program (dlf.drive.build), stream metrics and
probe rows to disk, then hand over to dlf.drive.report."""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlf import outputs
from dlf.config import Config, to_dict
from dlf.core.engine import Compiled, Timing
from dlf.core.schedule import gamma
from dlf.drive import report, rundir
from dlf.drive.build import build, runs_vectorised
from dlf.drive.progress import Progress, warn_if_slow
from dlf.tracking.mirror import NullMirror, open_mirror

log = logging.getLogger("dlf")


def use_matmul_precision(precision: str) -> None:
    """Set jax_default_matmul_precision from the `matmul_precision` key ("default" = JAX's own
    choice, which on NVIDIA GPUs may be TF32 for float32; "highest" = true float32)."""
    jax.config.update("jax_default_matmul_precision", None if precision == "default" else precision)


def use_compile_cache(path: str | None) -> None:
    """Point JAX's persistent compilation cache at `path` (shared by the jobs of a sweep). The
    thresholds are lowered so that the many small one-off compilations are cached too."""
    if not path:
        return
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as e:
        log.warning("dlf: compile_cache=%s cannot be used (%s); compiling without the cache", path, e)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _soft(what: str, fn, *args, **kwargs):
    """Call fn; a failure (a full disk under a figure, a tracker that is down) is one warning and
    never changes the run's status or drops its final statistics."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - these outputs are copies or pictures of the results
        log.warning("dlf: %s failed (%s: %s); the run's results are kept", what, type(e).__name__, e)
        return None


class _SoftMirror:
    """The configured mirror, each call guarded by _soft."""

    def __init__(self, cfg: Config, out_dir: Path, group: str | None):
        self._m = _soft("opening the logger", open_mirror, cfg, out_dir, group) or NullMirror()

    def log_row(self, row: dict[str, Any]) -> None:
        _soft("logging a row to the logger", self._m.log_row, row)

    def finish(self, summary: dict[str, Any], figures: list[Path]) -> None:
        _soft("finishing the logger", self._m.finish, summary, figures)


def run(cfg: Config, out_dir: Path, group: str | None = None, config_yaml: str | None = None) -> dict[str, Any]:
    """Train cfg's seeds and write config.yaml (`config_yaml`, else nothing), metrics.jsonl
    (probes.jsonl with probes), summary.json and the figures to out_dir (mirrored to the configured
    logger; `group` names the sweep the run belongs to).

    The run directory contract (dlf.drive.rundir): out_dir is locked for this process, a run of
    another configuration there is refused before anything is written, a finished run of this
    configuration is not trained again, and an unfinished one resumes from its newest readable
    checkpoint. summary.json says `running` while the run is live and is written last. On SIGTERM
    or SIGUSR2 the run finishes its current chunk, checkpoints, records `interrupted` and hands the
    signal on (submitit requeues the job; otherwise the process exits with 128 + signal)."""
    out_dir = Path(out_dir)
    return rundir.execute(out_dir, to_dict(cfg), config_yaml, lambda stop: _train(cfg, out_dir, group, stop))


def _unit_of(row: dict[str, Any]) -> int:
    return row.get("epoch", row["step"])


def _kept_rows(path: Path, start: int, log_every: int) -> list[dict[str, Any]] | None:
    """The metrics rows up to the checkpoint at `start` (one per log point: a truncated last line
    or rows written after the checkpoint are dropped), or None if some are missing."""
    rows = outputs.read_jsonl(path) if path.exists() else []
    by_unit = {_unit_of(r): r for r in rows if _unit_of(r) <= start}
    if any(u not in by_unit for u in range(0, start, log_every)):
        return None
    return [by_unit[u] for u in sorted(by_unit)]


def _fault(unit: int) -> None:
    """Fault injection for the tests: DLF_FAULT_SIGKILL_AFTER_EPOCH=<unit> (kill -9 after that
    chunk) or DLF_FAULT_SIGNAL=<unit>:<TERM|USR2> (send that signal to this process)."""
    if unit == int(os.environ.get("DLF_FAULT_SIGKILL_AFTER_EPOCH", -1)):
        os.kill(os.getpid(), signal.SIGKILL)
    at, _, name = os.environ.get("DLF_FAULT_SIGNAL", "").partition(":")
    if at and unit == int(at):
        os.kill(os.getpid(), getattr(signal, f"SIG{name or 'TERM'}"))


def _train(cfg: Config, out_dir: Path, group: str | None, stop: rundir.Preemption) -> dict[str, Any]:
    t_start = time.perf_counter()
    _soft("the compilation cache", use_compile_cache, cfg.compile_cache)
    use_matmul_precision(cfg.matmul_precision)
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg)
        vmap_size = runs_vectorised(cfg, b.program)
        steps, spe = cfg.total_steps(b.n_train), cfg.steps_per_epoch(b.n_train)
        units = cfg.train.epochs if cfg.epoch_run else steps
        unit_name = "epoch" if cfg.epoch_run else "step"
        log.info("dlf: %d seed(s) x %d %s (%d steps), A=%g T=%d shape=%s, %s, %s %s, %s step, vmap_size=%s -> %s",
                 cfg.seeds, units, "epochs" if cfg.epoch_run else "steps", steps, cfg.schedule.A, cfg.schedule.T,
                 cfg.schedule.shape, cfg.precision, cfg.dataset.name, cfg.model.name,
                 "fused" if b.program.loss_grad else "generic", vmap_size or "all", out_dir)
        every = cfg.checkpoint.every_epochs if cfg.epoch_run else cfg.checkpoint.every_steps
        can_resume = not b.program.probes  # the per-step F of a probe run lives in memory only
        ckpt: list = []  # the Checkpoints, opened on first use

        def checkpoints():
            if not ckpt:
                from dlf.drive.checkpoint import Checkpoints

                ckpt.append(Checkpoints(out_dir / "checkpoints", cfg.checkpoint.keep, to_dict(cfg)))
            return ckpt[0]

        start, states = 0, b.states
        rows: list[dict[str, Any]] = []
        if can_resume and (out_dir / "checkpoints").is_dir() and (got := checkpoints().restore(b.states)):
            kept = _kept_rows(out_dir / "metrics.jsonl", got[0], cfg.train.log_every)
            if kept is None:
                log.warning("dlf: metrics.jsonl lacks rows before the checkpoint at %s %d; training again "
                            "from the start", unit_name, got[0])
            else:
                (start, states), rows = got, kept
                log.info("dlf: resuming from the checkpoint at %s %d (%s)", unit_name, start, checkpoints().dir)
        writer = outputs.JsonlWriter(out_dir / "metrics.jsonl")
        for row in rows:
            writer.write(row)
        probe_writer = outputs.JsonlWriter(out_dir / "probes.jsonl") if b.program.probes else None
        probe_rows: list[dict[str, Any]] = []
        progress = Progress(steps, epochs=cfg.train.epochs if cfg.epoch_run else None,
                            batch_size=cfg.train.batch_size if cfg.epoch_run else None)
        progress.expect(warn_if_slow(cfg, b.states.params, b.n_train, int(b.data.x_val.shape[0]),
                                     jax.default_backend()))
        mirror = _SoftMirror(cfg, out_dir, group)
        for row in rows:
            mirror.log_row(row)
        traces: list[np.ndarray] = []  # per-step F of each chunk (runs with probes)
        probe_names = {n for p in b.program.probes for n in _probe_value_names(p.name)}

        def on_metrics(u: int, out: dict[str, np.ndarray]) -> None:
            if "loss_trace" in out:
                traces.append(out.pop("loss_trace"))
            values = {k: v for k, v in out.items() if k in probe_names}
            if values:
                row = outputs.metrics_row(u * spe, {**values, "diverged_step": out["diverged_step"]})
                probe_rows.append(row)
                probe_writer.write(row)
            if "loss" not in out or (rows and u <= _unit_of(rows[-1])):
                return  # no metrics due here, or the resumed run's first row is already in metrics.jsonl
            metrics = {k: v for k, v in out.items() if k not in probe_names}
            row = outputs.metrics_row(u * spe, metrics, epoch=u if cfg.epoch_run else None)
            rows.append(row)
            writer.write(row)
            mirror.log_row(row)
            progress(row)

        stopped_at: list[int] = []

        def after_chunk(u: int, states) -> bool:
            if every and can_resume and (u % every == 0 or u == units):
                checkpoints().save(u, states)
            _fault(u)
            if stop.signum is not None and u < units:
                if can_resume:
                    checkpoints().save(u, states)
                stopped_at.append(u)
                return True  # the engine stops after this chunk (its metrics are still written)
            return False

        compiled = Compiled(b.program, states, b.hp, b.data, units, cfg.train.log_every, vmap_size=vmap_size,
                            extra_bounds=tuple(range(every, units, every)) if every and can_resume else ())
        try:
            states, train_s = compiled(states, b.hp, b.data, on_metrics, start=start, after_chunk=after_chunk,
                                       flush_at=lambda u: bool(every and can_resume and (u % every == 0 or u == units)))
        finally:
            progress.close()
        timing = Timing(compile_s=compiled.compile_s, train_s=train_s)
        diverged_step = np.asarray(jax.device_get(states.diverged_step))
        gamma_dense = np.asarray(gamma(jnp.arange(steps + 1), b.hp.A, b.hp.T, cfg.dataset.classes,
                                       cfg.schedule.shape, b.hp.off_step, b.program.loss_dtype(b.data)))
    writer.close()
    if probe_writer:
        probe_writer.close()
    if ckpt:
        ckpt[0].close()
    if stopped_at:
        summary = {"status": "interrupted", "signal": signal.Signals(stop.signum).name, unit_name: stopped_at[0],
                   "checkpoint": stopped_at[0] if can_resume else None, "wall_s": time.perf_counter() - t_start,
                   "git_sha": outputs.git_sha(), "config": to_dict(cfg)}
        outputs.write_json(out_dir / "summary.json", summary)
        mirror.finish(summary, [])
        log.warning("dlf: interrupted by %s at %s %d; %s", summary["signal"], unit_name, stopped_at[0],
                    "checkpointed: the same command resumes" if can_resume else
                    "runs with probes do not checkpoint: the same command starts again")
        return summary
    summary = report.summarize(cfg, b.seeds, rows, diverged_step, timing, time.perf_counter() - t_start,
                               steps, (units - start) * (spe if cfg.epoch_run else 1))
    figures = [out_dir / "dynamics.png"] if _soft("the dynamics figure", report.dynamics_figure, cfg, out_dir,
                                                  rows, gamma_dense, b.n_train) else []
    if b.program.probes:
        thr = report.probe_outputs(cfg, out_dir, rows, probe_rows, np.concatenate(traces, axis=1), b.seeds,
                                   gamma_dense, figures)
        if thr is not None:
            summary["threshold"] = thr
    outputs.write_json(out_dir / "summary.json", summary)  # last: a finished run is one with its summary
    mirror.finish(summary, figures)
    report.log_final(summary)
    return summary


def _probe_value_names(probe: str) -> tuple[str, ...]:
    from dlf.probes.evaluators import PROBES

    return PROBES[probe].names
