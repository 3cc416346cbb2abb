"""Hydra entry: `python -m dlf.train [overrides]` composes conf/, validates, and runs."""
from __future__ import annotations

import logging
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
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        from dlf.drive.run import run  # jax is imported only once the config is valid

        return run(run_cfg, out_dir)["status"]  # W&B finds its sweep itself (dlf.tracking.naming)
    except config_lib.ConfigError as e:  # also what only the data can tell (a missing directory, ...)
        write_json(out_dir / "summary.json", {"status": "failed", "error": str(e)})
        if HydraConfig.get().mode == RunMode.RUN:
            print(f"dlf: error: {e}", file=sys.stderr)
            sys.exit(2)
        # into this job's train.log (and SLURM .out), which otherwise show no error at all
        log.error("dlf: error: %s (this job is not run; the sweep goes on)", e)
        raise  # in a sweep: the launcher records this job as failed and goes on
    except Exception as e:
        # keep a record next to whatever the run wrote before failing, then fail loudly
        write_json(out_dir / "summary.json", {"status": "failed", "error": f"{type(e).__name__}: {e}"})
        raise


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
