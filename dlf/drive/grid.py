"""The grid driver of `dlf.phase`: every (A, T, seed) of a grid in one compiled program, trained
`grid.chunk_runs` runs per call; writes phase.csv, runs.csv, phase.png and summary.json."""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from dlf import config as config_lib
from dlf import outputs
from dlf.analysis import results
from dlf.analysis.phase_table import Record, best, describe, table, write_csv
from dlf.config import Config
from dlf.core.engine import Compiled, pad_runs
from dlf.drive import rundir
from dlf.drive.build import build, bytes_per_run, dtype_of, runs_vectorised
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


def shard_points(cfg: Config) -> list[tuple[float, int]]:
    """The points this job trains: all, or every grid.shards-th from grid.shard on."""
    grid = points(cfg)
    return grid if cfg.grid.shard is None else grid[cfg.grid.shard::cfg.grid.shards]


def merge(root: Path) -> dict[str, Any]:
    """Merge the shard_*/ directories of a sharded grid into root: runs.csv, phase.csv, phase.png
    and summary.json as a one-process grid writes them. Refused while a shard is not finished."""
    root = Path(root)
    shards = sorted(root.glob("shard_*/summary.json"))
    if not shards:
        raise ConfigError(f"{root} holds no shard_*/ of a sharded dlf.phase grid")
    summaries = [rundir.read_summary(s.parent) or {} for s in shards]
    cfg = config_lib.replace(config_lib.from_dict(summaries[0]["config"]), grid=dict(shard=None))
    if len(shards) != cfg.grid.shards or any(s.get("status") != "ok" for s in summaries):
        state = ", ".join(f"{p.parent.name}: {s.get('status')}" for p, s in zip(shards, summaries))
        raise ConfigError(f"{root}: {len(shards)} of {cfg.grid.shards} shards, not all finished ({state}); "
                          "rerun the same command to finish them")
    done = {(r["A"], r["T"], r["seed"]): r for p in shards for r in results.read_runs_csv(p.parent / "runs.csv")}
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    final = [done[A, T, s] for A, T in points(cfg) for s in seeds]
    records = [Record(r["A"], r["T"], r["seed"], r["train_acc"], r["val_acc"], r["diverged_step"] >= 0)
               for r in final]
    rows = table(records)
    results.write_runs_csv(root / "runs.csv", final)
    write_csv(root / "phase.csv", rows)
    plot(root / "phase.png", rows, title(cfg))
    summary = {"status": "ok", "points": len(points(cfg)), "seeds": list(seeds), "runs": len(final),
               "steps": cfg.train.steps, "diverged_runs": sum(r.diverged for r in records), "best": best(rows),
               "shards": len(shards), "git_sha": outputs.git_sha(), "config": config_lib.to_dict(cfg)}
    outputs.write_json(root / "summary.json", summary)
    log.info("dlf.phase: merged %d shards into %s: %s", len(shards), root, describe(rows))
    return summary


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
    if cfg.grid.shard is not None and cfg.grid.shard >= cfg.grid.shards:
        raise ConfigError(f"grid.shard={cfg.grid.shard} is not allowed; expected < grid.shards={cfg.grid.shards}")
    if cfg.grid.shards > len(points(cfg)):
        raise ConfigError(f"grid.shards={cfg.grid.shards} is not allowed; expected <= {len(points(cfg))}, the "
                          "number of grid points")
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


def _done(path: Path) -> dict[tuple, dict]:
    """The runs a killed or interrupted grid already finished: (A, T, seed) -> runs.csv row."""
    if not path.exists():
        return {}
    import json

    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut short by a kill: that run is trained again
            log.warning("dlf.phase: %s: dropped a line cut short", path.name)
    return {(r["A"], r["T"], r["seed"]): r for r in rows}


def run_phase(cfg: Config, out_dir: Path, config_yaml: str | None = None) -> dict[str, Any]:
    """Train every (A, T, seed) of cfg's grid and write the phase-diagram directory. The directory
    follows the run-directory contract (dlf.drive.rundir); each finished chunk's runs are appended
    to runs.partial.jsonl, so the same command after a kill trains only the runs not there, and
    SIGTERM/SIGUSR2 stop the grid after the current chunk with `status: interrupted`."""
    out_dir = Path(out_dir)
    return rundir.execute(out_dir, config_lib.to_dict(cfg), config_yaml, lambda stop: _train_grid(cfg, out_dir, stop),
                          "dlf.phase")


