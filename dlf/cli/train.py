"""`python -m dlf.train [overrides]` (dlf-train): compose conf/, validate, train one config's seeds
(dlf.drive.run); with -m, every point of the sweep is validated before any job is launched."""
from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dlf import config as config_lib
from dlf.cli import conf_dir, record_failure, typed_config, user_error
from dlf.cli.errors import one_line, run_app

config_lib.register_resolvers()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def app(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        run_cfg = typed_config(cfg)
        if run_cfg.grid.A or run_cfg.grid.T or run_cfg.grid.lr:
            raise config_lib.ConfigError("grid.A, grid.T and grid.lr are for phase diagrams (python -m dlf.phase); "
                                         "dlf.train takes schedule.A, schedule.T and optimizer.lr")
        swept = dict(hc.sweeper.get("params") or {})
        if swept and not multirun:  # a sweep experiment (fig3_grid, ...) run as one job
            raise config_lib.ConfigError(f"this configuration is a sweep over {', '.join(swept)}: add -m "
                                         "(python -m dlf.train -m ...) to launch its jobs")
    except config_lib.ConfigError as e:
        record_failure(hc.runtime.output_dir, e)
        user_error(e, multirun)
    from dlf.drive.run import run  # jax is imported only once the config is valid

    try:  # run() records a failure in summary.json itself (unless it refused the directory);
        # W&B finds its sweep itself (dlf.tracking.naming)
        return run(run_cfg, hc.runtime.output_dir, config_yaml=OmegaConf.to_yaml(cfg, resolve=True))["status"]
    except config_lib.ConfigError as e:  # also what only the data can tell (a missing directory, ...)
        user_error(e, multirun)


_VALUE_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")


def check_sweep(argv: list[str], config_name: str = "config") -> None:
    """Compose and validate every point of a `-m` sweep before any job is launched: one bad
    value is one line (naming the job and the key) and nothing is submitted. Hydra composes the
    defaults once per distinct choice of config groups; each point's plain `key=value` overrides
    are then applied as Hydra applies them (OmegaConf.update, merge=True), so a sweep of 180 seeds
    and cells composes once, not 180 times. A point whose overrides do not apply that way is
    composed by Hydra itself, so its error is Hydra's
    (tests/test_config.py::test_the_sweep_check_validates_each_point_as_hydra_composes_it)."""
    from hydra import compose, initialize_config_dir

    from dlf.tracking.naming import expand

    if any(a.split("=")[0] in _VALUE_FLAGS for a in argv) or os.environ.get("DLF_SWEEP_PRECHECK") == "0":
        return  # another config source (or the tests of a failing job): each job validates itself
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        points = expand(overrides)
        bases: dict[tuple[str, ...], DictConfig] = {}
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            for num, point in enumerate(points):
                try:
                    try:
                        sweep_point(point, lambda groups: compose(config_name=config_name, overrides=groups), bases)
                    except Exception:  # noqa: BLE001 - composed by Hydra itself: its own error, or success
                        config_lib.from_hydra(compose(config_name=config_name, overrides=point))
                except Exception as e:  # noqa: BLE001 - user errors become one line, others are Hydra's
                    msg = one_line(e)
                    if msg is None:
                        return
                    print(f"dlf: error: job {num} ({' '.join(point)}): {msg}; nothing was launched", file=sys.stderr)
                    sys.exit(2)
    except Exception:  # noqa: BLE001 - what this check cannot parse, Hydra reports as it launches
        return


def sweep_point(point: list[str], compose, bases: dict) -> config_lib.Config:
    """The validated Config of one sweep point: `compose(groups)` (Hydra) for its config-group,
    `hydra.*` and prefixed (+, ++, ~, @) overrides, kept in `bases` by those, and then its plain
    `key=value` overrides applied in order, as Hydra applies config overrides after composing the
    defaults."""
    import copy

    from dlf.tracking.naming import parse

    groups, plain = [], []
    for text, o in zip(point, parse(point)):
        key = o.key_or_group
        is_group = (o.package is not None or o.is_add() or o.is_force_add() or o.is_delete() or "/" in key
                    or key.split(".")[0] == "hydra" or (conf_dir() / key).is_dir())
        (groups if is_group else plain).append((text, o))
    base_key = tuple(text for text, _ in groups)
    if base_key not in bases:
        bases[base_key] = compose(list(base_key))
    cfg = copy.deepcopy(bases[base_key])
    for _, o in plain:
        OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    return config_lib.from_hydra(cfg)


def main() -> None:
    if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
        check_sweep(sys.argv[1:])
    run_app(app)


if __name__ == "__main__":
    main()
