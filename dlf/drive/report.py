"""Reporting of a finished run: summary.json, the probe analysis (probes.npz, threshold) and figures."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dlf import models, outputs
from dlf.config import Config

log = logging.getLogger("dlf")


def summarize(cfg: Config, seeds: list[int], rows: list[dict], diverged_step: np.ndarray, timing,
              steps: int | None = None, steps_run: int | None = None) -> dict[str, Any]:
    """summary.json: status, final seed statistics, divergence and speed (the session adds the
    wall time and provenance)."""
    last = rows[-1]
    diverged = [s for s, d in zip(seeds, diverged_step) if d >= 0]
    final = {key: outputs.seed_stats(None if d >= 0 else v for v, d in zip(last[key], diverged_step))
             for key in outputs.PER_SEED_KEYS if key in last}
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
        "compile_s": timing.compile_s,
        "train_s": timing.train_s,
        "steps_per_s": steps_run / timing.train_s,
        "run_steps_per_s": steps_run * len(seeds) / timing.train_s,
    }


def probe_series(probe_rows: list[dict], n_runs: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(steps, {value name: (runs, samples) array}) of whatever probe values the rows hold; NaN
    where a probe did not run at a step or its run had diverged."""
    names = sorted({k for r in probe_rows for k in r if k not in ("step", "epoch")})
    steps = np.array([r["step"] for r in probe_rows], np.int64)
    series = {k: np.array([[np.nan if v is None else v for v in r.get(k, [None] * n_runs)]
                           for r in probe_rows], np.float64).reshape(len(probe_rows), n_runs).T for k in names}
    return steps, series


def probe_outputs(cfg: Config, out_dir: Path, rows: list[dict], probe_rows: list[dict], F_RxT: np.ndarray,
                  seeds: list[int], gamma_dense: np.ndarray, figures: list[Path]) -> dict[str, Any] | None:
    """probes.npz (per-step F, every probe series), the threshold estimate (when the Hessian is
    probed) and the Fig. 4 figure (of the first seed, with its own threshold line; cfg.figures)."""
    steps, series = probe_series(probe_rows, len(seeds))
    np.savez_compressed(out_dir / "probes.npz", F=F_RxT, F_steps=np.arange(F_RxT.shape[1]), probe_steps=steps,
                        **series)
    if "hessian_lambda_max" not in series:
        return None
    from dlf.analysis.bifurcation import run_threshold as threshold_of

    hessian = series["hessian_lambda_max"]
    keep = np.isfinite(hessian).any(axis=0)  # the steps where the Hessian was probed
    h = cfg.probes["hessian"]
    thr = threshold_of(F_RxT, steps[keep], hessian[:, keep], seeds, cfg.optimizer.lr, cfg.schedule.T,
                       h.quiet_frac, h.onset_amp)
    if not cfg.figures:
        return thr
    try:
        from dlf.figures.probes import fig4
    except ImportError:
        return thr
    try:
        _fig4(fig4, cfg, out_dir, rows, F_RxT, steps, keep, hessian, series, thr, seeds, gamma_dense)
    except Exception as e:  # noqa: BLE001 - a picture of the results; never the results themselves
        log.warning("dlf: the probes figure failed (%s: %s); the run's results are kept", type(e).__name__, e)
        return thr
    figures.append(out_dir / "probes.png")
    return thr


def _fig4(fig4, cfg, out_dir, rows, F_RxT, steps, keep, hessian, series, thr, seeds, gamma_dense) -> None:
    ntk = series.get("ntk_lambda_max", np.full_like(hessian, np.nan))
    first = thr["per_seed"][0]
    fig4(out_dir / "probes.png", steps=np.arange(F_RxT.shape[1]), F=F_RxT[0], gamma=gamma_dense[:-1],
         row_steps=np.array([r["step"] for r in rows]), train_acc=np.array([r["train_acc"][0] for r in rows], float),
         val_acc=np.array([r["val_acc"][0] for r in rows], float), probe_steps=steps[keep],
         hessian=hessian[0, keep], ntk=ntk[0, keep],
         threshold=first["mean"], lr=cfg.optimizer.lr, onsets=first["cascade_onsets"], ends=first["cascade_ends"],
         title=f"{cfg.dataset.name} {models.MODELS[cfg.model.name].describe(cfg.model)}, A={cfg.schedule.A:g}, "
               f"T={cfg.schedule.T}, lr {cfg.optimizer.lr:g}, seed {seeds[0]}")


def dynamics_figure(cfg: Config, out_dir: Path, rows: list[dict], gamma_dense: np.ndarray, n_train: int,
                    seeds: list[int] | None = None) -> Path:
    from dlf.figures.dynamics import dynamics

    path = out_dir / "dynamics.png"
    dynamics(path, rows, gamma_dense, 2 * cfg.dataset.classes * cfg.schedule.T, cfg.off_step_for(n_train),
             f"{cfg.dataset.name} {models.MODELS[cfg.model.name].describe(cfg.model)}, A={cfg.schedule.A:g}, "
             f"T={cfg.schedule.T}, {cfg.seeds} seed(s), {cfg.precision}",
             steps_per_epoch=cfg.steps_per_epoch(n_train) if cfg.epoch_run else None,
             period=cfg.schedule.T if cfg.schedule.shape != "static" else None, seeds=seeds)
    return path


def log_final(summary: dict[str, Any]) -> None:
    from dlf.drive.progress import pm  # mean ± std, the mean alone for one seed
    f = summary["final"]
    log.info("dlf: %s | train_acc %s | val_acc %s (95%% CI, n=%d) | %.1f s (compile %.1f s)", summary["status"],
             pm(f["train_acc"]), pm(f["val_acc"]), f["val_acc"]["n"], summary["wall_s"], summary["compile_s"])
    if summary["diverged_seeds"]:
        log.warning("dlf: seeds %s diverged (non-finite loss) at steps %s; they are excluded from "
                    "the final statistics", summary["diverged_seeds"], list(summary["diverged_at_step"].values()))
