"""One configured run: build the pieces, train every seed in one program, write the outputs."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlf import data as datasets
from dlf import models, optim, outputs, plots
from dlf.mirror import open_mirror
from dlf.config import Config, to_dict
from dlf.engine import Data, Hyper, Program, TrainState, default_vmap_size, fit, init_states
from dlf.losses import LOSSES
from dlf.schedule import NEVER, gamma

log = logging.getLogger("dlf")


@dataclass
class Built:
    program: Program
    states: TrainState
    hp: Hyper
    data: Data
    seeds: list[int]


def dtype_of(cfg: Config):
    return jnp.float64 if cfg.precision == "float64" else jnp.float32


def pieces(cfg: Config):
    """(program, model, tx, data) of a config: everything but the runs' states and hyper-parameters."""
    dtype = dtype_of(cfg)
    train, val = datasets.build(cfg.dataset)
    data = Data(jnp.asarray(train.x, dtype), jnp.asarray(train.y, jnp.int32),
                jnp.asarray(val.x, dtype), jnp.asarray(val.y, jnp.int32))
    C = cfg.dataset.classes
    model = models.build(cfg.model, C)
    tx = optim.build(cfg.optimizer)
    program = Program(apply=lambda p, x: model.apply({"params": p}, x), tx=tx,
                      loss=LOSSES["cross_entropy"], num_classes=C, shape=cfg.schedule.shape)
    return program, model, tx, data


def build(cfg: Config) -> Built:
    """Data, model, optimizer, initial states of all seeds and the traced hyper-parameters.
    Call inside `jax.enable_x64(cfg.precision == "float64")`."""
    dtype = dtype_of(cfg)
    program, model, tx, data = pieces(cfg)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    off = cfg.off_step
    hp = Hyper(A=jnp.asarray(cfg.schedule.A, dtype), T=jnp.asarray(cfg.schedule.T, jnp.int32),
               off_step=jnp.asarray(NEVER if off is None else off, jnp.int32))
    return Built(program, init_states(model, tx, seeds, data.x_train), hp, data, seeds)


def use_compile_cache(path: str | None) -> None:
    """Point JAX's persistent compilation cache at `path` (shared by the jobs of a sweep). The
    thresholds are lowered so that the many small one-off compilations are cached too."""
    if not path:
        return
    Path(path).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


class Progress:
    """Terminal progress: step, F, accuracies and steps/s, at most every `every_s` seconds."""

    def __init__(self, steps: int, every_s: float = 2.0):
        self.steps, self.every_s = steps, every_s
        self.t0 = self.last = None

    def __call__(self, row: dict[str, Any]) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
        if row["step"] not in (0, self.steps) and now - self.last < self.every_s:
            return
        self.last = now
        if now > self.t0 and row["step"]:
            rate = row["step"] / (now - self.t0)
            speed = f"{rate:.0f} steps/s, eta {(self.steps - row['step']) / rate:.0f} s"
        else:
            speed = "compiled"
        stats = {k: outputs.seed_stats(row[k]) for k in ("loss", "train_acc", "val_acc")}
        fmt = lambda s: "nan" if s["mean"] is None else f"{s['mean']:.4f}"  # noqa: E731
        log.info("step %*d/%d | F %s | train_acc %s | val_acc %s | %s", len(str(self.steps)),
                 row["step"], self.steps, fmt(stats["loss"]), fmt(stats["train_acc"]),
                 fmt(stats["val_acc"]), speed)


def run(cfg: Config, out_dir: Path, group: str | None = None) -> dict[str, Any]:
    """Train cfg's seeds and write metrics.jsonl, summary.json and dynamics.png to out_dir
    (mirrored to the configured logger; `group` names the sweep the run belongs to)."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    writer = outputs.JsonlWriter(out_dir / "metrics.jsonl")
    progress = Progress(cfg.train.steps)
    mirror = open_mirror(cfg, out_dir, group)
    use_compile_cache(cfg.compile_cache)

    def on_metrics(step: int, metrics: dict[str, np.ndarray]) -> None:
        row = outputs.metrics_row(step, metrics)
        rows.append(row)
        writer.write(row)
        mirror.log_row(row)
        progress(row)

    vmap_size = cfg.train.vmap_size or default_vmap_size()
    log.info("dlf: %d seed(s) x %d steps, A=%g T=%d shape=%s, %s, vmap_size=%s -> %s", cfg.seeds,
             cfg.train.steps, cfg.schedule.A, cfg.schedule.T, cfg.schedule.shape, cfg.precision,
             vmap_size or "all", out_dir)
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg)
        states, timing = fit(b.program, b.states, b.hp, b.data, cfg.train.steps, cfg.train.log_every,
                             on_metrics, vmap_size=vmap_size)
        diverged_step = np.asarray(jax.device_get(states.diverged_step))
        gamma_dense = np.asarray(gamma(jnp.arange(cfg.train.steps + 1), b.hp.A, b.hp.T,
                                       cfg.dataset.classes, cfg.schedule.shape, b.hp.off_step,
                                       dtype_of(cfg)))
    writer.close()
    summary = summarize(cfg, b.seeds, rows, diverged_step, timing, time.perf_counter() - t_start)
    outputs.write_json(out_dir / "summary.json", summary)
    plots.dynamics(out_dir / "dynamics.png", rows, gamma_dense, 2 * cfg.dataset.classes * cfg.schedule.T,
                   cfg.off_step,
                   f"{cfg.dataset.name} width {cfg.model.width}, A={cfg.schedule.A:g}, "
                   f"T={cfg.schedule.T}, {cfg.seeds} seed(s), {cfg.precision}")
    mirror.finish(summary, [out_dir / "dynamics.png"])
    f = summary["final"]
    pm = lambda s: "nan" if s["n"] == 0 else f"{s['mean']:.4f} ± {s['std']:.4f}"  # noqa: E731
    log.info("dlf: %s | train_acc %s | val_acc %s (n=%d) | %.1f s (compile %.1f s)", summary["status"],
             pm(f["train_acc"]), pm(f["val_acc"]), f["val_acc"]["n"], summary["wall_s"],
             summary["compile_s"])
    if summary["diverged_seeds"]:
        log.warning("dlf: seeds %s diverged (non-finite loss) at steps %s; they are excluded from "
                    "the final statistics", summary["diverged_seeds"], list(summary["diverged_at_step"].values()))
    return summary


def summarize(cfg: Config, seeds: list[int], rows: list[dict], diverged_step: np.ndarray, timing,
              wall_s: float) -> dict[str, Any]:
    """summary.json: status, final seed statistics, divergence, speed and provenance."""
    last = rows[-1]
    diverged = [s for s, d in zip(seeds, diverged_step) if d >= 0]
    final = {}
    for key in ("train_acc", "val_acc", "loss", "ce"):
        final[key] = outputs.seed_stats(None if d >= 0 else v for v, d in zip(last[key], diverged_step))
    steps = cfg.train.steps
    return {
        "status": "diverged" if diverged else "ok",
        "final": final,
        "diverged_seeds": diverged,
        "diverged_at_step": {str(s): int(d) for s, d in zip(seeds, diverged_step) if d >= 0},
        "seeds": seeds,
        "A": cfg.schedule.A,
        "T": cfg.schedule.T,
        "steps": steps,
        "wall_s": wall_s,
        "compile_s": timing.compile_s,
        "train_s": timing.train_s,
        "steps_per_s": steps / timing.train_s,
        "run_steps_per_s": steps * len(seeds) / timing.train_s,
        "git_sha": outputs.git_sha(),
        "config": to_dict(cfg),
    }
