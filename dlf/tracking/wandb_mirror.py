"""logger=wandb: mirror one run directory to Weights & Biases (see docs/logging.md).

One dlf run (all its seeds, one process) is one W&B run. What is sent:

- id: derived from the run directory (`naming.run_id`), opened with resume="allow": a run that is
  killed and rerun in the same directory (a resumed CIFAR run, a requeued SLURM job) stays one W&B
  run; offline, each attempt writes its own `offline-run-*` folder with the same id, which
  `wandb sync` joins (dlf.tracking.wandb_records `read_run_dir` reads them back as one run).
- name: `<sweep group>/<job dir>` in a multirun, else the run directory's name (shortened when
  long); group: `logger.group`, else the sweep's group (`naming.group_of`); tags: `A=<A>`, `T=<T>`,
  `seed=<seed>` (one seed) or `seed=<first>-<last>` (several), `<key>=<value>` for every other
  swept key, then `logger.tags`; job_type `train`; config: the resolved dlf config
  (`dlf.config.to_dict`) plus `sweep: {group, job, varying}` in a multirun.
- history, one W&B step per metrics.jsonl row at `step=row["step"]` (`history_item`): `step`
  (and `epoch` for mini-batch runs), declared as x-axes (`define_metric`; metrics plot against
  `epoch` in epoch runs, else `step`), `gamma/class_<i>`, `<metric>/seed_<s>` for every per-seed
  metric (loss, ce, train_acc, val_acc, val_ce) and seed number s (null where metrics.jsonl has
  null: a diverged seed), and `<metric>/mean` over the non-null seeds (null when none).
  `wandb_records.metrics_rows` rebuilds the metrics.jsonl rows exactly from the per-seed keys.
- figures: `figures/<file stem>` as wandb.Image at the last metrics step.
- summary: summary.json flattened with "/" (`final/val_acc/mean`, ...), lists kept as lists,
  without its `config` (that is the run config).

The W&B files go to `<run dir>/wandb/`. The local files are the primary copy: every wandb call is
guarded, the first failure logs one warning line and turns the mirror off, and `finish` always
tries to close the run. `logger.mode=offline` makes no network connection at all (see
`_offline_everywhere`); `disabled` never imports wandb.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlf.config import Config, to_dict
from dlf.tracking import naming

log = logging.getLogger("dlf")

INIT_TIMEOUT_S = 60.0     # online: give up on an unreachable server instead of waiting 90 s+
FINISH_TIMEOUT_S = 300.0  # online: stop waiting for uploads at the end (the run is marked crashed)


def run_tags(cfg: Config, varying: dict[str, str] | None = None) -> list[str]:
    first, last = cfg.seed, cfg.seed + cfg.seeds - 1
    seed = f"seed={first}" if first == last else f"seed={first}-{last}"
    return [f"A={cfg.schedule.A:g}", f"T={cfg.schedule.T}", seed, *naming.tags(varying or {}), *cfg.logger.tags]


def start(wandb, logger, out_dir: Path, *, name: str, group: str | None, job_type: str, tags: list[str],
          config: dict[str, Any]):
    """wandb.init for a dlf directory: id from the directory (resumed on rerun), W&B files in
    `<out_dir>/wandb/`, no network at all offline, bounded waits online."""
    mode = logger.mode
    _logs_in(out_dir)
    # console off: dlf's terminal output is in train.log; quiet: no history/summary footer
    settings: dict[str, Any] = {"console": "off", "quiet": True}
    if mode == "online":
        if "WANDB_INIT_TIMEOUT" not in os.environ:
            settings["init_timeout"] = INIT_TIMEOUT_S
        settings["finish_timeout"] = FINISH_TIMEOUT_S
    if mode == "offline":
        _offline_everywhere()
    wandb.setup(settings=wandb.Settings(mode=mode))
    return wandb.init(mode=mode, dir=str(out_dir), project=logger.project, entity=logger.entity, group=group,
                      name=name, id=naming.run_id(out_dir), resume="allow", job_type=job_type, tags=tags,
                      config=config, reinit="finish_previous", settings=wandb.Settings(**settings))


_CACHE_ENV = "WANDB_CACHE_DIR"
_cache_is_ours = False


def _logs_in(out_dir: Path) -> None:
    """wandb-core writes its debug logs under WANDB_CACHE_DIR (default ~/.cache/wandb/logs, outside
    any run, also offline): unless the user set it, they go to <out_dir>/wandb/cache/ (the first
    run of a process that starts the W&B service)."""
    global _cache_is_ours
    if _CACHE_ENV in os.environ and not _cache_is_ours:
        return
    os.environ[_CACHE_ENV] = str(Path(out_dir) / "wandb" / "cache")
    _cache_is_ours = True


def history_item(row: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """The W&B history item of one metrics.jsonl row (its step also goes to `log(step=...)`)."""
    item: dict[str, Any] = {"step": row["step"], **{f"gamma/class_{i}": g for i, g in enumerate(row["gamma"])}}
    for key, values in row.items():
        if key in ("step", "gamma"):
            continue
        if not isinstance(values, list):  # a scalar of the row (mini-batch runs: `epoch`)
            item[key] = values
            continue
        if len(values) != len(seeds):
            raise ValueError(f"metrics row key {key!r} has {len(values)} values for {len(seeds)} seeds")
        for seed, v in zip(seeds, values):
            item[f"{key}/seed_{seed}"] = v
        ok = [v for v in values if v is not None]
        item[f"{key}/mean"] = sum(ok) / len(ok) if ok else None
    return item


def flat_summary(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """summary.json as flat "/"-joined keys, without the config."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        if not prefix and k == "config":
            continue
        if isinstance(v, dict):
            out.update(flat_summary(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def one_line(e: BaseException, limit: int = 300) -> str:
    msg = " ".join(f"{type(e).__name__}: {e}".split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _offline_everywhere() -> None:
    """Make this process's wandb truly offline (wandb 0.31; checked by tests/test_wandb.py).

    `wandb.init(mode="offline")` alone is not enough: wandb's process-wide telemetry (an
    OpenTelemetry exporter that posts to the W&B server, https://api.forge.coreweave.com unless
    WANDB_BASE_URL says otherwise) takes its settings from the *global* wandb settings, and every
    `run.log` feeds it, so a plain offline run still resolves and contacts that host at exit.
    Each of the following stops that on its own; all three are applied:
    - the global mode: `wandb.setup(settings=wandb.Settings(mode="offline"))` (done by the caller);
    - WANDB_ERROR_REPORTING=false (unless the user set it): turns the telemetry recorder off and
      starts the wandb-core service with --no-observability (no error reports); it must be set
      before the service starts, i.e. before `wandb.setup`;
    - wandb's `opentelemetry_proxy.disable()`, which also covers a process that already ran an
      online run (a multirun sweeping logger.mode). Telemetry stays off for the rest of the process.
    """
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):  # internal API; the two settings above suffice
        pass


class WandbMirror:
    """Mirror of one run directory to W&B; see the module docstring for what goes where."""

    def __init__(self, cfg: Config, out_dir: Path, group: str | None = None):
        self.seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
        self.out_dir = Path(out_dir)
        self._run = None
        self._ok = False      # False: nothing more is sent (not started, disabled, or failed)
        self._warned = False
        self._last_step: int | None = None
        self._min_step = 0
        mode = cfg.logger.mode
        if mode == "disabled":
            return
        try:
            import wandb  # only here: logger=none and mode=disabled never import it
        except ImportError as e:
            self._fail(e, "needs the wandb package (pip install -e '.[wandb]')")
            return
        self._wandb = wandb
        job = naming.current_job()
        first, last = self.seeds[0], self.seeds[-1]
        fallback = f"{cfg.model.name}_A{cfg.schedule.A:g}_T{cfg.schedule.T}_s{first}" + (
            f"-{last}" if last != first else "")
        config = to_dict(cfg)
        if job.group:
            config["sweep"] = {"group": job.group, "job": job.num, "varying": job.varying}
        try:
            self._run = start(wandb, cfg.logger, self.out_dir, name=naming.display_name(self.out_dir, job, fallback),
                              group=cfg.logger.group or group or job.group or None, job_type="train",
                              tags=run_tags(cfg, job.varying), config=config)
            x = "epoch" if cfg.epoch_run else "step"
            self._run.define_metric("step")
            if cfg.epoch_run:
                self._run.define_metric("epoch")
            self._run.define_metric("*", step_metric=x)
            # resumed online: the server already holds the steps before run.step (a killed attempt
            # may have logged rows past its last checkpoint); W&B would drop them with a warning
            self._min_step = int(self._run.step or 0) if self._run.resumed else 0
            self._ok = True
        except Exception as e:  # noqa: BLE001 - W&B must never cost the local outputs
            self._fail(e, "could not start")

    def _fail(self, e: BaseException, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("dlf: logger=wandb %s (%s); W&B mirroring is off for this run, the local "
                        "outputs are not affected", what, one_line(e))
        self._ok = False

    def _guard(self, what: str, fn: Callable[[], Any]) -> None:
        if not self._ok:
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            self._fail(e, what)

    def log_row(self, row: dict[str, Any]) -> None:
        def send():
            if int(row["step"]) < self._min_step:
                return
            self._run.log(history_item(row, self.seeds), step=int(row["step"]))
            self._last_step = int(row["step"])

        self._guard("failed to log a metrics row", send)

    def finish(self, summary: dict[str, Any], figures: list[Path]) -> None:
        def send_figures():
            images = {f"figures/{Path(p).stem}": self._wandb.Image(str(p))
                      for p in figures if Path(p).exists()}
            if images:
                self._run.log(images, step=self._last_step)

        self._guard("failed to log the figures", send_figures)
        self._guard("failed to log the summary", lambda: self._run.summary.update(flat_summary(summary)))
        if self._run is None:
            return
        run, failed, self._run = self._run, not self._ok, None
        try:
            run.finish(exit_code=1 if failed else 0)
        except Exception as e:  # noqa: BLE001
            self._fail(e, "failed to close the run")
        self._ok = False
