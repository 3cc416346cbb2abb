"""The run-directory contract: a run directory belongs to one configuration and one live process.

`claim(out_dir, cfg)` takes the directory's lock (a second live process is refused) and refuses a
directory that holds a run of another configuration, naming the keys that differ; both refusals
happen before anything of the run is written. Signals (SIGTERM, SIGUSR2) are turned into a flag
that the run driver reads between compiled chunks (`Preemption`). `execute` is the whole contract
around a training function, shared by dlf.train runs and dlf.phase grids."""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlf import config as config_lib
from dlf import outputs
from dlf.analysis.results import differing, identity  # noqa: F401 - the directory's identity, as results read it
from dlf.config import Config
from dlf.errors import ConfigError

log = logging.getLogger("dlf")

FREE = config_lib.FREE  # keys that may differ between two processes working on one run directory
FINISHED = ("ok", "diverged")
GRID_PLAN = ("A", "T", "shards", "shard")  # the grid keys that say which runs a directory holds


class RunDirError(ConfigError):
    """A run directory that this process may not use; nothing was written to it."""


def stored_config(out_dir: Path) -> Config | None:
    """The config of the run already in out_dir (its config.yaml, else its summary.json), or None.
    Where both hold one they must agree (a summary left by another run is never taken for this
    one's), else the directory is refused naming the keys."""
    f = out_dir / "config.yaml"
    s = read_summary(out_dir)
    in_summary = isinstance(s, dict) and s.get("config") is not None
    if not f.exists() and not in_summary:
        return None
    try:
        cfg = config_lib.read_yaml(f) if f.exists() else config_lib.stored(s["config"])
    except (ConfigError, OSError) as e:
        raise RunDirError(f"{out_dir} holds a run whose {f.name if f.exists() else 'summary.json'} config cannot "
                          f"be read ({e}); give this run its own hydra.run.dir") from None
    if f.exists() and in_summary:
        try:
            other = config_lib.stored(s["config"])
        except ConfigError as e:
            raise RunDirError(f"{out_dir / 'summary.json'} holds a config that cannot be read ({e}); give this run "
                              "its own hydra.run.dir") from None
        if diff := differing(cfg, other):
            raise RunDirError(f"{out_dir}: config.yaml and summary.json describe different runs (differ in "
                              f"{', '.join(diff)}); the directory cannot be trusted: give this run its own "
                              "hydra.run.dir")
    return cfg


