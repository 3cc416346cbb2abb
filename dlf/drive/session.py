"""The driver core: one `Session` per training process, shared by the run loop (dlf.drive.run) and
the grid loop (dlf.drive.grid). It owns what both do around their compiled loops: the run-directory
contract (dlf.drive.rundir), process setup (compilation cache, matmul precision, float64), the
build, deferred signals, the one fault-injection hook, soft failures, the logger mirror and the
summary writes. The loops own only their compiled calls and what they record per chunk."""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from dlf import outputs
from dlf.config import Config, to_dict
from dlf.drive import rundir
from dlf.drive.build import Built, build, runs_vectorised
from dlf.tracking.mirror import NullMirror, open_mirror

log = logging.getLogger("dlf")

FAULT_ENV = "DLF_FAULT"
FAULT_SIGNALS = ("KILL", "TERM", "USR2", "INT")


def use_matmul_precision(precision: str) -> None:
    """Set jax_default_matmul_precision from the `matmul_precision` key ("default" = JAX's own
    choice, which on NVIDIA GPUs may be TF32 for float32; "highest" = true float32)."""
    jax.config.update("jax_default_matmul_precision", None if precision == "default" else precision)


def use_compile_cache(path: Path | None) -> None:
    """Point JAX's persistent compilation cache at `path` (shared by the jobs of a sweep). The
    thresholds are lowered so that the many small one-off compilations are cached too."""
    if not path:
        return
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as e:
        log.warning("dlf: compile_cache=%s cannot be used (%s); compiling without the cache", path, e)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def soft(what: str, fn: Callable, *args, **kwargs):
    """Call fn; a failure (a full disk under a figure, a tracker that is down) is one warning and
    never changes the run's status or drops its results."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - these outputs are copies or pictures of the results
        log.warning("dlf: %s failed (%s: %s); the results are kept", what, type(e).__name__, e)
        return None


def fault(at: int) -> None:
    """The fault-injection hook of the tests, called after every compiled chunk with the progress
    `at` reached: a run's step (epoch for mini-batch runs), a grid's number of finished chunks.
    DLF_FAULT=<at>:<KILL|TERM|USR2|INT>[,<at>:<signal>...] sends that signal to this process there."""
    for item in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        where, _, name = item.partition(":")
        if where.strip() == str(at):
            os.kill(os.getpid(), getattr(signal, f"SIG{(name or 'TERM').strip().upper()}"))


class SoftMirror:
    """The configured logger mirror (W&B), each call guarded by `soft`."""

    def __init__(self, cfg: Config, out_dir: Path, group: str | None):
        self._m = soft("opening the logger", open_mirror, cfg, out_dir, group) or NullMirror()

    def log_row(self, row: dict[str, Any]) -> None:
        soft("logging a row to the logger", self._m.log_row, row)

    def finish(self, summary: dict[str, Any], figures: list[Path]) -> None:
        soft("finishing the logger", self._m.finish, summary, figures)


class Session:
    """One training process on one output directory: `execute(loop)` claims the directory, sets
    the process up and calls `loop(session)` inside the float64 context of the config; the loop
    builds (`build`), trains chunk by chunk (calling `after_chunk` after each) and ends with
    `finish(summary)` or, when `stopping`, with `interrupted(...)`."""

    def __init__(self, cfg: Config, out_dir: Path, what: str = "dlf", config_yaml: str | None = None):
        self.cfg, self.out_dir, self.what, self.config_yaml = cfg, Path(out_dir), what, config_yaml
        self.stop: rundir.Preemption | None = None
        self.claim: rundir.Claim | None = None
        self.t_start = time.perf_counter()

    def execute(self, loop: Callable[[Session], dict[str, Any]]) -> dict[str, Any]:
        """`loop(self)` under the run-directory contract (rundir.execute): a finished run of this
        configuration is returned untouched, a failure is recorded, a caught signal handed over."""
        def train(stop: rundir.Preemption, claim: rundir.Claim) -> dict[str, Any]:
            self.stop, self.claim, self.t_start = stop, claim, time.perf_counter()
            soft("the compilation cache", use_compile_cache, self.cfg.compile_cache_dir)
            use_matmul_precision(self.cfg.matmul_precision)
            with jax.enable_x64(self.cfg.precision == "float64"):
                return loop(self)
        return rundir.execute(self.out_dir, self.cfg, self.config_yaml, train, self.what)

    def build(self, points: list[tuple] | None = None) -> tuple[Built, int | None]:
        """The program, data and initial states (dlf.drive.build), and the runs vectorised together."""
        b = build(self.cfg, points)
        return b, runs_vectorised(self.cfg, b.program)

    def mirror(self, group: str | None) -> SoftMirror:
        return SoftMirror(self.cfg, self.out_dir, group)

    @property
    def stopping(self) -> bool:
        """A SIGTERM/SIGUSR2/SIGINT/SIGHUP was caught: the loop stops after its current chunk."""
        return self.stop is not None and self.stop.signum is not None

    def after_chunk(self, at: int) -> bool:
        """Between chunks: the fault hook, a check that the run directory is still there (else a
        RunDirError: nothing more is trained into a removed directory), then whether to stop here
        (a caught signal)."""
        fault(at)
        self._check_dir()
        if self.stopping:
            self.stop.acknowledge()
        return self.stopping

    def _check_dir(self) -> None:
        if self.claim is not None:
            self.claim.check()

    def provenance(self) -> dict[str, Any]:
        return {"wall_s": time.perf_counter() - self.t_start, "git_sha": outputs.git_sha(), "config": to_dict(self.cfg)}

    def interrupted(self, fields: dict[str, Any], where: str, then: str) -> dict[str, Any]:
        """Record `interrupted` (with `fields`) in summary.json and say so in one line: interrupted
        by SIG... `where` (at step 9000, with 4 of 8 runs done); `then`: what the same command does."""
        self._check_dir()
        name = signal.Signals(self.stop.signum).name
        summary = {"status": "interrupted", "signal": name, **fields, **self.provenance()}
        outputs.write_json(self.out_dir / "summary.json", summary)
        log.warning("%s: interrupted by %s %s; %s", self.what, name, where, then)
        return summary

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """summary.json with the provenance, written last: a finished run is one with its summary."""
        self._check_dir()
        summary = {**summary, **self.provenance()}
        outputs.write_json(self.out_dir / "summary.json", summary)
        return summary
