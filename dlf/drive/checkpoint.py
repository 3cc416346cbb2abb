"""Orbax checkpoints of a run's stacked train states, in `<run dir>/checkpoints/<unit>/` (the unit
is the epoch of a mini-batch run, the step of a full-batch one).

A rerun of the same command (same run dir) resumes from the newest checkpoint that can be read
(a corrupt or truncated one is removed with one log line, and the previous one is used); the run
is deterministic (epoch permutations are keyed by the epoch), so its final metrics equal those of
an uninterrupted run. The config of the run that wrote the checkpoints is kept beside them and
must match."""
from __future__ import annotations

import json
import logging
import shutil
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


class Checkpoints:
    """The orbax checkpoints of one run, beside the config that wrote them (config.json): a run of
    another configuration (rundir.differing) is refused, naming the keys."""

    def __init__(self, directory: Path, keep: int, config: Config):
        import orbax.checkpoint as ocp

        self.dir = Path(directory).resolve()
        self._ocp = ocp
        self.manager = ocp.CheckpointManager(self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep))
        meta = self.dir / "config.json"
        if self.latest() is not None and meta.exists():
            try:
                old = config_lib.stored(json.loads(meta.read_text()))
            except (ConfigError, ValueError) as e:
                raise ConfigError(f"the run dir holds checkpoints whose config.json cannot be read ({e}); give "
                                  "this run its own hydra.run.dir") from None
            if diff := differing(old, config):
                raise ConfigError("the run dir holds checkpoints of a different config (differs in "
                                  f"{', '.join(diff)}); give this run its own hydra.run.dir")
        self.dir.mkdir(parents=True, exist_ok=True)
        from dlf.outputs import write_json

        write_json(meta, config_lib.to_dict(config))

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, unit: int, states: TrainState) -> None:
        if unit in self.manager.all_steps():
            return  # already there (a run stopped by a signal right after a periodic checkpoint)
        self.manager.save(unit, args=self._ocp.args.StandardSave(_saveable(states)))
        self.manager.wait_until_finished()

    def restore(self, like: TrainState) -> tuple[int, TrainState] | None:
        """(unit, states) of the newest checkpoint that can be read, with the tree structure of
        `like`; None if there is none. An unreadable one is removed (so that it is written again)."""
        target = _saveable(like)
        for unit in sorted(self.manager.all_steps(), reverse=True):
            try:
                got = self.manager.restore(unit, args=self._ocp.args.StandardRestore(target))
                leaves = [np.asarray(got[k]) for k in sorted(target)]
                if any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(leaves, target.values())):
                    raise ValueError("shapes or dtypes differ from this run's states")
            except Exception as e:  # noqa: BLE001 - whatever orbax or tensorstore raise on bad files
                log.warning("dlf: the checkpoint at %d in %s cannot be read (%s: %s); removed, trying the "
                            "previous one", unit, self.dir, type(e).__name__,
                            str(e).splitlines()[0][:200] if str(e) else "")
                shutil.rmtree(self.dir / str(unit), ignore_errors=True)
                self.manager.reload()
                continue
            plain = jax.tree.unflatten(jax.tree.structure(_plain(like)), leaves)
            return unit, plain._replace(key=jax.random.wrap_key_data(plain.key),
                                        probe_key=jax.random.wrap_key_data(plain.probe_key))
        return None

    def close(self) -> None:
        self.manager.close()
