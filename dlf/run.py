"""One configured run: build the pieces, train every seed in one program, write the outputs."""
from __future__ import annotations

import json
import logging
import os
import signal
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
from dlf.engine import Compiled, Data, Hyper, Program, Timing, TrainState, default_vmap_size, init_states
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
    """dtype of the spiral data, parameters and Gamma (CIFAR images stay uint8 on the device)."""
    return jnp.float64 if cfg.precision == "float64" else jnp.float32


def pieces(cfg: Config):
    """(program, model, tx, data) of a config: everything but the runs' states and hyper-parameters."""
    from dlf.config import ConfigError

    train, val = datasets.build(cfg.dataset)
    C = cfg.dataset.classes
    if train.x.dtype == np.uint8:  # images: standardised per channel inside the step
        from dlf.data.cifar10 import channel_stats

        mean, std = channel_stats(train.x)
        data = Data(jnp.asarray(train.x), jnp.asarray(train.y, jnp.int32), jnp.asarray(val.x),
                    jnp.asarray(val.y, jnp.int32), jnp.asarray(mean, jnp.float32),
                    jnp.asarray(std, jnp.float32))
        if cfg.model.name == "mlp":
            raise ConfigError(f"model=mlp is not allowed with dataset.name={cfg.dataset.name}; "
                              "choose one of: myrtle5, myrtle7, myrtle10, wrn16_4, wrn28_10")
    else:
        dtype = dtype_of(cfg)
        data = Data(jnp.asarray(train.x, dtype), jnp.asarray(train.y, jnp.int32),
                    jnp.asarray(val.x, dtype), jnp.asarray(val.y, jnp.int32))
        if cfg.model.name != "mlp":
            raise ConfigError(f"model.name={cfg.model.name} is not allowed with dataset.name="
                              f"{cfg.dataset.name}; expected mlp (an image model needs dataset=cifar10)")
    n_train = int(train.x.shape[0])
    if cfg.epoch_run and cfg.train.batch_size > n_train:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not allowed; expected <= {n_train}, "
                          "the number of training examples")
    model = models.build(cfg.model, C, cfg.precision)
    init, apply = models.interface(model)
    tx = optim.build(cfg.optimizer, cfg.steps_per_epoch(n_train), cfg.total_steps(n_train))
    probe = None
    if cfg.probes.every:
        from dlf.probes.during import make_probe, ntk_indices

        probe = make_probe(cfg, ntk_indices(cfg, np.asarray(train.y), C), C)
    program = Program(apply=apply, tx=tx, loss=LOSSES[cfg.loss], num_classes=C, probe=probe,
                      trace_loss=bool(cfg.probes.every),
                      shape=cfg.schedule.shape, batch_size=cfg.train.batch_size,
                      steps_per_epoch=cfg.steps_per_epoch(n_train), eval_batch=cfg.train.eval_batch_size,
                      compute_dtype=models.COMPUTE_DTYPES[cfg.precision] if cfg.model.name != "mlp" else None)
    from dlf import fused  # train.step: the MLP's fused step where it applies (dlf.fused)

    if fused.use_fused(cfg, jax.default_backend()):
        program = fused.attach(program)
    return program, model, tx, data, init


def runs_vectorised(cfg: Config, program: Program) -> int | None:
    """train.vmap_size, else: all runs of a device for the fused step (measured), else by backend."""
    return cfg.train.vmap_size or (None if program.loss_grad is not None else default_vmap_size())


def build(cfg: Config) -> Built:
    """Data, model, optimizer, initial states of all seeds and the traced hyper-parameters.
    Call inside `jax.enable_x64(cfg.precision == "float64")`."""
    program, model, tx, data, init = pieces(cfg)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    off = cfg.off_step_for(int(data.x_train.shape[0]))
    hp = Hyper(A=jnp.asarray(cfg.schedule.A, program.loss_dtype(data)), T=jnp.asarray(cfg.schedule.T, jnp.int32),
               off_step=jnp.asarray(NEVER if off is None else off, jnp.int32))
    x_example = program.inputs(data.x_train[:1], data)
    return Built(program, init_states(model, tx, seeds, x_example, init), hp, data, seeds)


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
    """Terminal progress: step (and epoch), F, accuracies and steps/s, at most every `every_s` s."""

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


def _finished(out_dir: Path) -> dict | None:
    f = out_dir / "summary.json"
    if f.exists():
        s = json.loads(f.read_text())
        if s.get("status") in ("ok", "diverged"):
            return s
    return None


