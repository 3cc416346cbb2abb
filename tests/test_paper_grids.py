"""The paper's grids as sweep configs (experiment=fig1_grid, fig3_grid, fig5_grid): what they
expand to, that their headers give the command and the cost per GPU and per CPU, and a reduced
fig3_grid run end to end with the command line replacing part of the grid."""
import pytest
from conftest import CONF, run_cli
from hydra import compose, initialize_config_dir

from dlf import config as config_lib
from dlf.tracking.naming import sweep_size

config_lib.register_resolvers()


@pytest.mark.parametrize("name, jobs, swept", [
    ("fig1_grid", 360, {"schedule.A": "1,25,50,70", "schedule.T": "50,100,300", "seed": "range(30)"}),
    ("fig3_grid", 42, {"schedule.A": "1,5,10,20,30,50,70", "schedule.T": "50,100,200,300,500,1000"}),
    ("fig5_grid", 10, {"optimizer.lr": "0.25,0.5,1,2,4", "model.width": "100,1000"}),
])
def test_paper_grids_expand_to_the_papers_sweeps(name, jobs, swept):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    params = {k: str(v) for k, v in cfg.hydra.sweeper.params.items()}
    assert params == swept and sweep_size([], params) == jobs
    from omegaconf import OmegaConf
    config_lib.from_hydra(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))  # a valid job config
    head = (CONF / "experiment" / f"{name}.yaml").read_text().split("defaults:")[0]
    assert f"python -m dlf.train -m experiment={name}" in head
    assert "Cost" in head and "CPU" in head and "GPU" in head


@pytest.mark.slow
def test_fig3_grid_reduced_on_the_command_line_runs_and_aggregates(tmp_path):
    p = run_cli("-m", "experiment=fig3_grid", "schedule.A=1,10", "schedule.T=30", "seeds=2", "train.steps=60",
                "train.log_every=10", "model.width=4", "hydra.sweep.dir=sw", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(d.name for d in (tmp_path / "sw").iterdir() if d.is_dir()) == ["0_A1_T30_s0", "1_A10_T30_s0"]
    assert "sweep 2/2 jobs done" in p.stdout + p.stderr
    a = run_cli("sw", module="dlf.aggregate", cwd=tmp_path)
    assert a.returncode == 0, a.stderr
    assert (tmp_path / "sw" / "phase.csv").read_text().count("\n") == 3  # header + 2 points
