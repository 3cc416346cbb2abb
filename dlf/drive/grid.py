"""The grid loop of `dlf.phase`: every (A, T, seed) of a grid in one compiled program, trained
`grid.chunk_runs` runs per call, resumable from runs.partial.jsonl, with its probes if any (per-run
series and thresholds: dlf.drive.grid_probes); the phase directory is written by
dlf.drive.phase_dir, setup, signals and faults are the session's (dlf.drive.session)."""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from dlf import config as config_lib
from dlf import outputs
from dlf.analysis import results
from dlf.config import Config
from dlf.core.engine import Compiled
from dlf.core.runs import pad_runs, take_runs
from dlf.drive import grid_probes, phase_dir, rundir
from dlf.drive.build import bytes_per_run, dtype_of
from dlf.drive.progress import GridProgress, slow_notice
from dlf.drive.session import Session
from dlf.errors import ConfigError

log = logging.getLogger("dlf")
PARTIAL = "runs.partial.jsonl"


def points(cfg: Config) -> list[tuple]:
    """The grid's (A, T, lr, steps) points, lr-major, then A, then T; a missing axis is the
    schedule's single value. lr and steps are None without grid.lr; with it, each lr's T (unless
    grid.T) and steps are the config's at that lr (grid.lr_T, grid.lr_steps: dlf.phase resolves them)."""
    As = cfg.grid.A or (cfg.schedule.A,)
    if not cfg.grid.lr:
        return [(float(A), int(T), None, None) for A in As for T in cfg.grid.T or (cfg.schedule.T,)]
    g = cfg.grid
    return [(float(A), int(T), float(lr), int(g.lr_steps[i] if g.lr_steps else cfg.train.steps))
            for i, lr in enumerate(g.lr) for A in As
            for T in g.T or (g.lr_T[i] if g.lr_T else cfg.schedule.T,)]


def run_key(row: dict) -> tuple:
    """A runs.csv (runs.partial.jsonl) row's key, as build.Run.key: (A, T, seed[, lr])."""
    lr = row.get("optimizer.lr")
    return (row["A"], row["T"], row["seed"]) if lr is None else (row["A"], row["T"], row["seed"], lr)


def cell_keys(cfg: Config) -> list[str]:
    """The keys beside (A, T) that define a grid's cells: optimizer.lr with grid.lr."""
    return ["optimizer.lr"] if cfg.grid.lr else []


def shard_points(cfg: Config) -> list[tuple]:
    """The points this job trains: all, or every grid.shards-th from grid.shard on."""
    grid = points(cfg)
    return grid if cfg.grid.shard is None else grid[cfg.grid.shard::cfg.grid.shards]


def check(cfg: Config) -> None:
    """Cross-checks of a grid that the per-key validation cannot see."""
    if cfg.epoch_run:
        raise ConfigError("train.batch_size is not allowed in dlf.phase; expected null (full-batch "
                          "runs; sweep mini-batch runs with python -m dlf.train -m)")
    if cfg.schedule.shape == "static" and any(A != 1.0 for A, *_ in points(cfg)):
        raise ConfigError("grid.A is not allowed with schedule.shape=static; expected 1 (or unset)")
    for key, vals in (("grid.A", cfg.grid.A or ()), ("grid.T", cfg.grid.T or ()), ("grid.lr", cfg.grid.lr or ())):
        if len(set(vals)) != len(vals):
            raise ConfigError(f"{key}={list(vals)} is not allowed; expected distinct values")
    if cfg.grid.lr and cfg.optimizer.lr_schedule != "constant":
        raise ConfigError(f"grid.lr is not allowed with optimizer.lr_schedule={cfg.optimizer.lr_schedule}; "
                          "expected constant (each run's updates are scaled by its lr)")
    if cfg.grid.shard is not None and cfg.grid.shard >= cfg.grid.shards:
        raise ConfigError(f"grid.shard={cfg.grid.shard} is not allowed; expected < grid.shards={cfg.grid.shards}")
    shortest = min(p[3] or cfg.train.steps for p in points(cfg))
    for name, p in cfg.probes.items():
        if p.every > shortest:
            raise ConfigError(f"probes.{name}.every={p.every} is not allowed; expected 0 (off) or <= "
                              f"train.steps={shortest} (a probe that never runs after step 0)")
    if cfg.probing and cfg.grid.shards > 1:
        raise ConfigError(f"grid.shards={cfg.grid.shards} is not allowed with probes on; expected 1 (a merge of "
                          "shards does not gather their probes/ series)")
    from dlf.analysis.compare import parse_baseline

    parse_baseline(cfg.stats.baseline, ["A", "T"])  # a key a grid's cells do not have: one line, now
    if cfg.grid.shards > len(points(cfg)):
        raise ConfigError(f"grid.shards={cfg.grid.shards} is not allowed; expected <= {len(points(cfg))}, the "
                          "number of grid points")


