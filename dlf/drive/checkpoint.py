"""Orbax checkpoints of a run's stacked train states, in `<run dir>/checkpoints/<unit>/` (the unit
is the epoch of a mini-batch run, the step of a full-batch one).

A rerun of the same command (same run dir) resumes from the newest checkpoint that can be read
and whose arrays match the SHA-256 sums written beside them (`<unit>/dlf.json`, with the code
version that wrote it); a corrupt, truncated or unverifiable one is removed with one log line, and
the previous one is used (none left: the run starts over). The run is deterministic (epoch
permutations are keyed by the epoch), so its final metrics equal those of an uninterrupted run.
The config of the run that wrote the checkpoints is kept beside them and must match."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from dlf import config as config_lib
from dlf.config import Config
from dlf.core.engine import TrainState
from dlf.drive.rundir import differing
from dlf.errors import ConfigError

log = logging.getLogger("dlf")


def _plain(states: TrainState) -> TrainState:
    """The states with the PRNG keys as raw key data (what orbax can store)."""
    return states._replace(key=jax.random.key_data(states.key), probe_key=jax.random.key_data(states.probe_key))


def _saveable(states: TrainState) -> dict[str, np.ndarray]:
    """The leaves of the states, by position: the tree structure comes from the restoring run."""
    return {f"{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(jax.device_get(_plain(states))))}


META = "dlf.json"  # in each checkpoint's directory: the arrays' sums and the code that wrote them


def _sums(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in arrays.items()}


def _file_sums(step: Path) -> dict[str, str]:
    """SHA-256 of every file of a checkpoint's array data (its default/ item), by relative path."""
    item = step / "default"
    return {f.relative_to(step).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(item.rglob("*")) if f.is_file()}


def _quiet_orphans(record: logging.LogRecord) -> bool:
    """asyncio's logging filter: orbax's reads of a damaged checkpoint leave futures whose errors
    nobody retrieves; asyncio would print each with a traceback, after dlf's one line said it all."""
    return not str(record.msg).startswith(("Future exception was never retrieved", "Task exception was never "
                                                                                   "retrieved"))


class Checkpoints:
    """The orbax checkpoints of one run, beside the config that wrote them (config.json): a run of
    another configuration (rundir.differing) is refused, naming the keys."""

    def __init__(self, directory: Path, keep: int, config: Config):
        import orbax.checkpoint as ocp

        if _quiet_orphans not in logging.getLogger("asyncio").filters:
            logging.getLogger("asyncio").addFilter(_quiet_orphans)
        self.dir = Path(directory).resolve()
        self._ocp = ocp
        meta = self.dir / "config.json"
        held = self.dir.is_dir() and any(c.name.isdigit() for c in self.dir.iterdir())
        try:
            old = config_lib.stored(json.loads(meta.read_text())) if held else None
        except (ConfigError, ValueError, OSError) as e:
            # checkpoints that cannot be tied to a config are never resumed from: set aside, the run starts over
            aside = self.dir.with_name(f"{self.dir.name}.untrusted-{int(time.time())}")
            self.dir.rename(aside)
            log.warning("dlf: %s cannot be read (%s); its checkpoints are moved to %s and the run starts over",
                        meta, str(e).splitlines()[0][:200], aside)
            old = None
        self.manager = ocp.CheckpointManager(self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep))
        if self.latest() is not None and old is not None:
            if diff := differing(old, config):
                raise ConfigError(f"{meta}: the run dir holds checkpoints of a different config (differs in "
                                  f"{', '.join(diff)}); give this run its own hydra.run.dir")
        self.dir.mkdir(parents=True, exist_ok=True)
        from dlf.outputs import write_json

        write_json(meta, config_lib.to_dict(config))

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def clear(self) -> None:
        """Remove every checkpoint (a run that trains again from the start writes its own)."""
        for unit in self.manager.all_steps():
            shutil.rmtree(self.dir / str(unit), ignore_errors=True)
        self.manager.reload()

    def save(self, unit: int, states: TrainState, segments: list[dict]) -> None:
        """Checkpoint `states` at `unit`; its dlf.json holds the arrays' sums and `segments` (the
        code version of each stretch of the run so far: [{from: unit, source, git_sha}, ...])."""
        if unit in self.manager.all_steps():
            return  # already there (a run stopped by a signal right after a periodic checkpoint)
        arrays = _saveable(states)
        self.manager.save(unit, args=self._ocp.args.StandardSave(arrays))
        self.manager.wait_until_finished()
        from dlf.outputs import write_json  # last: a checkpoint without its sums is not trusted

        step = self.dir / str(unit)
        write_json(step / META, {"sha256": _sums(arrays), "files": _file_sums(step), "segments": segments})

    def restore(self, like: TrainState) -> tuple[int, TrainState, dict] | None:
        """(unit, states, dlf.json) of the newest checkpoint that can be read and matches its sums,
        with the tree structure of `like`; None if there is none. An unreadable, corrupt or
        unverifiable one is removed (so that it is written again)."""
        target = _saveable(like)
        units = sorted(self.manager.all_steps(), reverse=True)
        for unit in units:
            try:
                meta = json.loads((self.dir / str(unit) / META).read_text())
                if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), dict)
                        and isinstance(meta.get("segments"), list) and meta["segments"]):
                    raise ValueError(f"{META} is not a checkpoint's record")
                files = meta.get("files") if isinstance(meta.get("files"), dict) else {}
                if not files or _file_sums(self.dir / str(unit)) != files:  # before orbax reads a damaged file
                    raise ValueError("its files do not match the SHA-256 sums written with them (corrupt or "
                                     "truncated data)")
                got = self.manager.restore(unit, args=self._ocp.args.StandardRestore(target))
                leaves = [np.asarray(got[k]) for k in sorted(target)]
                if any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(leaves, target.values())):
                    raise ValueError("shapes or dtypes differ from this run's states")
                if _sums(dict(zip(sorted(target), leaves))) != meta["sha256"]:
                    raise ValueError("its arrays do not match the SHA-256 sums written with them (corrupt data)")
            except Exception as e:  # noqa: BLE001 - whatever orbax or tensorstore raise on bad files
                log.warning("dlf: the checkpoint at %d in %s cannot be read (%s: %s); removed, trying the "
                            "previous one", unit, self.dir, type(e).__name__,
                            str(e).splitlines()[0][:200] if str(e) else "")
                shutil.rmtree(self.dir / str(unit), ignore_errors=True)
                self.manager.reload()
                continue
            plain = jax.tree.unflatten(jax.tree.structure(_plain(like)), leaves)
            return unit, plain._replace(key=jax.random.wrap_key_data(plain.key),
                                        probe_key=jax.random.wrap_key_data(plain.probe_key)), meta
        if units:
            log.warning("dlf: no checkpoint in %s can be trusted; the run starts over", self.dir)
        return None

    def close(self) -> None:
        self.manager.close()