def run(cfg: Config, out_dir: Path, group: str | None = None) -> dict[str, Any]:
    """Train cfg's seeds and write metrics.jsonl, summary.json and dynamics.png to out_dir
    (mirrored to the configured logger; `group` names the sweep the run belongs to). A mini-batch
    run with checkpoints resumes from the newest checkpoint in out_dir, and a finished one is not
    trained again."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_on = cfg.epoch_run and cfg.checkpoint.every_epochs > 0
    if ckpt_on and (done := _finished(out_dir)):
        log.info("dlf: %s already holds a finished run (summary.json, status %s); nothing to do. Give "
                 "hydra.run.dir=... to train again.", out_dir, done["status"])
        return done
    use_compile_cache(cfg.compile_cache)
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg)
        vmap_size = runs_vectorised(cfg, b.program)
        n_train = int(b.data.x_train.shape[0])
        steps, spe = cfg.total_steps(n_train), cfg.steps_per_epoch(n_train)
        units = cfg.train.epochs if cfg.epoch_run else steps
        unit = "epochs" if cfg.epoch_run else "steps"
        log.info("dlf: %d seed(s) x %d %s (%d steps), A=%g T=%d shape=%s, %s, %s %s, %s step, vmap_size=%s -> %s",
                 cfg.seeds, units, unit, steps, cfg.schedule.A, cfg.schedule.T, cfg.schedule.shape,
                 cfg.precision, cfg.dataset.name, cfg.model.name,
                 "fused" if b.program.loss_grad else "generic", vmap_size or "all", out_dir)
        ckpt, start, states = None, 0, b.states
        rows: list[dict[str, Any]] = []
        if ckpt_on:
            from dlf.checkpoint import Checkpoints

            ckpt = Checkpoints(out_dir / "checkpoints", cfg.checkpoint.keep, to_dict(cfg))
            if ckpt.latest() is not None:
                start, states = ckpt.restore(b.states)
                rows = [r for r in outputs.read_jsonl(out_dir / "metrics.jsonl") if r["epoch"] <= start]
                log.info("dlf: resuming from the checkpoint at epoch %d (%s)", start, ckpt.dir)
        writer = outputs.JsonlWriter(out_dir / "metrics.jsonl")
        for row in rows:
            writer.write(row)
        progress = Progress(steps, epochs=cfg.train.epochs if cfg.epoch_run else None)
        mirror = open_mirror(cfg, out_dir, group)

        traces: list[np.ndarray] = []  # per-step F of each chunk (runs with probes)

        def on_metrics(u: int, metrics: dict[str, np.ndarray]) -> None:
            if "loss_trace" in metrics:
                traces.append(metrics.pop("loss_trace"))
            if rows and u <= rows[-1].get("epoch", rows[-1]["step"]):
                return  # the resumed run's first row is already in metrics.jsonl
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

        every = cfg.checkpoint.every_epochs if ckpt_on else cfg.probes.every
        compiled = Compiled(b.program, states, b.hp, b.data, units, cfg.train.log_every, vmap_size=vmap_size,
                            extra_bounds=tuple(range(every, units, every)) if every else ())
        states, train_s = compiled(states, b.hp, b.data, on_metrics, start=start,
                                   after_chunk=after_chunk if ckpt else None)
        timing = Timing(compile_s=compiled.compile_s, train_s=train_s)
        diverged_step = np.asarray(jax.device_get(states.diverged_step))
        gamma_dense = np.asarray(gamma(jnp.arange(steps + 1), b.hp.A, b.hp.T, cfg.dataset.classes,
                                       cfg.schedule.shape, b.hp.off_step, b.program.loss_dtype(b.data)))
    writer.close()
    if ckpt:
        ckpt.close()
    summary = summarize(cfg, b.seeds, rows, diverged_step, timing, time.perf_counter() - t_start,
                        steps, (units - start) * (spe if cfg.epoch_run else 1))
    figures = [out_dir / "dynamics.png"]
    if cfg.probes.every:
        summary["threshold"] = probe_outputs(cfg, out_dir, rows, np.concatenate(traces, axis=1), b.seeds,
                                             gamma_dense, figures)
    outputs.write_json(out_dir / "summary.json", summary)
    off = cfg.off_step_for(n_train)
    width = f"depth {cfg.model.depth}" if cfg.model.name != "mlp" else f"width {cfg.model.width}"
    plots.dynamics(out_dir / "dynamics.png", rows, gamma_dense, 2 * cfg.dataset.classes * cfg.schedule.T, off,
                   f"{cfg.dataset.name} {cfg.model.name} {width}, A={cfg.schedule.A:g}, "
                   f"T={cfg.schedule.T}, {cfg.seeds} seed(s), {cfg.precision}")
    mirror.finish(summary, figures)
    f = summary["final"]
    pm = lambda s: "nan" if s["n"] == 0 else f"{s['mean']:.4f} ± {s['std']:.4f}"  # noqa: E731
    log.info("dlf: %s | train_acc %s | val_acc %s (n=%d) | %.1f s (compile %.1f s)", summary["status"],
             pm(f["train_acc"]), pm(f["val_acc"]), f["val_acc"]["n"], summary["wall_s"],
             summary["compile_s"])
    if summary["diverged_seeds"]:
        log.warning("dlf: seeds %s diverged (non-finite loss) at steps %s; they are excluded from "
                    "the final statistics", summary["diverged_seeds"], list(summary["diverged_at_step"].values()))
    return summary


def probe_outputs(cfg: Config, out_dir: Path, rows: list[dict], F_RxT: np.ndarray, seeds: list[int],
                  gamma_dense: np.ndarray, figures: list[Path]) -> dict[str, Any]:
    """probes.npz (per-step F, probe series), the threshold estimate, and the Fig. 4 figure."""
    from dlf.probes.during import summarize as threshold_of

    probe_rows = [r for r in rows if r.get("hessian_lambda_max") is not None]
    steps = np.array([r["step"] for r in probe_rows])
    series = {k: np.array([[np.nan if v is None else v for v in r.get(k, [None] * len(seeds))]
                           for r in probe_rows]).T for k in outputs.PROBE_KEYS}
    np.savez_compressed(out_dir / "probes.npz", F=F_RxT, F_steps=np.arange(F_RxT.shape[1]), probe_steps=steps,
                        **series)
    thr = threshold_of(F_RxT, steps, series["hessian_lambda_max"], seeds, cfg.optimizer.lr)
    try:
        from dlf.probe_plots import fig4
    except ImportError:
        return thr
    first = thr["per_seed"][0]
    fig4(out_dir / "probes.png", steps=np.arange(F_RxT.shape[1]), F=F_RxT[0], gamma=gamma_dense[:-1],
         row_steps=np.array([r["step"] for r in rows]), train_acc=np.array([r["train_acc"][0] for r in rows], float),
         val_acc=np.array([r["val_acc"][0] for r in rows], float), probe_steps=steps,
         hessian=series["hessian_lambda_max"][0], ntk=series["ntk_lambda_max"][0], threshold=thr["mean"],
         lr=cfg.optimizer.lr, onsets=first["onsets"], ends=first["ends"],
         title=f"{cfg.dataset.name} width {cfg.model.width}, A={cfg.schedule.A:g}, T={cfg.schedule.T}, "
               f"lr {cfg.optimizer.lr:g}, seed {seeds[0]}")
    figures.append(out_dir / "probes.png")
    return thr


def summarize(cfg: Config, seeds: list[int], rows: list[dict], diverged_step: np.ndarray, timing,
              wall_s: float, steps: int | None = None, steps_run: int | None = None) -> dict[str, Any]:
    """summary.json: status, final seed statistics, divergence, speed and provenance."""
    last = rows[-1]
    diverged = [s for s, d in zip(seeds, diverged_step) if d >= 0]
    final = {}
    for key in outputs.PER_SEED_KEYS:
        final[key] = outputs.seed_stats(None if d >= 0 else v for v, d in zip(last[key], diverged_step))
    steps = cfg.train.steps if steps is None else steps
    steps_run = steps if steps_run is None else steps_run
    out = {
        "status": "diverged" if diverged else "ok",
        "final": final,
        "diverged_seeds": diverged,
        "diverged_at_step": {str(s): int(d) for s, d in zip(seeds, diverged_step) if d >= 0},
        "seeds": seeds,
        "A": cfg.schedule.A,
        "T": cfg.schedule.T,
        "steps": steps,
    }
    if cfg.epoch_run:
        out["epochs"] = cfg.train.epochs
        out["steps_per_epoch"] = steps // cfg.train.epochs
    return out | {
        "wall_s": wall_s,
        "compile_s": timing.compile_s,
        "train_s": timing.train_s,
        "steps_per_s": steps_run / timing.train_s,
        "run_steps_per_s": steps_run * len(seeds) / timing.train_s,
        "git_sha": outputs.git_sha(),
        "config": to_dict(cfg),
    }