def merge(root: Path, n_shards: int | None = None) -> dict[str, Any]:
    """Merge shard_0/ .. shard_<n-1>/ of a grid split into n_shards (default: as shard_0 says)
    into root: runs.csv, phase.csv, phase.png and summary.json as a one-process grid writes them.
    Refused while one of them is not a finished shard of that plan; shard directories of an
    earlier plan with more shards are left out, with a line."""
    root = Path(root)
    first = rundir.read_summary(root / "shard_0")
    if not isinstance(first, dict) or not isinstance(first.get("config"), dict):
        raise ConfigError(f"{root} holds no finished shard_0/ of a sharded dlf.phase grid")
    cfg = config_lib.replace(config_lib.stored(first["config"]), grid=dict(shard=None))
    n = n_shards or cfg.grid.shards
    shards = [root / f"shard_{k}" / "summary.json" for k in range(n)]
    summaries = [rundir.read_summary(p.parent) for p in shards]
    summaries = [x if isinstance(x, dict) else {} for x in summaries]
    plan = [(x.get("config") or {}).get("grid", {}).get("shards") if isinstance(x.get("config"), dict) else None
            for x in summaries]
    if any(x.get("status") != "ok" for x in summaries) or any(p != n for p in plan):
        state = ", ".join(f"{p.parent.name}: {x.get('status', 'missing')}" + (f" (of {q} shards)" if q != n else "")
                          for p, x, q in zip(shards, summaries, plan))
        raise ConfigError(f"{root}: not all {n} shards finished ({state}); rerun the same command to finish them")
    stale = sorted(p.name for p in root.glob("shard_*") if p.name[6:].isdigit() and int(p.name[6:]) >= n)
    if stale:
        log.info("dlf.phase: %s left out of the merge (shards of an earlier plan; their runs were reused)",
                 ", ".join(stale))
    done = {k: r for p in shards for k, r in _done(p.parent / PARTIAL).items()}  # with each run's code
    done.update({run_key(r): {**r, "code": done.get(run_key(r), {}).get("code")}
                 for p in shards for r in results.read_runs_csv(p.parent / "runs.csv")})
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    final = [done[(A, T, s) if lr is None else (A, T, s, lr)] for A, T, lr, _ in points(cfg) for s in seeds]
    summary = phase_dir.write(root, final, phase_dir.title(cfg), {
        "status": "ok", "seeds": list(seeds), "steps": cfg.train.steps, "shards": len(shards),
        "code_segments": _code_segments(final), "git_sha": outputs.git_sha(), "config": config_lib.to_dict(cfg)},
        keys=cell_keys(cfg), baseline=cfg.stats.baseline, metric=cfg.stats.metric, figure=cfg.figures)
    log.info("dlf.phase: merged %d shards into %s: %s", len(shards), root, phase_dir.describe(root))
    return summary


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


def _done(path: Path) -> dict[tuple, dict]:
    """The runs a killed or interrupted grid already finished: (A, T, seed) -> runs.csv row (with
    the `code` that trained it)."""
    if not path.is_file():
        return {}
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            if not (isinstance(row, dict) and {"A", "T", "seed"} <= row.keys()):
                raise ValueError("not a run's row")
            rows.append(row)
        except ValueError:  # a line cut short by a kill, or not a run's row: that run is trained again
            log.warning("dlf.phase: %s line %d is not a finished run's row; dropped (its run trains again)", path, i)
    return {run_key(r): r for r in rows}


