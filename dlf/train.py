"""Hydra entry: `python -m dlf.train [overrides]` composes conf/, validates, and runs."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dlf import config as config_lib
from dlf.cli_errors import run_app
from dlf.outputs import write_json

log = logging.getLogger("dlf")
CONF_DIR = "conf"  # dlf/conf, found inside the installed package
config_lib.register_resolvers()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> str:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    for noisy in ("jax._src.xla_bridge", "matplotlib", "absl"):  # backend probing, fonts, orbax
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run_cfg = config_lib.from_hydra(cfg)
        if run_cfg.grid.A or run_cfg.grid.T:
            raise config_lib.ConfigError("grid.A and grid.T are for phase diagrams (python -m dlf.phase); "
                                         "dlf.train takes schedule.A and schedule.T")
    except config_lib.ConfigError as e:
        if not (out_dir / "config.yaml").exists():  # never over the record of a run already there
            write_json(out_dir / "summary.json", {"status": "failed", "error": str(e)})
        _user_error(e)
    from dlf.drive.run import run  # jax is imported only once the config is valid

    try:  # run() records a failure in summary.json itself (unless it refused the directory);
        # W&B finds its sweep itself (dlf.tracking.naming)
        return run(run_cfg, out_dir, config_yaml=OmegaConf.to_yaml(cfg, resolve=True))["status"]
    except config_lib.ConfigError as e:  # also what only the data can tell (a missing directory, ...)
        _user_error(e)


def _user_error(e: Exception) -> None:
    """One line and exit 2 for a single run; in a sweep, a line in this job's train.log (and SLURM
    .out, which otherwise show no error at all) and the launcher records the job as failed."""
    if HydraConfig.get().mode == RunMode.RUN:
        print(f"dlf: error: {e}", file=sys.stderr)
        sys.exit(2)
    log.error("dlf: error: %s (this job is not run; the sweep goes on)", e)
    raise e


_VALUE_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")


def check_sweep(argv: list[str], config_name: str = "config") -> None:
    """Compose and validate every point of a `-m` sweep before any job is launched: one bad
    value is one line (naming the job and the key) and nothing is submitted."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dlf.cli_errors import one_line

    if any(a.split("=")[0] in _VALUE_FLAGS for a in argv) or os.environ.get("DLF_SWEEP_PRECHECK") == "0":
        return  # another config source (or the tests of a failing job): each job validates itself
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        points = [p for batch in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)
                  for p in batch]
        with initialize_config_dir(config_dir=str(Path(__file__).parent / CONF_DIR), version_base="1.3"):
            for num, point in enumerate(points):
                try:
                    config_lib.from_hydra(compose(config_name=config_name, overrides=point))
                except Exception as e:  # noqa: BLE001 - user errors become one line, others are Hydra's
                    msg = one_line(e)
                    if msg is None:
                        return
                    print(f"dlf: error: job {num} ({' '.join(point)}): {msg}; nothing was launched", file=sys.stderr)
                    sys.exit(2)
    except Exception:  # noqa: BLE001 - what this check cannot parse, Hydra reports as it launches
        return


def main() -> None:
    if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
        check_sweep(sys.argv[1:])
    run_app(app)


if __name__ == "__main__":
    main()
