"""The command-line entries (dlf.cli.train, phase, aggregate, diagram, fig5) and their one shared
preamble: where the Hydra configs are, the typed config of a composed one, and user errors as one
`dlf: error: ...` line with exit code 2 (dlf.cli.errors)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from dlf import config as config_lib
from dlf.config import Config, ConfigError
from dlf.outputs import write_json

log = logging.getLogger("dlf")
NOISY_LOGGERS = ("jax._src.xla_bridge", "matplotlib", "absl")  # backend probing, fonts, orbax


def conf_dir() -> Path:
    """The Hydra configs: the top-level conf/ of a checkout (what a user edits), else the copy that
    an installed wheel ships inside the package (dlf/conf)."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "conf"
    return shipped if (shipped / "config.yaml").exists() else package.parent / "conf"


def typed_config(cfg) -> Config:
    """The validated Config of a composed Hydra config (the first thing every Hydra entry does)."""
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    check_searchpath()
    return config_lib.from_hydra(cfg)


def check_searchpath() -> None:
    """hydra.searchpath entries that do not exist (Hydra skips them in silence, so the configs a
    user meant to add are not there): one line naming the entry."""
    import importlib.util

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    for entry in HydraConfig.get().searchpath or ():
        scheme, sep, where = str(entry).partition("://")
        if not sep:
            scheme, where = "file", str(entry)
        if scheme == "file":
            ok = Path(where).is_dir()
        elif scheme == "pkg":
            try:
                ok = importlib.util.find_spec(where.replace("/", ".")) is not None
            except (ImportError, ValueError):
                ok = False
        else:
            ok = True
        if not ok:
            raise ConfigError(f"hydra.searchpath: {entry} does not exist; expected a config directory "
                              "(file://DIR) or package (pkg://module)")


def record_failure(out_dir: Path, e: ConfigError) -> None:
    """A config refused before training, as a `failed` summary.json in out_dir (never over the
    record of a run already there)."""
    if not (Path(out_dir) / "config.yaml").exists():
        write_json(Path(out_dir) / "summary.json", {"status": "failed", "error": str(e)})


def user_error(e: Exception, multirun: bool = False) -> None:
    """One line and exit 2 for a single run; in a sweep, a line in this job's train.log (and SLURM
    .out, which otherwise show no error at all), and the launcher records the job as failed."""
    if not multirun:
        print(f"dlf: error: {e}", file=sys.stderr)
        sys.exit(2)
    log.error("dlf: error: %s (this job is not run; the sweep goes on)", e)
    raise e