def read_summary(out_dir: Path) -> dict[str, Any] | None:
    """summary.json of out_dir, or None if absent or unreadable."""
    try:
        return json.loads((Path(out_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


class Claim:
    """This process's hold on a run directory (the lock is released when the process ends)."""

    def __init__(self, out_dir: Path, lock_file):
        self.dir, self._lock = out_dir, lock_file

    def finished(self, config: Config) -> dict[str, Any] | None:
        """The summary of a finished run of this configuration in the directory, or None. A grid
        of other points or another shard plan (the `grid` keys, free to change) is not finished:
        it goes on from the runs it has (a new point trains, the others are kept)."""
        s = read_summary(self.dir)
        if not (isinstance(s, dict) and s.get("status") in FINISHED):
            return None
        stored = s.get("config") if isinstance(s.get("config"), dict) else {}
        grid = {k: v for k, v in config_lib.to_dict(config)["grid"].items() if k in GRID_PLAN}
        was = stored.get("grid") if isinstance(stored.get("grid"), dict) else {}
        return s if all(json.dumps(was.get(k)) == json.dumps(v) for k, v in grid.items()) else None

    def intact(self) -> bool:
        """The directory is still the one this process claimed (not removed, moved or replaced)."""
        try:
            here, held = (self.dir / ".dlf.lock").stat(), os.fstat(self._lock.fileno())
        except (OSError, ValueError):
            return False
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def check(self) -> None:
        """A RunDirError if the directory was removed or replaced while this process held it."""
        if not self.intact():
            raise RunDirError(f"{self.dir} was removed or replaced while the run was live (its config.yaml and "
                              "metrics.jsonl are gone); nothing more is written there: rerun the command")

    def release(self) -> None:
        self._lock.close()


def claim(out_dir: Path, config: Config) -> Claim:
    """Lock out_dir for this process and check that it holds no run of another configuration."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = (out_dir / ".dlf.lock").open("a+")
    except OSError as e:
        raise RunDirError(f"cannot use {out_dir} as the run directory (hydra.run.dir): {e.strerror or e}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            lock.close()
            raise RunDirError(f"cannot lock {out_dir / '.dlf.lock'}: its filesystem does not support file locks "
                              f"(flock: {e.strerror or e}); without them two processes could write one run. Put "
                              "hydra.run.dir on a filesystem with locks (local disk, NFS with lockd, Lustre with "
                              "-o flock)") from None
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise RunDirError(f"{out_dir} is in use by another dlf process (pid {holder}); wait for it to end "
                          "or give this run its own hydra.run.dir") from None
    try:
        for name in ("config.yaml", "summary.json"):
            if (out_dir / name).exists() and not (out_dir / name).is_file():
                raise RunDirError(f"{out_dir / name} is not a file; move it away or give this run its own "
                                  "hydra.run.dir")
        if (out_dir / "summary.json").exists() and not isinstance(read_summary(out_dir), dict):
            log.warning("dlf: %s is not a run's summary (not a JSON object); it is replaced", out_dir / "summary.json")
        old = stored_config(out_dir)
        if old is not None and (diff := differing(old, config)):
            raise RunDirError(f"{out_dir} holds a run of another configuration (differs in {', '.join(diff)}); "
                              "give this run its own hydra.run.dir")
    except BaseException:
        lock.close()
        raise
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return Claim(out_dir, lock)


class Preemption:
    """While active, SIGTERM, SIGUSR2, SIGINT (Ctrl-C) and SIGHUP (a closed terminal) only set
    `signum`: the run driver finishes the current compiled chunk, checkpoints and records
    `interrupted`, then `hand_over()` passes the signal to the handler that was there before
    (submitit's: it requeues the job) or exits with 128 + signum (130 for Ctrl-C, 129 for SIGHUP).
    A second signal while the first is pending stops at once: `abort(signum)` records the status
    (the last checkpoint stays the place to resume from) and the process exits with 128 + signum.
    So does a first signal that the driver has not acknowledged (`acknowledge()`, at the end of the
    chunk in flight) within `grace_s` (DLF_SIGNAL_GRACE_S, default 25 s): a long compilation or a
    chunk of one CPU epoch never keeps a signal waiting longer (JAX lets Python's handlers and
    threads run while it compiles or waits on the device)."""
    SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT, signal.SIGHUP)

    def __init__(self, abort: Callable[[int], None] | None = None, grace_s: float | None = None):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._abort = abort
        self.grace_s = float(os.environ.get("DLF_SIGNAL_GRACE_S", 25.0)) if grace_s is None else grace_s
        self._timer: threading.Timer | None = None
        self._lock = threading.RLock()
        self._counts: dict[str, int] = {}
        self._handled = 0
        self._wakeup: tuple[socket.socket, socket.socket, int] | None = None

    def _catch(self, signum, frame) -> None:
        """Python's handler (runs in the main thread once it is back in Python)."""
        self._seen("handler", signum)

    def _seen(self, source: str, signum: int) -> None:
        """Each delivery reaches both the handler and the wake-up fd, in the same order: the n-th
        from either source is acted on once, by whichever sees it first."""
        with self._lock:  # re-entrant: a handler may run inside this block in the main thread
            self._counts[source] = n = self._counts.get(source, 0) + 1
            if n <= self._handled:
                return
            self._handled = n
            self._noted(signum)

    def _watch(self, r: socket.socket) -> None:
        """The watcher thread: the C-level handler writes each signal's number to the wake-up fd at
        once, even while the main thread is inside a compiled call that does not return to Python."""
        while True:
            try:
                got = r.recv(64)
            except OSError:
                return
            if not got:
                return
            for signum in got:
                if signum in self.SIGNALS:
                    self._seen("fd", signum)

    def _noted(self, signum: int) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        name = signal.Signals(signum).name
        if not first:
            self._stop_now(signum, f"caught {name} again")  # does not return
            return
        log.warning("dlf: caught %s: finishing the current chunk (at most %g s), then checkpointing and stopping "
                    "(send it again to stop at once)", name, self.grace_s)
        self._timer = threading.Timer(self.grace_s, self._stop_now, args=(
            signum, f"the current chunk did not end within {self.grace_s:g} s of {name}"))
        self._timer.daemon = True
        self._timer.start()

    def acknowledge(self) -> None:
        """The driver reached a chunk end and stops there: no stop at once."""
        if self._timer is not None:
            self._timer.cancel()

    def _stop_now(self, signum: int, why: str) -> None:
        log.warning("dlf: %s: stopping now; the same command resumes from the last checkpoint", why)
        try:
            if self._abort is not None:
                self._abort(signum)
        finally:
            logging.shutdown()
            os._exit(128 + signum)

    def __enter__(self) -> Preemption:
        for s in self.SIGNALS:
            try:
                self._previous[s] = signal.signal(s, self._catch)
            except ValueError:  # not the main thread: signals stay with whoever has them
                pass
        if self._previous:
            r, w = socket.socketpair()
            w.setblocking(False)
            old = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
            self._wakeup = (r, w, old)
            threading.Thread(target=self._watch, args=(r,), name="dlf-signals", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.acknowledge()
        if self._wakeup is not None:
            r, w, old = self._wakeup
            signal.set_wakeup_fd(old)
            self._wakeup = None
            w.close()
            r.close()
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def hand_over(self) -> None:
        """After the run recorded its interruption: the previous handler's action (not Python's
        KeyboardInterrupt: its traceback says nothing the one line did not), else exit."""
        prev = signal.getsignal(self.signum)
        if callable(prev) and prev is not self._catch and prev is not signal.default_int_handler:
            prev(self.signum, None)  # submitit: checkpoint the job, requeue it, exit
        sys.exit(128 + self.signum)


def execute(out_dir: Path, config: Config, config_yaml: str | None,
            train: Callable[[Preemption, Claim], dict[str, Any]], what: str = "dlf") -> dict[str, Any]:
    """`train(stop, claim)` under the run-directory contract: claim out_dir; a finished run of this
    configuration is returned untouched; else config.yaml and a `running` summary are written,
    `train` runs with SIGTERM/SIGUSR2/SIGINT/SIGHUP deferred to `stop`, an exception is recorded as `failed`
    (with its one-line message) and re-raised, the lock is released, and a caught signal is
    handed over after `train` recorded `interrupted`."""
    out_dir = Path(out_dir)
    hold = claim(out_dir, config)
    try:
        if done := hold.finished(config):
            log.info("%s: %s already holds a finished run (summary.json, status %s); nothing to do. Give "
                     "hydra.run.dir=... to train again.", what, out_dir, done["status"])
            return done
        if config_yaml is not None:
            outputs.write_text(out_dir / "config.yaml", config_yaml)
        outputs.write_json(out_dir / "summary.json", {"status": "running", "pid": os.getpid(),
                                                      "host": socket.gethostname(), "started": time.time(),
                                                      "config": config_lib.to_dict(config)})
        def abort(signum: int) -> None:  # a second signal: the status says so, the checkpoints stay
            outputs.write_json(out_dir / "summary.json", {
                "status": "interrupted", "signal": signal.Signals(signum).name, "stopped_at_once": True,
                "pid": os.getpid(), "config": config_lib.to_dict(config)})

        stop = Preemption(abort)
        try:
            with stop:
                summary = train(stop, hold)
        except Exception as e:
            if not hold.intact():
                raise
            error = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
            outputs.write_json(out_dir / "summary.json", {"status": "failed", "error": error,
                                                          "config": config_lib.to_dict(config)})
            raise
    finally:
        hold.release()
    if summary["status"] == "interrupted":
        stop.hand_over()
    return summary
