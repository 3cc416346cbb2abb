"""`python -m dlf.phase grid.A=1,5,10 grid.T=100,300 seeds=50` (dlf-phase): every (A, T, seed) of a
grid in one compiled program (dlf.drive.grid); grid.shards=N splits it into N jobs and merges them."""
from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from dlf import config as config_lib
from dlf.cli import conf_dir, record_failure, typed_config, user_error
from dlf.cli.errors import run_app

config_lib.register_resolvers()


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="phase")
def app(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        phase_cfg = typed_config(cfg)
        if phase_cfg.grid.lr:
            per_lr(cfg, phase_cfg.grid.lr)
            phase_cfg = typed_config(cfg)
        from dlf.drive.grid import check, run_phase  # jax is imported only once the config is valid

        check(phase_cfg)
        summary = run_phase(phase_cfg, out_dir, OmegaConf.to_yaml(cfg, resolve=True))  # records its own failures
    except config_lib.ConfigError as e:
        record_failure(out_dir, e)
        user_error(e)
    if summary.get("status") == "ok":
        from dlf.tracking.wandb_phase import mirror_grid  # logger=wandb: the diagram as one W&B run

        mirror_grid(phase_cfg, out_dir, summary)


def per_lr(cfg: DictConfig, lrs: tuple[float, ...]) -> None:
    """grid.lr_T and grid.lr_steps: schedule.T and train.steps resolved at each of grid.lr, by the
    config's own interpolations (fig5_threshold: T = ${div:5000,${optimizer.lr}}, steps =
    ${div:70000,${optimizer.lr}}); plain values stay the same at every lr."""
    Ts, steps = [], []
    for lr in lrs:
        at = copy.deepcopy(cfg)
        with open_dict(at):
            at.optimizer.lr = float(lr)
        Ts.append(at.schedule.T)
        steps.append(at.train.steps)
    with open_dict(cfg):
        cfg.grid.lr_T, cfg.grid.lr_steps = Ts, steps


_LIST_ARG = re.compile(r"^(\+{0,2}grid\.(?:A|T|lr))=(?!\[|null$)(.+)$")
_SHARDS = re.compile(r"^\+{0,2}grid\.shards=(\d+)$")
_DIR = re.compile(r"^\+{0,2}hydra\.(?:run|sweep)\.dir=")


def list_args(argv: list[str]) -> list[str]:
    """`grid.A=1,5,10` (a sweep to Hydra) -> `grid.A=[1,5,10]` (a list; grid.T, grid.lr alike), `grid.T=40` -> `[40]`: a
    phase diagram is one program, not a sweep of jobs."""
    return [_LIST_ARG.sub(r"\1=[\2]", a) for a in argv]


def main() -> None:
    if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
        print("dlf: error: dlf.phase trains the whole grid in one program; give grid.A=... grid.T=... "
              "without -m (sweeps of jobs: python -m dlf.train -m ...)", file=sys.stderr)
        sys.exit(2)
    argv = list_args(sys.argv[1:])
    shards = ([int(m.group(1)) for a in argv if (m := _SHARDS.match(a))] or [1])[-1]
    if shards < 1:
        print(f"dlf: error: grid.shards={shards} is not allowed; expected an integer >= 1", file=sys.stderr)
        sys.exit(2)
    if shards == 1:
        sys.argv = sys.argv[:1] + argv
        run_app(app)
        return
    dirs = [a.split("=", 1)[1] for a in argv if _DIR.match(a)]
    if not dirs:
        print(f"dlf: error: grid.shards={shards} needs hydra.run.dir=DIR (the shards go to DIR/shard_<k>/, the "
              "merged grid to DIR)", file=sys.stderr)
        sys.exit(2)
    # the shards are the jobs of one sweep (a SLURM array with hydra/launcher=slurm); then one merge
    sys.argv = sys.argv[:1] + ["-m"] + [a for a in argv if not _DIR.match(a)] + [
        f"grid.shard=range(0,{shards})", f"hydra.sweep.dir={dirs[-1]}", "hydra.sweep.subdir=shard_${grid.shard}"]
    run_app(app)
    from dlf.drive.grid import merge

    try:
        merge(Path(dirs[-1]), shards)
    except config_lib.ConfigError as e:
        user_error(e)


if __name__ == "__main__":
    main()