def _harvest(cfg: Config, out_dir: Path) -> dict[tuple, dict]:
    """A shard's finished runs: its own runs.partial.jsonl, then those of its sibling shard_*/
    directories that hold this configuration (a grid re-planned with another grid.shards keeps
    every run any earlier plan finished)."""
    done = _done(out_dir / PARTIAL)
    if cfg.grid.shard is None:
        return done
    for sib in sorted(out_dir.parent.glob("shard_*")):
        if sib == out_dir or not (sib / PARTIAL).is_file():
            continue
        try:
            old = rundir.stored_config(sib)
        except ConfigError:
            old = None
        if old is None or rundir.differing(old, cfg):
            log.warning("dlf.phase: %s holds another configuration; its runs are not used", sib)
            continue
        done = {**_done(sib / PARTIAL), **done}
    return done


def _code_of(row: dict) -> dict:
    """The code version a finished run's row records ({source, git_sha}; `unknown` before it was recorded)."""
    c = row.get("code")
    return c if isinstance(c, dict) else {"source": "unknown", "git_sha": "unknown"}


def _code_check(cfg: Config, partial: Path, done: dict[tuple, dict], now: dict[str, str]) -> None:
    """Finished runs of other dlf source are refused (one line) unless checkpoint.allow_other_code."""
    other = sorted({str(_code_of(r).get("source")) for r in done.values()} - {now["source"]})
    if not other:
        return
    if not cfg.checkpoint.allow_other_code:
        raise ConfigError(f"{partial} holds finished runs of other dlf source ({', '.join(other)}; this is "
                          f"{now['source']}, git {now['git_sha']}); go on with that code, give "
                          "checkpoint.allow_other_code=true to go on under this one (summary.json records the code of "
                          "every run), or hydra.run.dir=... to start over")
    log.warning("dlf.phase: going on under other dlf source than trained %d finished run(s) "
                "(checkpoint.allow_other_code=true); summary.json records the code of every run", len(done))


def _code_segments(final: list[dict]) -> list[dict]:
    """[{source, git_sha, runs}] over the runs of a grid, one entry per code version."""
    seen: dict[str, dict] = {}
    for r in final:
        c = _code_of(r)
        seen.setdefault(c.get("source"), {**c, "runs": 0})["runs"] += 1
    return list(seen.values())


def run_phase(cfg: Config, out_dir: Path, config_yaml: str | None = None) -> dict[str, Any]:
    """Train every (A, T, seed) of cfg's grid and write the phase-diagram directory. The directory
    follows the run-directory contract (dlf.drive.rundir); each finished chunk's runs are appended
    to runs.partial.jsonl, so the same command after a kill trains only the runs not there, and
    SIGTERM/SIGUSR2/SIGINT/SIGHUP stop the grid after the current chunk with `status: interrupted`."""
    return Session(cfg, out_dir, "dlf.phase", config_yaml).execute(_train_grid)


def _row(r, last: dict, j: int) -> dict[str, Any]:
    """The runs.csv row of run r, the j-th of its chunk (values null where it diverged)."""
    dead = bool(last["diverged_step"][j] >= 0)
    value = lambda k: None if dead else float(last[k][j])  # noqa: E731
    lr = {} if r.lr is None else {"optimizer.lr": r.lr}
    return dict(**lr, A=r.A, T=r.T, seed=r.seed, **{k: value(k) for k in results.METRICS},
                diverged_step=int(last["diverged_step"][j]))


