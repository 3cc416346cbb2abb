"""The grid driver of `dlf.phase`: every (A, T, seed) of a grid in one compiled program, trained
`grid.chunk_runs` runs per call; writes phase.csv, runs.csv, phase.png and summary.json."""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import jax

from dlf import config as config_lib
from dlf import outputs
from dlf.analysis import results
from dlf.analysis.phase_table import Record, best, describe, table, write_csv
from dlf.config import Config
from dlf.core.engine import Compiled, pad_runs
from dlf.drive.build import build, bytes_per_run, dtype_of, runs_vectorised, take
from dlf.drive.progress import GridProgress
from dlf.drive.run import use_compile_cache, use_matmul_precision
from dlf.errors import ConfigError
from dlf.figures.phase import plot

log = logging.getLogger("dlf")


def points(cfg: Config) -> list[tuple[float, int]]:
    """The grid's (A, T) points, A-major; a missing axis is the schedule's single value."""
    As = cfg.grid.A or (cfg.schedule.A,)
    Ts = cfg.grid.T or (cfg.schedule.T,)
    return [(float(A), int(T)) for A in As for T in Ts]


def check(cfg: Config) -> None:
    """Cross-checks of a grid that the per-key validation cannot see."""
    if cfg.epoch_run:
        raise ConfigError("train.batch_size is not allowed in dlf.phase; expected null (full-batch "
                          "runs; sweep mini-batch runs with python -m dlf.train -m)")
    if cfg.schedule.shape == "static" and any(A != 1.0 for A, _ in points(cfg)):
        raise ConfigError("grid.A is not allowed with schedule.shape=static; expected 1 (or unset)")
    for key, vals in (("grid.A", cfg.grid.A or ()), ("grid.T", cfg.grid.T or ())):
        if len(set(vals)) != len(vals):
            raise ConfigError(f"{key}={list(vals)} is not allowed; expected distinct values")
    for T in {T for _, T in points(cfg)}:  # the oscillation stop, validated once per period
        config_lib.replace(cfg, schedule=dict(T=T))


def chunk_runs(cfg: Config, n_runs: int, n_dev: int, bytes_per_run: int, backend: str) -> int:
    """Runs per compiled call: grid.chunk_runs, else as many as fit in half the free memory
    (and on CPU one grid point per call, so that progress is reported per point), rounded to a
    multiple of the device count."""
    if cfg.grid.chunk_runs:
        n = cfg.grid.chunk_runs
    else:
        n = max(1, _free_bytes() // 2 // max(1, bytes_per_run))
        if backend == "cpu":
            n = min(n, cfg.seeds)
    n = min(n, n_runs)
    return -(-n // n_dev) * n_dev


def _free_bytes() -> int:
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def title(cfg: Config) -> str:
    from dlf.models import MODELS

    return (f"{cfg.dataset.name} {MODELS[cfg.model.name].describe(cfg.model)}, lr {cfg.optimizer.lr:g}, "
            f"{cfg.schedule.shape}: {cfg.seeds} seeds, {cfg.train.steps} steps")


def run_phase(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """Train every (A, T, seed) of cfg's grid and write the phase-diagram directory."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    use_compile_cache(cfg.compile_cache)
    use_matmul_precision(cfg.matmul_precision)
    grid = points(cfg)
    steps = cfg.train.steps
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg, grid)
        vmap_size = runs_vectorised(cfg, b.program)
        runs = b.runs  # point-major: a chunk holds whole points
        n_dev = min(len(jax.local_devices()), len(runs))
        size = chunk_runs(cfg, len(runs), n_dev, bytes_per_run(b, dtype_of(cfg)), jax.default_backend())
        n_chunks = math.ceil(len(runs) / size)

        def chunk(i: int):
            lo, hi = i * size, min((i + 1) * size, len(runs))
            return hi - lo, pad_runs(take(b.states, lo, hi), size), pad_runs(take(b.hp, lo, hi), size)

        _, states0, hp0 = chunk(0)
        log.info("dlf.phase: %d points x %d seeds = %d runs x %d steps, %s, %s, %d chunk(s) of %d runs on "
                 "%d %s device(s), %s step, vmap_size=%s -> %s", len(grid), cfg.seeds, len(runs), steps,
                 cfg.precision, title(cfg), n_chunks, size, n_dev, jax.default_backend(),
                 "fused" if b.program.loss_grad else "generic", vmap_size or "all", out_dir)
        compiled = Compiled(b.program, states0, hp0, b.data, steps, cfg.train.log_every, hp_axis=0,
                            vmap_size=vmap_size)
        log.info("dlf.phase: compiled in %.1f s", compiled.compile_s)
        final: list[dict] = []
        train_s = 0.0
        progress = GridProgress(len(grid), len(runs), steps, n_chunks)
        for i in range(n_chunks):
            n, states, hp = chunk(i) if i else (min(size, len(runs)), states0, hp0)
            last: dict = {}

            def on_metrics(step, m, i=i):
                last.update(m)
                progress.step(i, step)

            _, dt = compiled(states, hp, b.data, on_metrics)
            train_s += dt
            for j in range(n):
                r = runs[i * size + j]
                dead = bool(last["diverged_step"][j] >= 0)
                final.append(dict(A=r.A, T=r.T, seed=r.seed, train_acc=None if dead else float(last["train_acc"][j]),
                                  val_acc=None if dead else float(last["val_acc"][j]),
                                  loss=None if dead else float(last["loss"][j]),
                                  diverged_step=int(last["diverged_step"][j])))
            progress.chunk_done(i, n, train_s)

    records = [Record(r["A"], r["T"], r["seed"], r["train_acc"], r["val_acc"], r["diverged_step"] >= 0)
               for r in final]
    rows = table(records)
    results.write_runs_csv(out_dir / "runs.csv", final)
    write_csv(out_dir / "phase.csv", rows)
    plot(out_dir / "phase.png", rows, title(cfg))
    summary = {
        "status": "ok",
        "points": len(grid),
        "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)),
        "runs": len(runs),
        "steps": steps,
        "diverged_runs": sum(r.diverged for r in records),
        "best": best(rows),
        "chunk_runs": size,
        "chunks": n_chunks,
        "devices": n_dev,
        "backend": jax.default_backend(),
        "wall_s": time.perf_counter() - t_start,
        "compile_s": compiled.compile_s,
        "train_s": train_s,
        "run_steps_per_s": len(runs) * steps / train_s,
        "git_sha": outputs.git_sha(),
        "config": config_lib.to_dict(cfg),
    }
    outputs.write_json(out_dir / "summary.json", summary)
    log.info("dlf.phase: %s | %.1f s (compile %.1f s), %.0f run-steps/s", describe(rows),
             summary["wall_s"], summary["compile_s"], summary["run_steps_per_s"])
    return summary