def _train_grid(cfg: Config, out_dir: Path, stop: rundir.Preemption) -> dict[str, Any]:
    t_start = time.perf_counter()
    use_compile_cache(cfg.compile_cache)
    use_matmul_precision(cfg.matmul_precision)
    grid = shard_points(cfg)
    steps = cfg.train.steps
    partial = out_dir / "runs.partial.jsonl"
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg, grid)
        vmap_size = runs_vectorised(cfg, b.program)
        runs = b.runs  # point-major: a chunk holds whole points
        done = _done(partial)
        todo = [i for i, r in enumerate(runs) if (r.A, r.T, r.seed) not in done]
        if done:
            log.info("dlf.phase: %d of %d runs finished before (%s); training the other %d", len(runs) - len(todo),
                     len(runs), partial.name, len(todo))
        n_dev = min(len(jax.local_devices()), len(runs))
        size = chunk_runs(cfg, len(runs), n_dev, bytes_per_run(b, dtype_of(cfg)), jax.default_backend())
        n_chunks = math.ceil(len(todo) / size)

        def chunk(i: int):
            idx = jnp.asarray(todo[i * size:(i + 1) * size])
            pick = lambda tree: jax.tree.map(lambda x: x[idx], tree)  # noqa: E731
            return len(idx), pad_runs(pick(b.states), size), pad_runs(pick(b.hp), size)

        log.info("dlf.phase: %d points x %d seeds = %d runs x %d steps, %s, %s, %d chunk(s) of %d runs on "
                 "%d %s device(s), %s step, vmap_size=%s -> %s", len(grid), cfg.seeds, len(runs), steps,
                 cfg.precision, title(cfg), n_chunks, size, n_dev, jax.default_backend(),
                 "fused" if b.program.loss_grad else "generic", vmap_size or "all", out_dir)
        compile_s, train_s = 0.0, 0.0
        progress = GridProgress(len(grid), len(todo), steps, n_chunks)
        with outputs.JsonlWriter(partial, append=True) as writer:
            for i in range(n_chunks):
                n, states, hp = chunk(i)
                if i == 0:
                    compiled = Compiled(b.program, states, hp, b.data, steps, cfg.train.log_every, hp_axis=0,
                                        vmap_size=vmap_size)
                    compile_s = compiled.compile_s
                    log.info("dlf.phase: compiled in %.1f s", compile_s)
                last: dict = {}

                def on_metrics(step, m, i=i):
                    last.update(m)
                    progress.step(i, step)

                _, dt = compiled(states, hp, b.data, on_metrics)
                train_s += dt
                for j in range(n):
                    r = runs[todo[i * size + j]]
                    dead = bool(last["diverged_step"][j] >= 0)
                    row = dict(A=r.A, T=r.T, seed=r.seed, train_acc=None if dead else float(last["train_acc"][j]),
                               val_acc=None if dead else float(last["val_acc"][j]),
                               loss=None if dead else float(last["loss"][j]),
                               diverged_step=int(last["diverged_step"][j]))
                    done[r.A, r.T, r.seed] = row
                    writer.write(row)
                progress.chunk_done(i, n, train_s)
                if os.environ.get("DLF_FAULT_SIGKILL_AFTER_CHUNK") == str(i):  # fault injection (tests)
                    os.kill(os.getpid(), signal.SIGKILL)
                if os.environ.get("DLF_FAULT_SIGNAL_AFTER_CHUNK") == str(i):
                    os.kill(os.getpid(), signal.SIGTERM)
                if stop.signum is not None and i < n_chunks - 1:
                    summary = {"status": "interrupted", "signal": signal.Signals(stop.signum).name,
                               "runs_done": len(done), "runs": len(runs), "config": config_lib.to_dict(cfg)}
                    outputs.write_json(out_dir / "summary.json", summary)
                    log.warning("dlf.phase: interrupted by %s with %d of %d runs done (%s); the same command "
                                "goes on", summary["signal"], len(done), len(runs), partial.name)
                    return summary

    final = [done[r.A, r.T, r.seed] for r in runs]
    records = [Record(r["A"], r["T"], r["seed"], r["train_acc"], r["val_acc"], r["diverged_step"] >= 0)
               for r in final]
    rows = table(records)
    results.write_runs_csv(out_dir / "runs.csv", final)
    write_csv(out_dir / "phase.csv", rows)
    try:
        plot(out_dir / "phase.png", rows, title(cfg))
    except Exception as e:  # noqa: BLE001 - a picture of the results; never the results themselves
        log.warning("dlf.phase: the phase figure failed (%s: %s); the results are kept", type(e).__name__, e)
    summary = {
        "status": "ok",
        "points": len(grid),
        "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)),
        "runs": len(runs),
        "steps": steps,
        "diverged_runs": sum(r.diverged for r in records),
        "best": best(rows),
        "chunk_runs": size,
        "step": "fused" if b.program.loss_grad else "generic",
        "vmap_size": vmap_size,
        "chunks": n_chunks,
        "devices": n_dev,
        "backend": jax.default_backend(),
        "wall_s": time.perf_counter() - t_start,
        "compile_s": compile_s,
        "train_s": train_s,
        "run_steps_per_s": len(todo) * steps / train_s if train_s else None,
        "git_sha": outputs.git_sha(),
        "config": config_lib.to_dict(cfg),
    }
    outputs.write_json(out_dir / "summary.json", summary)  # last
    log.info("dlf.phase: %s | %.1f s (compile %.1f s), %s run-steps/s", describe(rows),
             summary["wall_s"], summary["compile_s"], f"{summary['run_steps_per_s']:.0f}" if train_s else "-")
    return summary
