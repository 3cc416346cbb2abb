"""The run driver: train one config's seeds in one program (dlf.drive.build), stream metrics and
probe rows to disk, then hand over to dlf.drive.report."""
from __future__ import annotations

import json
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
from dlf.drive import report
from dlf.drive.build import build, runs_vectorised
from dlf.drive.progress import Progress, warn_if_slow
from dlf.tracking.mirror import open_mirror

log = logging.getLogger("dlf")


def use_compile_cache(path: str | None) -> None:
    """Point JAX's persistent compilation cache at `path` (shared by the jobs of a sweep). The
    thresholds are lowered so that the many small one-off compilations are cached too."""
    if not path:
        return
    Path(path).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def use_matmul_precision(precision: str) -> None:
    """Set jax_default_matmul_precision from the `matmul_precision` key ("default" = JAX's own
    choice, which on NVIDIA GPUs may be TF32 for float32; "highest" = true float32)."""
    jax.config.update("jax_default_matmul_precision", None if precision == "default" else precision)


def _finished(out_dir: Path) -> dict | None:
    f = out_dir / "summary.json"
    if f.exists():
        s = json.loads(f.read_text())
        if s.get("status") in ("ok", "diverged"):
            return s
    return None


def run(cfg: Config, out_dir: Path, group: str | None = None) -> dict[str, Any]:
    """Train cfg's seeds and write metrics.jsonl (probes.jsonl with probes), summary.json and the
    figures to out_dir (mirrored to the configured logger; `group` names the sweep the run belongs
    to). A mini-batch run with checkpoints resumes from the newest checkpoint in out_dir, and a
    finished one is not trained again."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_on = cfg.epoch_run and cfg.checkpoint.every_epochs > 0
    if ckpt_on and (done := _finished(out_dir)):
        log.info("dlf: %s already holds a finished run (summary.json, status %s); nothing to do. Give "
                 "hydra.run.dir=... to train again.", out_dir, done["status"])
        return done
    use_compile_cache(cfg.compile_cache)
    use_matmul_precision(cfg.matmul_precision)
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg)
        vmap_size = runs_vectorised(cfg, b.program)
        steps, spe = cfg.total_steps(b.n_train), cfg.steps_per_epoch(b.n_train)
        units = cfg.train.epochs if cfg.epoch_run else steps
        log.info("dlf: %d seed(s) x %d %s (%d steps), A=%g T=%d shape=%s, %s, %s %s, %s step, vmap_size=%s -> %s",
                 cfg.seeds, units, "epochs" if cfg.epoch_run else "steps", steps, cfg.schedule.A, cfg.schedule.T,
                 cfg.schedule.shape, cfg.precision, cfg.dataset.name, cfg.model.name,
                 "fused" if b.program.loss_grad else "generic", vmap_size or "all", out_dir)
        ckpt, start, states = None, 0, b.states
        rows: list[dict[str, Any]] = []
        if ckpt_on:
            from dlf.drive.checkpoint import Checkpoints

            ckpt = Checkpoints(out_dir / "checkpoints", cfg.checkpoint.keep, to_dict(cfg))
            if ckpt.latest() is not None:
                start, states = ckpt.restore(b.states)
                rows = [r for r in outputs.read_jsonl(out_dir / "metrics.jsonl") if r["epoch"] <= start]
                log.info("dlf: resuming from the checkpoint at epoch %d (%s)", start, ckpt.dir)
        writer = outputs.JsonlWriter(out_dir / "metrics.jsonl")
        for row in rows:
            writer.write(row)
        probe_writer = outputs.JsonlWriter(out_dir / "probes.jsonl") if b.program.probes else None
        probe_rows: list[dict[str, Any]] = []
        progress = Progress(steps, epochs=cfg.train.epochs if cfg.epoch_run else None,
                            batch_size=cfg.train.batch_size if cfg.epoch_run else None)
        progress.expect(warn_if_slow(cfg, b.states.params, b.n_train, int(b.data.x_val.shape[0]),
                                     jax.default_backend()))
        mirror = open_mirror(cfg, out_dir, group)
        for row in rows:  # resumed: the kept rows again (a killed attempt's W&B file may lack them)
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
            if "loss" not in out or (rows and u <= rows[-1].get("epoch", rows[-1]["step"])):
                return  # no metrics due here, or the resumed run's first row is already in metrics.jsonl
            metrics = {k: v for k, v in out.items() if k not in probe_names}
            row = outputs.metrics_row(u * spe, metrics, epoch=u if cfg.epoch_run else None)
            rows.append(row)
            writer.write(row)
            mirror.log_row(row)
            progress(row)

        kill_at = int(os.environ.get("DLF_FAULT_SIGKILL_AFTER_EPOCH", -1))  # fault injection (tests)

        def after_chunk(u: int, states) -> None:
            if u % cfg.checkpoint.every_epochs == 0 or u == units:
                ckpt.save(u, states)
            if u == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        every = cfg.checkpoint.every_epochs if ckpt_on else 0
        compiled = Compiled(b.program, states, b.hp, b.data, units, cfg.train.log_every, vmap_size=vmap_size,
                            extra_bounds=tuple(range(every, units, every)) if every else ())
        try:
            states, train_s = compiled(states, b.hp, b.data, on_metrics, start=start,
                                       after_chunk=after_chunk if ckpt else None)
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
        ckpt.close()
    summary = report.summarize(cfg, b.seeds, rows, diverged_step, timing, time.perf_counter() - t_start,
                               steps, (units - start) * (spe if cfg.epoch_run else 1))
    figures = [out_dir / "dynamics.png"]
    if b.program.probes:
        thr = report.probe_outputs(cfg, out_dir, rows, probe_rows, np.concatenate(traces, axis=1), b.seeds,
                                   gamma_dense, figures)
        if thr is not None:
            summary["threshold"] = thr
    outputs.write_json(out_dir / "summary.json", summary)
    report.dynamics_figure(cfg, out_dir, rows, gamma_dense, b.n_train)
    mirror.finish(summary, figures)
    report.log_final(summary)
    return summary


def _probe_value_names(probe: str) -> tuple[str, ...]:
    from dlf.probes.evaluators import PROBES

    return PROBES[probe].names
