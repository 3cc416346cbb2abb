"""End-to-end tier: the CLI as a user runs it, in a temporary directory; the files it leaves."""
import json
import os

import numpy as np
import pytest
import yaml
from conftest import run_cli

from dlf.analysis.phase_table import read_csv
from dlf.outputs import read_jsonl

pytestmark = pytest.mark.slow


def _run(tmp_path, *overrides, name="run"):
    p = run_cli(*overrides, f"hydra.run.dir={name}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / name
    return p, d, read_jsonl(d / "metrics.jsonl"), json.loads((d / "summary.json").read_text())


def test_run_writes_config_metrics_summary_figure(tmp_path):
    p, d, rows, s = _run(tmp_path, "schedule.A=10", "schedule.T=40", "seeds=3", "train.steps=250",
                         "train.log_every=100", "model.width=16", "figures=true")
    # resolved config, Hydra's own copy, and the run log
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["schedule"] == {"shape": "triangle", "A": 10, "T": 40, "off_last_periods": 1,
                               "off_from_step": None, "off_from_epoch": None, "off_align": "notebook",
                               "order": "cyclic", "order_seed": 0, "period": "T", "target": "classes"}
    assert (d / ".hydra" / "overrides.yaml").exists() and (d / "train.log").exists()
    # one row per log point: 0, 100, 200 and the remainder chunk's end 250
    assert [r["step"] for r in rows] == [0, 100, 200, 250]
    for r in rows:
        assert set(r) == {"step", "gamma", "loss", "ce", "train_acc", "val_acc", "val_ce"} | (
            {"loss_min", "loss_max"} if r["step"] else set())  # the range of F over the interval
        assert len(r["gamma"]) == 3 and abs(sum(r["gamma"]) - 3) < 1e-5
        assert all(len(r[k]) == 3 for k in ("loss", "ce", "train_acc", "val_acc", "val_ce"))
    assert rows[0]["loss"] == rows[0]["ce"]  # Gamma(0) = 1
    assert rows[-1]["gamma"] == [1.0, 1.0, 1.0]  # oscillations off for the last period
    # step 100 = 2.5 T: class 2 at its peak, Gamma = (3/(A+2), 3/(A+2), 3A/(A+2)); F != CE there
    np.testing.assert_allclose(rows[1]["gamma"], [0.25, 0.25, 2.5], rtol=1e-6)
    assert rows[1]["loss"] != rows[1]["ce"]
    # summary
    assert s["status"] == "ok" and s["diverged_seeds"] == [] and s["seeds"] == [0, 1, 2]
    for key in ("train_acc", "val_acc"):
        st = s["final"][key]
        assert st["per_seed"] == rows[-1][key] and st["n"] == 3
        assert st["mean"] == pytest.approx(np.mean(rows[-1][key]))
        assert st["std"] == pytest.approx(np.std(rows[-1][key], ddof=1))
    assert s["wall_s"] > 0 and s["steps_per_s"] > 0 and s["git_sha"]
    assert (d / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # progress on the terminal
    log = p.stdout + p.stderr
    assert "step 250/250" in log and "steps/s" in log and "train_acc" in log


def test_same_config_and_seed_reproduce_exactly(tmp_path):
    args = ("schedule.A=30", "schedule.T=16", "seeds=2", "seed=4", "train.steps=120",
            "train.log_every=40", "model.width=12")
    _, _, rows_a, a = _run(tmp_path, *args, name="a")
    _, _, rows_b, b = _run(tmp_path, *args, name="b")
    assert rows_a == rows_b
    assert a["final"] == b["final"]
    _, _, rows_c, _ = _run(tmp_path, *args[:3], "seed=5", *args[4:], name="c")
    assert rows_c != rows_a  # the seed does matter


def test_float64_glorot_experiment_command(tmp_path):
    _, d, rows, s = _run(tmp_path, "experiment=fig3_spiral_narrow", "schedule.A=20", "schedule.T=30",
                         "model.init=glorot", "precision=float64", "seeds=2", "train.steps=90",
                         "train.log_every=30")
    assert s["status"] == "ok" and s["config"]["precision"] == "float64"
    assert {k: s["config"]["model"][k] for k in ("name", "width", "init")} == {"name": "mlp", "width": 100,
                                                                              "init": "glorot"}
    # float64 values carry more than float32's 24 bits
    v = rows[-1]["loss"][0]
    assert v != float(np.float32(v))


def test_diverging_run_is_recorded_not_crashed(tmp_path):
    p, d, rows, s = _run(tmp_path, "optimizer.lr=1e30", "seeds=2", "train.steps=30", "schedule.T=10",
                         "train.log_every=10", "model.width=8", "figures=true")
    assert s["status"] == "diverged" and s["diverged_seeds"] == [0, 1]
    assert all(0 <= v < 30 for v in s["diverged_at_step"].values())
    assert s["final"]["train_acc"]["n"] == 0 and s["final"]["train_acc"]["per_seed"] == [None, None]
    assert rows[-1]["loss"] == [None, None]
    assert (d / "dynamics.png").exists()
    assert "diverged" in p.stdout + p.stderr


def test_diverged_seeds_do_not_disturb_the_others(tmp_path):
    """lr=1e12 blows up some initialisations of this tiny net within a few steps and not others;
    the survivors' rows must equal a run of the survivors alone."""
    common = ("optimizer.lr=1e12", "schedule.T=10", "train.steps=20", "train.log_every=5",
              "model.width=16")
    _, _, rows, s = _run(tmp_path, *common, "seed=0", "seeds=4", name="mixed")
    dead = s["diverged_seeds"]
    assert 0 < len(dead) < 4, f"expected a mix of diverged and finite seeds, got {dead}"
    assert s["status"] == "diverged" and s["final"]["train_acc"]["n"] == 4 - len(dead)
    for seed in range(4):
        _, _, alone, s1 = _run(tmp_path, *common, f"seed={seed}", "seeds=1", name=f"alone{seed}")
        assert (s1["status"] == "diverged") == (seed in dead)
        if seed not in dead:
            for r4, r1 in zip(rows, alone):
                for key in ("loss", "ce", "train_acc", "val_acc"):
                    assert r4[key][seed] == r1[key][0]
        else:
            assert s["final"]["val_acc"]["per_seed"][seed] is None
            assert s["diverged_at_step"][str(seed)] == s1["diverged_at_step"][str(seed)]


def test_one_output_root_for_runs_sweeps_grids_and_the_cache(tmp_path):
    """paths.output_dir (conf/paths/default.yaml; $DLF_OUTPUT_DIR, else outputs) is the root of run,
    sweep and phase directories and of the compilation cache: nothing is written elsewhere."""
    tiny = ["train.steps=20", "train.log_every=10", "seeds=2", "model.width=4", "schedule.T=10"]
    env = {"DLF_OUTPUT_DIR": str(tmp_path / "from_env"), "DLF_COMPILE_CACHE": ".jax_cache"}  # the default
    p = run_cli(*tiny, cwd=tmp_path, env=env, fresh_process=True)  # compiles afresh, so writes the cache
    assert p.returncode == 0, p.stderr[-2000:]
    (run,) = (tmp_path / "from_env" / "runs").glob("A10_T10_s0_*")
    assert json.loads((run / "summary.json").read_text())["status"] == "ok"
    assert any((tmp_path / "from_env" / ".jax_cache").iterdir())  # compile_cache, relative to the root
    p = run_cli("-m", *tiny, "paths.output_dir=by_key", "seed=0,1", cwd=tmp_path, env=env)  # the key wins
    assert p.returncode == 0, p.stderr[-2000:]
    assert len(list((tmp_path / "by_key" / "multirun").glob("*/*/*_s[01]/summary.json"))) == 2
    p = run_cli(*tiny, "grid.A=1,10", cwd=tmp_path, env=env, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-2000:]
    assert len(list((tmp_path / "from_env" / "phase").glob("*/*_mlp/phase.csv"))) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["by_key", "from_env"]


@pytest.mark.slow
def test_a_cli_call_in_the_test_process_is_the_one_in_a_fresh_process(tmp_path, tiny):
    """run_cli's in-process call (conftest) gives what `python -m dlf.train` gives in a fresh
    process: the same metrics and finals, exit codes and error line; and it leaves this process's
    environment, working directory and logging as they were."""
    import logging

    before = (dict(os.environ), os.getcwd(), list(logging.getLogger().handlers), logging.getLogger().level)
    here = run_cli(*tiny, "hydra.run.dir=here", cwd=tmp_path, env={"DLF_SOME_VAR": "1"})
    assert before == (dict(os.environ), os.getcwd(), list(logging.getLogger().handlers), logging.getLogger().level)
    fresh = run_cli(*tiny, "hydra.run.dir=fresh", cwd=tmp_path, fresh_process=True)
    assert here.returncode == fresh.returncode == 0, here.stderr[-2000:] + fresh.stderr[-2000:]
    assert "dlf: ok" in here.stdout and "dlf: ok" in fresh.stdout
    assert read_jsonl(tmp_path / "here" / "metrics.jsonl") == read_jsonl(tmp_path / "fresh" / "metrics.jsonl")
    finals = [json.loads((tmp_path / d / "summary.json").read_text())["final"] for d in ("here", "fresh")]
    assert finals[0] == finals[1]
    bad = [run_cli("schedule.A=0", cwd=tmp_path, fresh_process=f) for f in (False, True)]
    assert [p.returncode for p in bad] == [2, 2]
    assert bad[0].stderr.strip().splitlines()[-1] == bad[1].stderr.strip().splitlines()[-1]
    assert bad[0].stderr.strip().splitlines()[-1].startswith("dlf: error: schedule.A")


def test_figures_false_draws_none_keeps_their_data_and_names_the_same_run(tmp_path, tiny):
    """figures=false: no PNG from a run or a grid, every file they are drawn from is there
    (dlf.diagram draws phase.png later), and the run directory's name is the one of figures=true
    (the key is no part of a run's identity). With probes: test_probes_engine.py."""
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    from dlf.config import run_name

    p = run_cli(*tiny, "figures=false", "hydra.run.dir=run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "run"
    assert not list(d.glob("*.png")) and json.loads((d / "summary.json").read_text())["status"] == "ok"
    assert (d / "metrics.jsonl").stat().st_size
    q = run_cli(*tiny, "grid.A=1,10", "grid.T=10", "figures=false", "hydra.run.dir=grid", cwd=tmp_path,
                module="dlf.phase")
    assert q.returncode == 0, q.stderr[-3000:]
    g = tmp_path / "grid"
    assert not list(g.glob("*.png")) and (g / "phase.csv").exists() and (g / "runs.csv").exists()
    assert run_cli(str(g), cwd=tmp_path, module="dlf.diagram").returncode == 0 and (g / "phase.png").exists()
    # the grid goes on over a longer list: the phase.png of the shorter one may not stay beside its tables
    q = run_cli(*tiny, "grid.A=1,10,20", "grid.T=10", "figures=false", "hydra.run.dir=grid", cwd=tmp_path,
                module="dlf.phase")
    assert q.returncode == 0, q.stderr[-3000:]
    assert len(read_csv(g / "phase.csv")) == 3 and not (g / "phase.png").exists()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        names = {o: run_name(compose(config_name="config", overrides=[*tiny, *o]))
                 for o in (("figures=false",), ("figures=true",), ("figures=true", "schedule.A=3"))}
    assert names[("figures=false",)] == names[("figures=true",)] != names[("figures=true", "schedule.A=3")]
