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


def _runs(d) -> dict:
    from dlf.analysis.results import read_runs_csv

    return {(r["A"], r["T"], r["seed"]): r for r in read_runs_csv(d / "runs.csv")}


def test_a_new_grid_list_trains_only_the_missing_points(tmp_path, full):
    """Issue 21, case 5: grid.A=1,10,30 into the finished grid.A=1,10 directory trains the two A=30
    points only (not "nothing to do"), and keeps the other runs as they were."""
    import shutil

    d = tmp_path / "g"
    shutil.copytree(full, d)
    more = [a if a != "grid.A=1,10" else "grid.A=1,10,30" for a in GRID]
    p = run_cli(*more, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "8 of 12 runs finished before (runs.partial.jsonl); training the other 4" in p.stdout + p.stderr
    got, before = _runs(d), _runs(full)
    assert sorted({k[0] for k in got}) == [1.0, 10.0, 30.0] and len(got) == 12
    assert {k: got[k] for k in before} == before
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "ok" and s["points"] == 6 and s["config"]["grid"]["A"] == [1.0, 10.0, 30.0]


def test_another_shard_count_re_plans_the_shards(tmp_path, full):
    """Issue 21, case 9: a grid sharded in 3, then the same grid with grid.shards=2 (before: "3 of 2
    shards, not all finished", for good): the new plan reuses every run the old one finished (no
    run trains again), merges (shard_2 of the old plan left out, with a line) and equals the
    one-process grid; the 3-shard command then re-plans back the same way."""
    p = run_cli(*GRID, "grid.shards=3", "hydra.run.dir=sh", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "sh"
    for n, reused in ((2, "4 of 4 runs"), (3, None)):
        again = run_cli(*GRID, f"grid.shards={n}", "hydra.run.dir=sh", cwd=tmp_path, module="dlf.phase")
        out = again.stdout + again.stderr
        assert again.returncode == 0, out[-3000:]
        if reused:
            assert out.count(f"{reused} finished before (runs.partial.jsonl); training the other 0") == 2
            assert "shard_2 left out of the merge" in out
        assert "compiled in" not in out  # nothing trained
        _same(d, full)
        assert json.loads((d / "summary.json").read_text())["shards"] == n


def test_a_grid_resumed_under_other_code_is_refused_or_recorded(tmp_path, full):
    """Issue 21, case 3: a grid killed after its first chunk, then the code changes: refused with
    one line naming runs.partial.jsonl and both source hashes; with checkpoint.allow_other_code it
    goes on and summary.json counts the runs of each code version."""
    from conftest import changed_code

    from dlf.outputs import source_hash

    p = run_cli(*GRID, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase", env={"DLF_FAULT": "1:KILL"})
    assert p.returncode == -9
    new = changed_code(tmp_path)
    again = run_cli(*GRID, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    lines = again.stderr.strip().splitlines()
    assert again.returncode == 2 and len(lines) == 1, again.stderr[-3000:]
    assert f"runs.partial.jsonl holds finished runs of other dlf source ({source_hash()}; this is {new}" in lines[0]
    ok = run_cli(*GRID, "checkpoint.allow_other_code=true", "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    assert ok.returncode == 0, ok.stderr[-3000:]
    d = tmp_path / "g"
    segments = json.loads((d / "summary.json").read_text())["code_segments"]
    assert sorted((x["source"], x["runs"]) for x in segments) == sorted([(source_hash(), 2), (new, 6)])
    _same(d, full)
