"""Sweeps under bad inputs and damaged job directories: a bad point stops `dlf.train -m` before any
job runs; `dlf.aggregate` refuses what is not a sweep, names each job it cannot use, aggregates the rest."""
import json

import pytest
import yaml
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_a_bad_point_stops_the_sweep_before_any_job(tmp_path):
    p = run_cli("-m", "schedule.A=10,0.5", "seed=0,1", "train.steps=20", "schedule.T=10", "hydra.sweep.dir=sweep",
                cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert lines[0] == ("dlf: error: job 2 (schedule.A=0.5 seed=0 train.steps=20 schedule.T=10 hydra.sweep.dir=sweep): "
                        "schedule.A=0.5 is not allowed; expected a number >= 1; nothing was launched")
    assert list(tmp_path.iterdir()) == []  # no sweep dir, no job


@pytest.mark.parametrize("what", ["empty", "run", "phase"])
def test_aggregate_refuses_a_directory_without_a_sweep_and_writes_nothing(tmp_path, what):
    d = tmp_path / "d"
    d.mkdir()
    if what != "empty":  # the output directory of one dlf.train or dlf.phase run
        (d / "summary.json").write_text(json.dumps({"status": "ok", "points": 4}))
        (d / "phase.csv").write_text("A,T\n1,100\n")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    p = run_cli(str(d), cwd=tmp_path, module="dlf.aggregate")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert ("holds no sweep" if what == "empty" else "not a sweep") in p.stderr
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_aggregate_names_unusable_jobs_and_aggregates_the_rest(tmp_path):
    p = run_cli("-m", "schedule.A=1,5,10,20", "train.steps=20", "schedule.T=10", "train.log_every=10", "seeds=2",
                "model.width=4", "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = sorted(d for d in sweep.iterdir() if d.is_dir() and not d.name.startswith("."))
    assert len(jobs) == 4
    (jobs[3] / "summary.json").write_text("[1]\n")  # valid JSON of the wrong shape (issue 21, case 10)
    (jobs[0] / "summary.json").write_text((jobs[0] / "summary.json").read_text()[:100])  # cut short
    cfg = yaml.safe_load((jobs[1] / "config.yaml").read_text())  # a summary left by another config
    cfg["seeds"] = 3
    (jobs[1] / "config.yaml").write_text(yaml.safe_dump(cfg))
    p = run_cli(str(sweep), cwd=tmp_path, module="dlf.aggregate")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "1 job(s) ok, 3 failed" in p.stdout
    assert f"failed: {jobs[3].name}: summary.json holds a list, not a run's summary" in p.stdout
    assert f"failed: {jobs[0].name}: summary.json cannot be read" in p.stdout
    assert (f"failed: {jobs[1].name}: summary.json belongs to another configuration than config.yaml "
            "(differs in seeds)") \
        in p.stdout
    rows = (sweep / "phase.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("10.0,")
