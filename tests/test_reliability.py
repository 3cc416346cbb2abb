"""Faults a user meets, tried as a user would: the run-directory contract (one configuration, one
live process, summary last), preemption by SIGTERM/SIGUSR2, Ctrl-C and SIGHUP, corrupt checkpoints and cut logs, a
failing figure. Each ends with nothing lost (docs/reliability.md lists them)."""
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import changed_code, run_cli

from dlf.outputs import read_jsonl

pytestmark = pytest.mark.slow

# a spiral run long enough to be signalled between its chunks, short enough for a 2-core CPU
ARGS = ["train.steps=400", "train.log_every=50", "seeds=2", "model.width=8"]


def _summary(d: Path) -> dict:
    return json.loads((d / "summary.json").read_text())


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name not in ("train.log", ".dlf.lock")}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The uninterrupted run every fault is compared with."""
    cwd = tmp_path_factory.mktemp("full")
    p = run_cli(*ARGS, "hydra.run.dir=full", cwd=cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    return cwd / "full"


def _same_as(d: Path, full: Path) -> None:
    assert read_jsonl(d / "metrics.jsonl") == read_jsonl(full / "metrics.jsonl")
    assert _summary(d)["status"] == "ok" and _summary(d)["final"] == _summary(full)["final"]


def test_another_config_in_a_run_dir_is_refused_and_changes_nothing(tmp_path, full):
    before = _files(full)
    p = run_cli(*ARGS, "seeds=3", "schedule.A=5", f"hydra.run.dir={full}", cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds a run of another configuration (differs in schedule.A, seeds)" in lines[0]
    assert _files(full) == before


def test_a_finished_run_is_not_trained_again(tmp_path, full):
    before = _files(full)
    p = run_cli(*ARGS, f"hydra.run.dir={full}", "logger=none", cwd=tmp_path)
    assert p.returncode == 0 and "already holds a finished run" in p.stdout + p.stderr
    assert _files(full) == before


# a run that stays live until it is signalled (the generic step at ~35k steps/s on an idle 2-core
# machine: ~5 min for 10M steps; the tests stop it after a few seconds)
LONG = [a for a in ARGS if not a.startswith("train.steps")] + ["train.steps=10000000", "train.step=generic"]


@contextlib.contextmanager
def _live(tmp_path: Path, args: list[str], rows: int, stderr=subprocess.STDOUT, env: dict | None = None):
    """`python -m dlf.train *args` started in tmp_path, yielded once its metrics.jsonl holds `rows`
    rows (the run is live and past its compilation); killed on the way out if still running."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_") and k != "XLA_FLAGS"}
    proc = subprocess.Popen([sys.executable, "-m", "dlf.train", *args], cwd=tmp_path, env={**base, **(env or {})},
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    metrics = tmp_path / next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")) / "metrics.jsonl"
    try:
        deadline = time.time() + 300
        while not (metrics.exists() and metrics.read_text().count("\n") >= rows):
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() else "slow"
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_live_run_dir_refuses_a_second_process(tmp_path):
    """A second process on the directory of a live run: one line, exit 2, nothing of the run written.
    Then the live run, sent SIGTERM from outside, checkpoints and records `interrupted` (exit 143)."""
    long = [*LONG, "hydra.run.dir=live"]
    d = tmp_path / "live"
    with _live(tmp_path, long, rows=2) as first:
        assert _summary(d)["status"] == "running" and _summary(d)["pid"] == first.pid
        before = _files(d)
        second = run_cli(*long, cwd=tmp_path)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is in use by another dlf process (pid {first.pid})" in lines[0]
        assert {k: v for k, v in _files(d).items() if k != "metrics.jsonl"} == \
            {k: v for k, v in before.items() if k != "metrics.jsonl"}
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, out[-3000:]
    s = _summary(d)
    assert s["status"] == "interrupted" and s["signal"] == "SIGTERM" and s["checkpoint"] == s["step"] > 0
    assert (d / "checkpoints" / str(s["step"])).is_dir()
    rows = read_jsonl(d / "metrics.jsonl")
    assert rows[-1]["step"] <= s["step"] and len({r["step"] for r in rows}) == len(rows)


@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP"])  # SIGUSR2, SLURM's: tests/test_slurm.py
def test_a_signalled_run_checkpoints_and_resumes_to_the_uninterrupted_result(tmp_path, full, sig):
    """SIGTERM, Ctrl-C (SIGINT) or SIGHUP between steps 150 and 200 (no periodic checkpoints): the
    run finishes its chunk, checkpoints at step 200, records `interrupted`, exits 128 + signal with
    one line and no traceback; the same command ends as if never stopped."""
    p = run_cli(*ARGS, "hydra.run.dir=run", cwd=tmp_path, env={"DLF_FAULT": f"200:{sig}"})
    assert p.returncode == 128 + getattr(signal, f"SIG{sig}"), p.stderr[-3000:]
    d = tmp_path / "run"
    s = _summary(d)
    assert (s["status"], s["signal"], s["step"], s["checkpoint"]) == ("interrupted", f"SIG{sig}", 200, 200)
    assert f"interrupted by SIG{sig} at step 200; checkpointed: the same command resumes" in p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "KeyboardInterrupt" not in p.stderr
    assert [r["step"] for r in read_jsonl(d / "metrics.jsonl")] == [0, 50, 100, 150, 200]
    again = run_cli(*ARGS, "hydra.run.dir=run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from the checkpoint at step 200" in again.stdout + again.stderr
    _same_as(d, full)


def test_the_same_command_resumes_in_the_same_default_directory(tmp_path, full):
    """Issue 21, case 7: the default run directory is named by the configuration (A, T, seed and a
    config hash), not the time: after a SIGTERM the very same command (no hydra.run.dir) resumes
    from the checkpoint, in the same directory, to the uninterrupted result."""
    p = run_cli(*ARGS, cwd=tmp_path, env={"DLF_FAULT": "200:TERM"})
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-3000:]
    (d,) = (tmp_path / "outputs" / "runs").iterdir()
    assert d.name.startswith("A10_T100_s0_") and _summary(d)["status"] == "interrupted"
    again = run_cli(*ARGS, cwd=tmp_path)
    assert again.returncode == 0 and "resuming from the checkpoint at step 200" in again.stdout + again.stderr
    assert [x.name for x in (tmp_path / "outputs" / "runs").iterdir()] == [d.name]
    _same_as(d, full)


def test_a_second_ctrl_c_stops_at_once_with_a_consistent_status(tmp_path, full):
    """Two SIGINTs after step 100's chunk: the first asks for a checkpoint at the end of the next
    chunk, the second stops the process at once (exit 130) with `interrupted` recorded, whole
    metric rows and no traceback; the same command then trains to the uninterrupted result."""
    p = run_cli(*ARGS, "hydra.run.dir=run", cwd=tmp_path, env={"DLF_FAULT": "100:INT,100:INT"})
    assert p.returncode == 130, p.stderr[-3000:]
    d = tmp_path / "run"
    s = _summary(d)
    assert (s["status"], s["signal"], s["stopped_at_once"]) == ("interrupted", "SIGINT", True)
    assert "caught SIGINT again: stopping now" in p.stdout + p.stderr and "Traceback" not in p.stderr
    assert [r["step"] for r in read_jsonl(d / "metrics.jsonl")] == [0, 50]  # step 100's row: not yet written
    again = run_cli(*ARGS, "hydra.run.dir=run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    _same_as(d, full)


def _killed(tmp_path: Path, *extra: str) -> Path:
    """A run with checkpoints every 100 steps, killed (-9) right after step 300."""
    p = run_cli(*ARGS, "checkpoint.every_steps=100", "hydra.run.dir=run", *extra, cwd=tmp_path,
                env={"DLF_FAULT": "300:KILL"})
    assert p.returncode == -9, p.stderr[-3000:]
    d = tmp_path / "run"
    assert _summary(d)["status"] == "running"  # what a killed run leaves: never mistaken for a finished one
    assert sorted(int(c.name) for c in (d / "checkpoints").iterdir() if c.name.isdigit()) == [200, 300]
    return d


def _resume(tmp_path: Path) -> str:
    p = run_cli(*ARGS, "checkpoint.every_steps=100", "hydra.run.dir=run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    return p.stdout + p.stderr


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, full):
    d = _killed(tmp_path)
    for f in (d / "checkpoints" / "300").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # truncated files
    out = _resume(tmp_path)
    assert "the checkpoint at 300" in out and "cannot be read" in out
    assert "resuming from the checkpoint at step 200" in out
    _same_as(d, full)


@pytest.mark.parametrize("damage", ["a bit flipped in its largest array file", "arrays unlike their sums",
                                    "its record (dlf.json) gone"])
def test_a_damaged_checkpoint_is_never_resumed_from(tmp_path, full, damage):
    """Issue 21, case 1: one bit flipped in the middle of the largest file of the newest checkpoint
    (orbax resumed from it before), arrays that do not hash to the sums written with them (what a
    decoding fault gives), or a checkpoint without its record: one line naming it, the previous
    checkpoint is used, the run ends as the uninterrupted one, and no asyncio tracebacks."""
    d = _killed(tmp_path)
    step = d / "checkpoints" / "300"
    if damage.startswith("a bit"):
        f = max((f for f in (step / "default").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
        b = bytearray(f.read_bytes())
        b[len(b) // 2] ^= 1
        f.write_bytes(bytes(b))
        why = "its files do not match the SHA-256 sums written with them"
    elif damage.startswith("arrays"):
        meta = json.loads((step / "dlf.json").read_text())
        first = sorted(meta["sha256"])[0]
        meta["sha256"][first] = "0" * 64
        (step / "dlf.json").write_text(json.dumps(meta))
        why = "its arrays do not match the SHA-256 sums written with them"
    else:
        (step / "dlf.json").unlink()
        why = "No such file or directory"
    out = _resume(tmp_path)
    assert f"the checkpoint at 300 in {d / 'checkpoints'} cannot be read" in out and why in out
    assert "resuming from the checkpoint at step 200" in out and "Traceback" not in out
    _same_as(d, full)


def test_a_resume_under_other_code_is_refused_or_recorded(tmp_path, full):
    """Issue 21, case 3: killed after step 300, then the code changes (a copy of dlf with one file
    edited, imported in place of the checkout): the same command is refused with one line naming
    the checkpoint and both source hashes, and nothing is trained; with checkpoint.allow_other_code
    it resumes, and summary.json records each segment's code (steps 0-300 old, 300- new)."""
    from dlf.outputs import source_hash

    d = _killed(tmp_path)
    new = changed_code(tmp_path)
    assert new != source_hash()
    rows_before = (d / "metrics.jsonl").read_text()
    p = run_cli(*ARGS, "checkpoint.every_steps=100", "hydra.run.dir=run", cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-3000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{d / 'checkpoints' / '300'} was written by other dlf source (source " \
        f"{source_hash()}" in lines[0]
    assert f"this is {new}" in lines[0] and "checkpoint.allow_other_code=true" in lines[0]
    assert (d / "metrics.jsonl").read_text() == rows_before and (d / "checkpoints" / "300").is_dir()
    p = run_cli(*ARGS, "checkpoint.every_steps=100", "checkpoint.allow_other_code=true", "hydra.run.dir=run",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming from the checkpoint at step 300" in p.stdout + p.stderr
    segments = _summary(d)["code_segments"]
    assert [(x["from"], x["source"]) for x in segments] == [(0, source_hash()), (300, new)]
    _same_as(d, full)


def test_a_run_dir_whose_records_disagree_is_refused(tmp_path, full):
    """Issue 21, case 6: a copied run directory whose config.yaml says A=20 while summary.json
    holds the A=10 run: the A=20 command is refused naming both files (not "nothing to do"), and
    dlf.results does not return the A=10 results as A=20."""
    import shutil

    from dlf.analysis.results import ResultsError, load, read_run

    d = tmp_path / "copy"
    shutil.copytree(full, d)
    (d / "config.yaml").write_text((d / "config.yaml").read_text().replace("A: 10", "A: 20", 1))
    p = run_cli(*ARGS, "schedule.A=20", f"hydra.run.dir={d}", cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.yaml and summary.json describe different runs (differ in schedule.A)" in lines[0]
    run = read_run(d)
    assert run.status == "failed" and "summary.json belongs to another configuration than config.yaml" in run.error
    with pytest.raises(ResultsError, match="no finished run"):
        load(d)


@pytest.mark.parametrize("what", ["summary.json [1]", "checkpoints/config.json [1]", "config.yaml a directory",
                                  "summary.json a directory"])
def test_a_malformed_record_names_the_file_and_never_sticks(tmp_path, full, what):
    """Issue 21, case 10: valid JSON of the wrong shape in summary.json (the run resumes, the
    file is replaced) or checkpoints/config.json (checkpoints that cannot be tied to a config are
    set aside, the run starts over); a record that is a directory: one line naming it, exit 2."""
    d = _killed(tmp_path)
    name, _, bad = what.partition(" ")
    if bad == "[1]":
        (d / name).write_text("[1]\n")
    else:
        (d / name).unlink()
        (d / name).mkdir()
    p = run_cli(*ARGS, "checkpoint.every_steps=100", "hydra.run.dir=run", cwd=tmp_path)
    out = p.stdout + p.stderr
    if bad != "[1]":
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and f"{d / name} is not a file" in lines[0]
        return
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in out
    if name == "summary.json":
        assert f"{d / name} is not a run's summary (not a JSON object); it is replaced" in out
        assert "resuming from the checkpoint at step 300" in out
    else:
        assert f"{d / name} cannot be read (a config must be a mapping of keys, got list); its checkpoints are " \
               "moved to" in out and "resuming" not in out
        assert [x.name for x in d.glob("checkpoints.untrusted-*")]
    _same_as(d, full)


def test_a_truncated_metrics_log_is_repaired_on_resume(tmp_path, full):
    d = _killed(tmp_path)
    text = (d / "metrics.jsonl").read_text()
    (d / "metrics.jsonl").write_text(text + text.splitlines()[-1][:25])  # a last line cut short
    out = _resume(tmp_path)
    assert "dropped a truncated last line" in out and "resuming from the checkpoint at step 300" in out
    _same_as(d, full)


@pytest.mark.parametrize("damage", ["missing", "a middle line of the wrong shape"])
def test_a_missing_or_damaged_metrics_log_trains_again_from_the_start(tmp_path, full, damage):
    """A metrics.jsonl that is gone, or whose middle line is valid JSON of the wrong shape (issue
    21, case 10): the rows cannot be trusted, so the run trains again from the start, with one
    warning naming the file, no traceback, and ends as the uninterrupted run."""
    d = _killed(tmp_path)
    if damage == "missing":
        (d / "metrics.jsonl").unlink()
    else:
        lines = (d / "metrics.jsonl").read_text().splitlines()
        (d / "metrics.jsonl").write_text("\n".join([lines[0], "[1]", *lines[2:]]) + "\n")
    out = _resume(tmp_path)
    assert "lacks rows before the checkpoint at step 300; training again from the start" in out
    if damage != "missing":
        assert f"{d / 'metrics.jsonl'} cannot be read (a line that is not a metrics row)" in out
    _same_as(d, full)


def test_a_failing_figure_or_logger_is_a_warning(tmp_path, monkeypatch, caplog):
    """A full disk under the final figure, a tracker that fails: warnings; status and finals stay."""
    import dlf.figures.dynamics
    from dlf import config as config_lib
    from dlf.drive import run as run_lib
    from dlf.drive import session

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    class Broken:
        def log_row(self, row):
            raise RuntimeError("tracker down")

        def finish(self, summary, figures):
            raise RuntimeError("tracker down")

    monkeypatch.setattr(dlf.figures.dynamics, "dynamics", full_disk)
    monkeypatch.setattr(session, "open_mirror", lambda *a: Broken())
    cfg = config_lib.from_dict({"train": {"steps": 20, "log_every": 10}, "seeds": 1, "schedule": {"T": 10},
                                "model": {"name": "mlp", "width": 4},
                                "compile_cache": None})
    s = run_lib.run(cfg, tmp_path / "run")
    assert s["status"] == "ok" and s["final"]["val_acc"]["n"] == 1
    assert _summary(tmp_path / "run")["final"] == s["final"]
    assert "the dynamics figure failed (OSError" in caplog.text and "tracker down" in caplog.text


def test_an_unwritable_compile_cache_is_a_warning(tmp_path):
    (tmp_path / "file").write_text("")
    p = run_cli(*ARGS, "train.steps=20", "schedule.T=10", "train.log_every=10", f"compile_cache={tmp_path}/file/cache",
                "hydra.run.dir=run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"compile_cache={tmp_path}/file/cache cannot be used" in p.stdout + p.stderr
    assert _summary(tmp_path / "run")["status"] == "ok"


def test_outputs_are_written_atomically(tmp_path):
    from dlf.outputs import write_json

    f = tmp_path / "summary.json"
    write_json(f, {"status": "ok"})
    with pytest.raises(ValueError):
        write_json(f, {"status": float("nan")})  # fails while writing
    assert json.loads(f.read_text()) == {"status": "ok"} and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_outputs_respect_the_umask(tmp_path, full):
    """Files written atomically get the permissions of any new file (0644 under umask 022), not
    mkstemp's 0600: colleagues on a shared filesystem can read the results."""
    from dlf.outputs import umask, write_csv, write_json

    for mask in (0o022, 0o027):
        old = os.umask(mask)
        try:
            assert umask() == mask
            write_json(tmp_path / f"s{mask}.json", {"status": "ok"})
            write_csv(tmp_path / f"r{mask}.csv", ["a"], [{"a": 1}])
            (tmp_path / f"plain{mask}").write_text("")
        finally:
            os.umask(old)
        modes = {(tmp_path / f"{n}{mask}{e}").stat().st_mode & 0o777 for n, e in (("s", ".json"), ("r", ".csv"),
                                                                                  ("plain", ""))}
        assert modes == {0o666 & ~mask}
    # every file of a whole run (the CLI inherited this process's umask)
    got = {f.name: f.stat().st_mode & 0o777 for f in full.iterdir() if f.is_file()}
    assert {"summary.json", "config.yaml", "metrics.jsonl"} <= set(got)
    assert set(got.values()) == {0o666 & ~umask()}, got


def test_lock_is_released_with_the_process(tmp_path):
    """A run killed with -9 leaves no stale lock: the next process takes the directory."""
    from dlf.drive import rundir

    d = tmp_path / "run"
    d.mkdir()
    with (d / ".dlf.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(rundir.RunDirError, match="in use by another dlf process"):
            rundir.claim(d, {})
    rundir.claim(d, {}).release()


def test_a_lock_failure_on_a_filesystem_without_flock_says_so(tmp_path, monkeypatch):
    """A filesystem without file locks (some NFS mounts) makes flock fail with ENOLCK: that is said
    as such (not "in use by another dlf process"), and nothing is written."""
    import errno

    from dlf.drive import rundir

    def no_locks(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    with pytest.raises(rundir.RunDirError, match="its filesystem does not support file locks .flock: No locks "
                                                 "available.; without them two processes could write one run"):
        rundir.claim(tmp_path / "run", {})
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".dlf.lock"]


def test_a_run_dir_removed_mid_run_ends_with_one_line_not_ok(tmp_path):
    """Issue 21: a run directory deleted while the run is live used to end `ok` with its
    metrics.jsonl and config.yaml gone. Now the next chunk boundary notices (the lock file is not
    the one this process holds), the run stops with one line (exit 2) and writes nothing more."""
    import shutil

    d = tmp_path / "live"
    with _live(tmp_path, [*LONG, "hydra.run.dir=live"], rows=2, stderr=subprocess.PIPE) as proc:
        shutil.rmtree(d)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-3000:]
    lines = [x for x in err.strip().splitlines() if x.startswith("dlf: error:")]
    assert len(lines) == 1 and f"{d} was removed or replaced while the run was live" in lines[0]
    assert "Traceback" not in err
    assert not (d / "summary.json").exists() and not (d / "metrics.jsonl").exists()


def test_a_signal_in_a_long_chunk_is_honoured_within_the_grace_time(tmp_path):
    """Issue 21: a chunk (here 3M generic steps, ~1.5 min; on a CPU, one CIFAR epoch) used to keep
    a SIGTERM waiting until it ended. The handler runs while JAX waits on the device, and a first
    signal not acknowledged at a chunk end within DLF_SIGNAL_GRACE_S (default 25 s; 3 s here) stops
    the run at once: `interrupted` (`stopped_at_once`), one line, exit 143, whole metric rows."""
    long = ["train.steps=6000000", "train.log_every=3000000", "seeds=2", "model.width=8", "train.step=generic",
            "hydra.run.dir=long"]
    d = tmp_path / "long"
    with _live(tmp_path, long, rows=1, env={"DLF_SIGNAL_GRACE_S": "3"}) as proc:
        time.sleep(1.0)  # well inside the first 3M-step chunk
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        waited = time.time() - t0
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert waited < 3 + 10, waited  # the grace time, plus writing the status
    assert "the current chunk did not end within 3 s of SIGTERM: stopping now" in out and "Traceback" not in out
    s = _summary(d)
    assert (s["status"], s["signal"], s["stopped_at_once"]) == ("interrupted", "SIGTERM", True)
    assert [r["step"] for r in read_jsonl(d / "metrics.jsonl")] == [0]
