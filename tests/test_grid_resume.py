"""A killed or signalled `dlf.phase` grid goes on where it stopped: the same command trains only the
runs not yet finished and ends with the phase.csv and runs.csv of an uninterrupted grid."""
import json
import signal

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

GRID = ["grid.A=1,10", "grid.T=20,50", "seeds=2", "train.steps=60", "train.log_every=30", "model.width=4",
        "grid.chunk_runs=2"]  # 8 runs in 4 chunks of one point each


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("grid")
    p = run_cli(*GRID, "hydra.run.dir=full", cwd=cwd, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    return cwd / "full"


def _same(d, full):
    for name in ("phase.csv", "runs.csv"):
        assert (d / name).read_text() == (full / name).read_text(), name
    assert json.loads((d / "summary.json").read_text())["status"] == "ok"


def test_a_killed_grid_skips_its_finished_runs(tmp_path, full):
    p = run_cli(*GRID, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase", env={"DLF_FAULT": "2:KILL"})
    assert p.returncode == -9
    d = tmp_path / "g"
    assert json.loads((d / "summary.json").read_text())["status"] == "running"  # never taken for a finished grid
    assert not (d / "phase.csv").exists() and not (d / "runs.csv").exists()
    with (d / "runs.partial.jsonl").open("a") as f:
        f.write('{}\n[1]\n')  # valid JSON of the wrong shape (issue 21, case 10): dropped, named
        f.write('{"A": 10.0, "T": 5')  # a line cut short by the kill
    again = run_cli(*GRID, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 8 runs finished before (runs.partial.jsonl); training the other 4" in again.stdout + again.stderr
    assert "runs.partial.jsonl line 5 is not a finished run's row; dropped" in again.stdout + again.stderr
    _same(d, full)
    third = run_cli(*GRID, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    assert third.returncode == 0 and "nothing to do" in third.stdout + third.stderr
    other = run_cli(*GRID, "seeds=3", "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    assert other.returncode == 2 and "holds a run of another configuration (differs in seeds)" in other.stderr


def test_a_signalled_grid_stops_after_its_chunk_and_goes_on(tmp_path, full, monkeypatch):
    p = run_cli(*GRID, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase",
                env={"DLF_FAULT": "1:TERM"})
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-3000:]
    d = tmp_path / "g"
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["runs_done"] == 2
    again = run_cli(*GRID, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    assert again.returncode == 0, again.stderr[-3000:]
    _same(d, full)


def test_a_sharded_grid_merges_to_the_one_process_result(tmp_path, full):
    """grid.shards=2: two jobs (here the basic launcher; SLURM in test_slurm.py), each a resumable
    grid of its own under shard_<k>/, merged into the phase.csv and runs.csv of one process."""
    p = run_cli(*GRID, "grid.shards=2", "hydra.run.dir=sh", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "sh"
    assert sorted(x.name for x in d.glob("shard_*")) == ["shard_0", "shard_1"]
    _same(d, full)
    assert json.loads((d / "summary.json").read_text())["shards"] == 2
    no_dir = run_cli(*GRID, "grid.shards=2", cwd=tmp_path, module="dlf.phase")
    assert no_dir.returncode == 2 and "grid.shards=2 needs hydra.run.dir=DIR" in no_dir.stderr
    too_many = run_cli(*GRID, "grid.shards=5", "hydra.run.dir=sh5", cwd=tmp_path, module="dlf.phase")
    assert too_many.returncode == 2 and "grid.shards=5 is not allowed; expected <= 4" in too_many.stderr
