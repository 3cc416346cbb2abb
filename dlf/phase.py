"""Phase diagrams in one program: `python -m dlf.phase grid.A=1,5,10 grid.T=100,300 seeds=50`.

Every (A, T, seed) of the grid is one run; A, T and the oscillation stop are traced per run, so a
single compiled program (sharded over the devices, vmapped or looped within each) trains them
all, `grid.chunk_runs` runs per call. Writes phase.csv, runs.csv, phase.png and summary.json.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dlf import config as config_lib
from dlf.cli_errors import run_app
from dlf.config import Config
from dlf.outputs import write_json

log = logging.getLogger("dlf")
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
config_lib.register_resolvers()


def points(cfg: Config) -> list[tuple[float, int]]:
    """The grid's (A, T) points, A-major; a missing axis is the schedule's single value."""
    As = cfg.grid.A or (cfg.schedule.A,)
    Ts = cfg.grid.T or (cfg.schedule.T,)
    return [(float(A), int(T)) for A in As for T in Ts]


def check(cfg: Config) -> None:
    """Cross-checks of a grid that the per-key validation cannot see."""
    if cfg.epoch_run:
        raise config_lib.ConfigError("train.batch_size is not allowed in dlf.phase; expected null (full-batch "
                                     "runs; sweep mini-batch runs with python -m dlf.train -m)")
    if cfg.schedule.shape == "static" and any(A != 1.0 for A, _ in points(cfg)):
        raise config_lib.ConfigError("grid.A is not allowed with schedule.shape=static; expected 1 (or unset)")
    As, Ts = cfg.grid.A or (), cfg.grid.T or ()
    for key, vals in (("grid.A", As), ("grid.T", Ts)):
        if len(set(vals)) != len(vals):
            raise config_lib.ConfigError(f"{key}={list(vals)} is not allowed; expected distinct values")


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
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def run_phase(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """Train every (A, T, seed) of cfg's grid and write the phase-diagram directory."""
    import jax
    import jax.numpy as jnp

    from dlf import diagram
    from dlf.engine import Compiled, Hyper, _pad_runs, init_states
    from dlf.run import dtype_of, pieces, runs_vectorised, use_compile_cache
    from dlf.schedule import NEVER

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    use_compile_cache(cfg.compile_cache)
    grid = points(cfg)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    runs = [(A, T, s) for A, T in grid for s in seeds]  # point-major: a chunk holds whole points
    steps = cfg.train.steps
    dtype = dtype_of(cfg)

    offs = {T: config_lib.replace(cfg, schedule=dict(T=T)).off_step for T in {T for _, T in grid}}
    off = {T: NEVER if o is None else o for T, o in offs.items()}  # validated once per period
    seed_row = {s: i for i, s in enumerate(seeds)}

    with jax.enable_x64(cfg.precision == "float64"):
        program, model, tx, data, init = pieces(cfg)
        vmap_size = runs_vectorised(cfg, program)
        seed_states = init_states(model, tx, seeds, data.x_train, init)  # the same inits at every point
        n_params = sum(x.size for x in jax.tree.leaves(jax.tree.map(lambda x: x[0], seed_states.params)))
        width = cfg.model.width
        act = (data.x_train.shape[0] + data.x_val.shape[0]) * (width + cfg.dataset.classes)
        bytes_per_run = jnp.dtype(dtype).itemsize * (6 * n_params + 4 * act)
        n_dev = min(len(jax.local_devices()), len(runs))
        size = chunk_runs(cfg, len(runs), n_dev, bytes_per_run, jax.default_backend())
        n_chunks = math.ceil(len(runs) / size)

        def chunk(i: int):
            part = runs[i * size:(i + 1) * size]
            idx = jnp.asarray([seed_row[s] for _, _, s in part])
            states = jax.tree.map(lambda x: x[idx], seed_states)
            hp = Hyper(A=jnp.asarray([A for A, _, _ in part], dtype),
                       T=jnp.asarray([T for _, T, _ in part], jnp.int32),
                       off_step=jnp.asarray([off[T] for _, T, _ in part], jnp.int32))
            return len(part), _pad_runs(states, size), _pad_runs(hp, size)

        _, states0, hp0 = chunk(0)
        log.info("dlf.phase: %d points x %d seeds = %d runs x %d steps, %s width %d, %d chunk(s) of "
                 "%d runs on %d %s device(s), %s step, vmap_size=%s -> %s", len(grid), len(seeds), len(runs),
                 steps, cfg.precision, width, n_chunks, size, n_dev, jax.default_backend(),
                 "fused" if program.loss_grad else "generic", vmap_size or "all", out_dir)
        compiled = Compiled(program, states0, hp0, data, steps, cfg.train.log_every, hp_axis=0,
                            vmap_size=vmap_size)
        log.info("dlf.phase: compiled in %.1f s", compiled.compile_s)
        final: list[dict] = []
        train_s = 0.0
        progress = _Progress(len(grid), len(runs), steps, n_chunks)
        for i in range(n_chunks):
            n, states, hp = chunk(i) if i else (min(size, len(runs)), states0, hp0)
            last: dict = {}

            def on_metrics(step, m, i=i):
                last.update(m)
                progress.step(i, step)

            _, dt = compiled(states, hp, data, on_metrics)
            train_s += dt
            for j in range(n):
                A, T, s = runs[i * size + j]
                dead = bool(last["diverged_step"][j] >= 0)
                final.append(dict(A=A, T=T, seed=s, train_acc=None if dead else float(last["train_acc"][j]),
                                  val_acc=None if dead else float(last["val_acc"][j]),
                                  loss=None if dead else float(last["loss"][j]),
                                  diverged_step=int(last["diverged_step"][j])))
            progress.chunk_done(i, n, train_s)

    records = [diagram.Record(r["A"], r["T"], r["seed"], r["train_acc"], r["val_acc"], r["diverged_step"] >= 0)
               for r in final]
    rows = diagram.table(records)
    write_runs_csv(out_dir / "runs.csv", final)
    diagram.write_csv(out_dir / "phase.csv", rows)
    diagram.plot(out_dir / "phase.png", rows, title(cfg))
    summary = {
        "status": "ok",
        "points": len(grid),
        "seeds": seeds,
        "runs": len(runs),
        "steps": steps,
        "diverged_runs": sum(r.diverged for r in records),
        "best": diagram.best(rows),
        "chunk_runs": size,
        "chunks": n_chunks,
        "devices": n_dev,
        "backend": jax.default_backend(),
        "wall_s": time.perf_counter() - t_start,
        "compile_s": compiled.compile_s,
        "train_s": train_s,
        "run_steps_per_s": len(runs) * steps / train_s,
        "git_sha": __import__("dlf.outputs", fromlist=["git_sha"]).git_sha(),
        "config": config_lib.to_dict(cfg),
    }
    write_json(out_dir / "summary.json", summary)
    log.info("dlf.phase: %s | %.1f s (compile %.1f s), %.0f run-steps/s", diagram.describe(rows),
             summary["wall_s"], summary["compile_s"], summary["run_steps_per_s"])
    return summary