def _train_grid(s: Session) -> dict[str, Any]:
    cfg, out_dir = s.cfg, s.out_dir
    grid = shard_points(cfg)
    steps = max(p[3] or cfg.train.steps for p in grid)  # every run to the longest; each stops at its own end
    partial = out_dir / PARTIAL
    b, vmap_size = s.build(grid)
    runs = b.runs  # point-major: a chunk holds whole points
    mine = {r.key for r in runs}
    own = _done(partial)
    done = {k: r for k, r in _harvest(cfg, out_dir).items() if k in mine}
    code = outputs.code_version()
    _code_check(cfg, partial, done, code)
    todo = [i for i, r in enumerate(runs) if r.key not in done]
    if done:
        log.info("dlf.phase: %d of %d runs finished before (%s); training the other %d", len(runs) - len(todo),
                 len(runs), partial.name, len(todo))
    n_dev = min(len(jax.local_devices()), len(runs))
    size = chunk_runs(cfg, len(runs), n_dev, bytes_per_run(b, dtype_of(cfg)), jax.default_backend())
    n_chunks = math.ceil(len(todo) / size)

    def chunk(i: int):
        idx = jnp.asarray(todo[i * size:(i + 1) * size])
        return len(idx), pad_runs(take_runs(b.states, idx), size), pad_runs(take_runs(b.hp, idx), size)

    log.info("dlf.phase: %d points x %d seeds = %d runs x %d steps, %s, %s, %d chunk(s) of %d runs on "
             "%d %s device(s), %s step, vmap_size=%s -> %s", len(grid), cfg.seeds, len(runs), steps,
             cfg.precision, phase_dir.title(cfg), n_chunks, size, n_dev, jax.default_backend(), b.step_name,
             vmap_size or "all", out_dir)
    compile_s, train_s = 0.0, 0.0
    progress = GridProgress(len(grid), len(todo), steps, n_chunks)
    with outputs.JsonlWriter(partial, append=True) as writer:
        for k, row in done.items():
            if k not in own:  # runs another shard plan finished: this shard's record of them
                writer.write(row)
        for i in range(n_chunks):
            n, states, hp = chunk(i)
            if i == 0:
                with slow_notice("compiling the grid's program"):
                    compiled = Compiled(b.program, states, hp, b.data, steps, cfg.train.log_every, hp_axis=0,
                                        vmap_size=vmap_size)
                compile_s = compiled.compile_s
                log.info("dlf.phase: compiled in %.1f s", compile_s)
            last: dict = {}
            probed = grid_probes.ChunkProbes(b.probe_value_names) if b.program.probes else None

            def on_metrics(step, m, i=i, probed=probed):
                if probed is not None:
                    probed.take(step, m)
                if "loss" in m:
                    last.update(m)
                    progress.step(i, step)

            mine = [runs[k] for k in todo[i * size:i * size + n]]
            longest = max(r.steps or steps for r in mine)  # a chunk whose runs have all ended stops there
            _, dt = compiled(states, hp, b.data, on_metrics, after_chunk=lambda u, _, longest=longest: u >= longest)
            train_s += dt
            extra = probed.finish(cfg, out_dir, mine, [r.steps or steps for r in mine]) if probed else [{}] * n
            for j, r in enumerate(mine):
                done[r.key] = row = {**_row(r, last, j), **extra[j], "code": code}
                writer.write(row)
            progress.chunk_done(i, n, train_s)
            if s.after_chunk(i + 1) and i < n_chunks - 1:
                return s.interrupted({"runs_done": len(done), "runs": len(runs)},
                                     f"with {len(done)} of {len(runs)} runs done ({partial.name})",
                                     "the same command goes on")

    final = [done[r.key] for r in runs]
    summary = phase_dir.write(out_dir, final, phase_dir.title(cfg), {
        "status": "ok", "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)), "steps": steps,
        "chunk_runs": size, "step": b.step_name, "vmap_size": vmap_size, "chunks": n_chunks, "devices": n_dev,
        "backend": jax.default_backend(), "compile_s": compile_s, "train_s": train_s,
        "run_steps_per_s": sum(runs[k].steps or steps for k in todo) / train_s if train_s else None,
        "code_segments": _code_segments(final),
        **s.provenance()},
        keys=cell_keys(cfg), baseline=cfg.stats.baseline, metric=cfg.stats.metric, figure=cfg.figures)
    log.info("dlf.phase: %s | %.1f s (compile %.1f s), %s run-steps/s", phase_dir.describe(out_dir),
             summary["wall_s"], compile_s, f"{summary['run_steps_per_s']:.0f}" if train_s else "-")
    return summary
