"""The run loop: train one config's seeds in one program, chunk by chunk, streaming metrics (and
probe) rows to disk; setup, signals, faults and the summary are the session's (dlf.drive.session)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlf import outputs
from dlf.config import Config
from dlf.core.engine import Compiled, Timing
from dlf.drive import report
from dlf.drive.progress import Progress, slow_notice, warn_if_slow
from dlf.drive.session import Session, soft
from dlf.errors import ConfigError

log = logging.getLogger("dlf")


def run(cfg: Config, out_dir: Path, group: str | None = None, config_yaml: str | None = None) -> dict[str, Any]:
    """Train cfg's seeds and write config.yaml (`config_yaml`, else nothing), metrics.jsonl
    (probes.jsonl with probes), summary.json and the figures to out_dir (mirrored to the configured
    logger; `group` names the sweep the run belongs to).

    The run directory contract (dlf.drive.rundir): out_dir is locked for this process, a run of
    another configuration there is refused before anything is written, a finished run of this
    configuration is not trained again, and an unfinished one resumes from its newest readable
    checkpoint. summary.json says `running` while the run is live and is written last. On SIGTERM,
    SIGUSR2, SIGINT or SIGHUP the run finishes its current chunk, checkpoints, records `interrupted` and hands the
    signal on (submitit requeues the job; otherwise the process exits with 128 + signal)."""
    return Session(cfg, out_dir, "dlf", config_yaml).execute(lambda s: _train(s, group))


def _unit_of(row: dict[str, Any]) -> int:
    return row.get("epoch", row["step"])


def _kept_rows(path: Path, start: int, log_every: int) -> list[dict[str, Any]] | None:
    """The metrics rows up to the checkpoint at `start` (one per log point: a truncated last line
    or rows written after the checkpoint are dropped), or None if some are missing or a line is
    not a metrics row (then the run trains again from the start: the rows cannot be trusted)."""
    try:
        rows = outputs.read_jsonl(path) if path.exists() else []
        if not all(isinstance(r, dict) and isinstance(r.get("step"), int) for r in rows):
            raise ValueError("a line that is not a metrics row")
    except ValueError as e:
        log.warning("dlf: %s cannot be read (%s)", path, str(e).splitlines()[0])
        return None
    by_unit = {_unit_of(r): r for r in rows if _unit_of(r) <= start}
    if any(u not in by_unit for u in range(0, start, log_every)):
        return None
    return [by_unit[u] for u in sorted(by_unit)]


def _segments(cfg: Config, where: Path, unit: int, old: list[dict], now: dict) -> list[dict]:
    """The code segments of a run resumed at `unit` from the checkpoint `where` written with `old`
    segments: the same source goes on in the last segment; other source is refused (one line)
    unless checkpoint.allow_other_code, which starts a new segment."""
    last = old[-1] if isinstance(old[-1], dict) else {}
    if last.get("source") == now["source"]:
        return old
    if not cfg.checkpoint.allow_other_code:
        raise ConfigError(f"{where} was written by other dlf source (source {last.get('source')}, git "
                          f"{last.get('git_sha')}; this is {now['source']}, git {now['git_sha']}); resume with that "
                          "code, give checkpoint.allow_other_code=true to go on under this one (each segment's code "
                          "is recorded in summary.json), or hydra.run.dir=... to start over")
    log.warning("dlf: resuming under other dlf source than wrote %s (checkpoint.allow_other_code=true); "
                "summary.json records each segment's code", where)
    return [*old, {**now, "from": unit}]


class _Checkpoints:
    """The run's checkpoints, opened on first use (orbax is imported only by runs that checkpoint)."""

    def __init__(self, cfg: Config, out_dir: Path):
        self.dir, self.cfg, self._c = out_dir / "checkpoints", cfg, None

    def __call__(self):
        if self._c is None:
            from dlf.drive.checkpoint import Checkpoints

            self._c = Checkpoints(self.dir, self.cfg.checkpoint.keep, self.cfg)
        return self._c

    def close(self) -> None:
        if self._c is not None:
            self._c.close()