def title(cfg: Config) -> str:
    return (f"{cfg.dataset.name} width {cfg.model.width}, lr {cfg.optimizer.lr:g}, {cfg.schedule.shape}: "
            f"{cfg.seeds} seeds, {cfg.train.steps} steps")


def write_runs_csv(path: Path, final: list[dict]) -> None:
    cols = ("A", "T", "seed", "train_acc", "val_acc", "loss", "diverged_step")
    with Path(path).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in final:
            w.writerow({k: "" if r[k] is None else r[k] for k in cols})


class _Progress:
    """Grid points done, run-steps/s and eta, at most every few seconds."""

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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="phase")
def app(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    for noisy in ("jax._src.xla_bridge", "matplotlib", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        phase_cfg = config_lib.from_hydra(cfg)
        check(phase_cfg)
    except config_lib.ConfigError as e:
        write_json(out_dir / "summary.json", {"status": "failed", "error": str(e)})
        print(f"dlf: error: {e}", file=sys.stderr)
        sys.exit(2)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        run_phase(phase_cfg, out_dir)
    except Exception as e:
        write_json(out_dir / "summary.json", {"status": "failed", "error": f"{type(e).__name__}: {e}"})
        raise


_LIST_ARG = re.compile(r"^(\+{0,2}grid\.(?:A|T))=(?!\[|null$)(.+)$")


def list_args(argv: list[str]) -> list[str]:
    """`grid.A=1,5,10` (a sweep to Hydra) -> `grid.A=[1,5,10]` (a list), `grid.T=40` -> `[40]`: a
    phase diagram is one program, not a sweep of jobs."""
    return [_LIST_ARG.sub(r"\1=[\2]", a) for a in argv]


def main() -> None:
    if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
        print("dlf: error: dlf.phase trains the whole grid in one program; give grid.A=... grid.T=... "
              "without -m (sweeps of jobs: python -m dlf.train -m ...)", file=sys.stderr)
        sys.exit(2)
    sys.argv = sys.argv[:1] + list_args(sys.argv[1:])
    run_app(app)


if __name__ == "__main__":
    main()
