"""Mirrors of a run's local outputs to experiment trackers (logger=...). The local files are the
primary copy: a mirror that fails warns once and turns itself off; it never stops the run."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("dlf")


class Mirror(Protocol):
    def log_row(self, row: dict[str, Any]) -> None: ...
    def finish(self, summary: dict[str, Any], figures: list[Path]) -> None: ...


class NullMirror:
    """logger=none: local files only."""

    def log_row(self, row: dict[str, Any]) -> None:
        pass

    def finish(self, summary: dict[str, Any], figures: list[Path]) -> None:
        pass


def open_mirror(cfg, out_dir: Path, group: str | None = None) -> Mirror:
    """The configured mirror for one run directory. `group` names the sweep the run belongs to."""
    if cfg.logger.name == "none" or cfg.logger.mode == "disabled":
        return NullMirror()
    try:
        from dlf.tracking.wandb_mirror import WandbMirror

        return WandbMirror(cfg, Path(out_dir), group)
    except Exception as e:  # noqa: BLE001 - a tracker must never cost the local outputs
        log.warning("dlf: logger=%s could not start (%s: %s); continuing with local files only",
                    cfg.logger.name, type(e).__name__, e)
        return NullMirror()