def _train(s: Session, group: str | None) -> dict[str, Any]:
    cfg, out_dir = s.cfg, s.out_dir
    b, vmap_size = s.build()
    steps, spe = cfg.total_steps(b.n_train), cfg.steps_per_epoch(b.n_train)
    units = cfg.train.epochs if cfg.epoch_run else steps
    unit_name = "epoch" if cfg.epoch_run else "step"
    log.info("dlf: %d seed(s) x %d %s (%d steps), A=%g T=%d shape=%s, %s, %s %s, %s step, vmap_size=%s -> %s",
             cfg.seeds, units, "epochs" if cfg.epoch_run else "steps", steps, cfg.schedule.A, cfg.schedule.T,
             cfg.schedule.shape, cfg.precision, cfg.dataset.name, cfg.model.name, b.step_name,
             vmap_size or "all", out_dir)
    every = cfg.checkpoint.every_epochs if cfg.epoch_run else cfg.checkpoint.every_steps
    can_resume = not b.program.probes  # the per-step F of a probe run lives in memory only
    checkpoints = _Checkpoints(cfg, out_dir)

    start, states = 0, b.states
    rows: list[dict[str, Any]] = []
    segments = [{"from": 0, **outputs.code_version()}]  # the code of each stretch of the run
    if can_resume and checkpoints.dir.is_dir() and (got := checkpoints().restore(b.states)):
        kept = _kept_rows(out_dir / "metrics.jsonl", got[0], cfg.train.log_every)
        if kept is None:
            log.warning("dlf: metrics.jsonl lacks rows before the checkpoint at %s %d; training again "
                        "from the start", unit_name, got[0])
            checkpoints().clear()
        else:
            segments = _segments(cfg, checkpoints().dir / str(got[0]), got[0], got[2]["segments"], segments[0])
            start, states, _ = got
            rows = kept
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
    mirror = s.mirror(group)
    for row in rows:
        mirror.log_row(row)
    traces: list[np.ndarray] = []  # per-step F of each chunk (runs with probes)
    probe_names = set(b.probe_value_names)

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

    def checkpoint_due(u: int) -> bool:
        return bool(every and can_resume and (u % every == 0 or u == units))

    stopped_at: list[int] = []

    def after_chunk(u: int, states) -> bool:
        if checkpoint_due(u):
            checkpoints().save(u, states, segments)
        if s.after_chunk(u) and u < units:
            if can_resume:
                checkpoints().save(u, states, segments)
            stopped_at.append(u)
            return True  # the engine stops after this chunk (its metrics are still written)
        return False

    with slow_notice("compiling the training program"):
        compiled = Compiled(b.program, states, b.hp, b.data, units, cfg.train.log_every, vmap_size=vmap_size,
                            extra_bounds=tuple(range(every, units, every)) if every and can_resume else ())
    try:
        states, train_s = compiled(states, b.hp, b.data, on_metrics, start=start, after_chunk=after_chunk,
                                   flush_at=checkpoint_due)
    finally:
        progress.close()
    diverged_step = np.asarray(jax.device_get(states.diverged_step))
    # Gamma_i(t) of every step, for the figures: one compiled call (op by op it compiles each primitive)
    gamma_of = jax.jit(lambda t, hp: b.program.schedule(t, hp, b.program.loss_dtype(b.data)))
    gamma_dense = np.asarray(gamma_of(jnp.arange(steps + 1), b.hp))
    writer.close()
    if probe_writer:
        probe_writer.close()
    checkpoints.close()
    if stopped_at:
        summary = s.interrupted({unit_name: stopped_at[0], "checkpoint": stopped_at[0] if can_resume else None},
                                f"at {unit_name} {stopped_at[0]}",
                                "checkpointed: the same command resumes" if can_resume else
                                "runs with probes do not checkpoint: the same command starts again")
        mirror.finish(summary, [])
        return summary
    timing = Timing(compile_s=compiled.compile_s, train_s=train_s)
    summary = report.summarize(cfg, b.seeds, rows, diverged_step, timing, steps,
                               (units - start) * (spe if cfg.epoch_run else 1))
    summary.update(step=b.step_name, vmap_size=vmap_size, code_segments=segments)
    for stale in ("dynamics.png", "probes.png"):  # an earlier attempt's figure (figures=false, or a failed
        (out_dir / stale).unlink(missing_ok=True)  # drawing) never stays beside these results
    drawn = cfg.figures and soft("the dynamics figure", report.dynamics_figure, cfg, out_dir, rows, gamma_dense,
                                 b.n_train, list(b.seeds))
    figures = [out_dir / "dynamics.png"] if drawn else []
    if b.program.probes:
        thr = report.probe_outputs(cfg, out_dir, rows, probe_rows, np.concatenate(traces, axis=1), b.seeds,
                                   gamma_dense, figures)
        if thr is not None:
            summary["threshold"] = thr
    summary = s.finish(summary)
    mirror.finish(summary, figures)
    report.log_final(summary)
    return summary

