"""logger=wandb: the W&B mirror of a run, read back from wandb's offline run file.

The CLI tests run `python -m dlf.train logger=wandb ...` in a temporary directory, like
test_e2e.py, then parse `<run>/wandb/offline-run-*/run-*.wandb` with dlf.tracking.wandb_records.
Every test runs with the user's WANDB_* variables removed and wandb's home folders in tmp_path.
"""
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import types

import pytest
import yaml
from conftest import run_cli

from dlf import config as config_lib
from dlf.outputs import read_jsonl
from dlf.tracking import naming
from dlf.tracking.wandb_records import (
    RecordError,
    metrics_rows,
    offline_run_file,
    offline_run_files,
    read_run,
    read_run_dir,
    table,
)

pytest.importorskip("wandb")
slow = pytest.mark.slow  # the CLI tests; the in-process ones below take milliseconds

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def wandb_env(monkeypatch, tmp_path):
    """No user W&B settings or credentials; wandb's own folders (service logs) in tmp_path."""
    for k in list(os.environ):
        if k.startswith("WANDB_"):
            monkeypatch.delenv(k)
    for k in ("CACHE", "CONFIG", "DATA"):
        monkeypatch.setenv(f"WANDB_{k}_DIR", str(tmp_path / "wandb_home" / k.lower()))


class Listener:
    """A local TCP server that counts the connections made to it (and closes them)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _strace_prefix(tmp_path):
    """strace following all processes (wandb-core is a Go binary, so a Python-level hook would
    not see its sockets) and recording every connect/send*, or None where strace cannot run."""
    if not shutil.which("strace"):
        return None
    for extra in (["--seccomp-bpf"], []):
        cmd = ["strace", "-f", "-qq", *extra, "-e", "trace=connect,sendto,sendmsg,sendmmsg"]
        ok = subprocess.run([*cmd, "-o", str(tmp_path / "probe.strace"), "true"],
                            capture_output=True).returncode == 0
        if ok:
            return [*cmd, "-o", str(tmp_path / "run.strace")]
    return None


def _ok_run(p, d):
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((d / "summary.json").read_text())
    return read_jsonl(d / "metrics.jsonl"), s


@slow
def test_offline_run_mirrors_history_summary_config_figure_without_network(tmp_path, tiny):
    """No network, checked two ways. (1) WANDB_BASE_URL points at a local listener: wandb's
    telemetry exporter posts there (it did, once, with the measures of dlf.wandb_log's
    `_offline_everywhere` removed). (2) Where strace works, the whole process tree is traced and
    no socket of family AF_INET/AF_INET6 may be connected or sent to: this also catches DNS
    lookups and any host other than WANDB_BASE_URL (a plain offline wandb.init resolves
    api.forge.coreweave.com at exit)."""
    listener = Listener()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    env["WANDB_BASE_URL"] = listener.url  # any call home would land here
    # offline through W&B's own variable (no logger.mode given); no WANDB_CACHE_DIR: wandb's
    # service logs must land in the run directory, not under $HOME
    env["WANDB_MODE"] = "offline"
    env["HOME"] = str(tmp_path / "home")
    env.pop("WANDB_CACHE_DIR")
    strace = _strace_prefix(tmp_path)
    # log_every=1: 41 history rows, so the run file spans more than one 32 KiB block
    args = [o for o in tiny if not o.startswith("train.log_every")] + [
        "train.log_every=1", "logger=wandb", "logger.tags=[mine]", "figures=true", "hydra.run.dir=run"]
    p = subprocess.run([*(strace or []), sys.executable, "-m", "dlf.train", *args], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    listener.close()
    d = tmp_path / "run"
    rows, s = _ok_run(p, d)
    assert s["status"] == "ok"

    # --- no network: nothing reached the server URL; with strace, no inet socket was used at all
    assert listener.connections == 0
    if strace:
        trace = (tmp_path / "run.strace").read_text()
        inet = [line for line in trace.splitlines() if "AF_INET" in line]
        assert not inet, "offline run used the network:\n" + "\n".join(inet[:10])

    assert yaml.safe_load((d / "config.yaml").read_text())["logger"]["mode"] == "offline"
    assert not [p for p in (tmp_path / "home").rglob("*") if "wandb" in p.parts and p.is_file()]
    assert list((d / "wandb" / "cache").rglob("core-debug-*.log"))  # W&B's own log, in the run directory

    # --- the run file: the one offline run, inside the run directory, complete and closed
    f = offline_run_file(d)
    assert f.stat().st_size > 32 * 1024
    run = read_run(f)
    assert run.exit_code == 0

    # --- history == metrics.jsonl, exactly (every key, every seed, same floats)
    assert len(rows) == 41 and len(rows[0]["loss"]) == 2
    assert metrics_rows(run.history) == rows
    same = lambda rs: [json.dumps(r, sort_keys=True) for r in rs]  # noqa: E731 - same float reprs
    assert same(metrics_rows(run.history)) == same(rows)
    last = run.history[-1]
    assert last["val_acc/mean"] == pytest.approx(sum(rows[-1]["val_acc"]) / 2)

    # --- summary: summary.json's numbers under flat keys
    for key in ("train_acc", "val_acc", "loss", "ce"):
        for stat in ("mean", "std", "n", "per_seed"):
            assert run.summary[f"final/{key}/{stat}"] == s["final"][key][stat], (key, stat)
    for key in ("status", "seeds", "diverged_seeds", "A", "T", "steps", "git_sha", "compile_s"):
        assert run.summary[key] == s[key], key
    assert "config" not in run.summary

    # --- config, name, tags
    assert run.config == yaml.safe_load((d / "config.yaml").read_text())
    assert run.name == "run" and run.project == "dlf" and run.group == ""
    assert sorted(run.tags) == sorted(["A=10", "T=100", "seed=0-1", "mine"])
    # --- a stable id from the run directory (a rerun resumes it), step declared as the x-axis
    assert run.run_id == naming.run_id(d) and run.resumed
    assert run.metrics["step"] == "" and run.metrics["*"] == "step"
    assert [h["step"] for h in run.history[:3]] == [0, 1, 2]

    # --- the figure, as an image file next to the run file
    fig = run.summary["figures/dynamics"]
    assert fig["_type"] == "image-file" and fig["format"] == "png"
    media = f.parent / "files" / fig["path"]
    assert media.read_bytes() == (d / "dynamics.png").read_bytes()
    assert "figures/dynamics" in last  # logged at the last metrics step


@slow
def test_diverged_seed_nulls_round_trip(tmp_path, tiny):
    p = run_cli(*tiny, "seeds=3", "optimizer.lr=1e12", "schedule.A=1", "logger=wandb", "logger.mode=offline",
                "hydra.run.dir=run", cwd=tmp_path)
    d = tmp_path / "run"
    rows, s = _ok_run(p, d)
    assert s["status"] == "diverged" and 0 < len(s["diverged_seeds"]) < 3
    assert any(v is None for r in rows for v in r["loss"])  # the case under test does occur
    run = read_run(offline_run_file(d))
    assert metrics_rows(run.history) == rows
    dead = s["diverged_seeds"][0]
    assert run.history[-1][f"loss/seed_{dead}"] is None
    assert run.summary["final/val_acc/per_seed"] == s["final"]["val_acc"]["per_seed"]
    assert run.summary[f"diverged_at_step/{dead}"] == s["diverged_at_step"][str(dead)]


@slow
def test_multirun_groups_offline_jobs_and_disabled_jobs_write_nothing(tmp_path, tiny):
    """One sweep, 2 seeds x {offline, disabled}: 4 jobs in one process."""
    p = run_cli("-m", *[o for o in tiny if not o.startswith("seeds=")], "seeds=1", "seed=3,4",
                "logger=wandb", "logger.mode=offline,disabled", "hydra.sweep.dir=sweeps/s1",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = sorted(d for d in (tmp_path / "sweeps" / "s1").iterdir() if (d / "config.yaml").exists())
    mode = {d: yaml.safe_load((d / "config.yaml").read_text())["logger"]["mode"] for d in jobs}
    offline = [d for d in jobs if mode[d] == "offline"]
    disabled = [d for d in jobs if mode[d] == "disabled"]
    assert len(offline) == 2 and len(disabled) == 2
    for d in disabled:  # logger.mode=disabled: local files only, not a single W&B file
        assert json.loads((d / "summary.json").read_text())["status"] == "ok"
        assert not (d / "wandb").exists()
    runs = [read_run(offline_run_file(d)) for d in offline]
    assert [r.group for r in runs] == ["sweeps_s1", "sweeps_s1"]
    assert [r.name for r in runs] == [f"sweeps_s1/{d.name}" for d in offline]
    assert [d.name for d in offline] == ["0_A10_T100_s3_mode-offline", "2_A10_T100_s4_mode-offline"]
    assert [r.config["sweep"]["varying"] for r in runs] == [
        {"seed": "3", "logger.mode": "offline"}, {"seed": "4", "logger.mode": "offline"}]
    assert runs[0].run_id != runs[1].run_id
    assert [[t for t in r.tags if t.startswith("seed=")] for r in runs] == [["seed=3"], ["seed=4"]]
    for d, r in zip(offline, runs):
        assert r.exit_code == 0
        assert metrics_rows(r.history) == read_jsonl(d / "metrics.jsonl")
    assert len(list(tmp_path.rglob("*.wandb"))) == 2


@slow
def test_wandb_failure_keeps_local_outputs(tmp_path, tiny, monkeypatch):
    """Online mode against a closed local port: wandb.init gives up after WANDB_INIT_TIMEOUT."""
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "1")
    p = run_cli(*tiny, "logger=wandb", "logger.mode=online", "figures=true", "hydra.run.dir=run", cwd=tmp_path)
    d = tmp_path / "run"
    rows, s = _ok_run(p, d)
    assert s["status"] == "ok" and len(rows) == 5
    assert (d / "dynamics.png").exists() and (d / "config.yaml").exists()
    warnings = [line for line in (d / "train.log").read_text().splitlines() if "logger=wandb" in line]
    assert len(warnings) == 1 and "[WARNING]" in warnings[0], warnings


# --- in-process: the mirror's failure handling, with a fake wandb module -----------------------

class FakeRun:
    def __init__(self, fail_on_log: int | None = None):
        self.logged, self.summary, self.finished = [], {}, []
        self.fail_on_log = fail_on_log
        self.resumed, self.step, self.defined = False, 0, []

    def define_metric(self, name, step_metric=None):
        self.defined.append((name, step_metric))

    def log(self, item, step=None):
        if len(self.logged) == self.fail_on_log:
            raise ConnectionError("server went away\nwith a second line")
        self.logged.append((step, item))

    def finish(self, exit_code=None):
        self.finished.append(exit_code)


def _mirror(monkeypatch, tmp_path, init):
    from dlf.tracking.wandb_mirror import WandbMirror

    fake = types.SimpleNamespace(setup=lambda settings=None: None, Settings=lambda **kw: kw,
                                 init=init, Image=lambda path: ("image", path))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = config_lib.replace(config_lib.from_dict({}), seeds=2,
                             logger={"name": "wandb", "mode": "online"})
    return WandbMirror(cfg, tmp_path, None)


ROW = {"step": 0, "gamma": [1.0, 1.0, 1.0], "loss": [1.5, None], "ce": [1.5, None],
       "train_acc": [0.5, None], "val_acc": [0.25, None]}


def _dlf_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "dlf" and r.levelno == logging.WARNING]


def test_failing_log_warns_once_and_still_closes_the_run(monkeypatch, tmp_path, caplog):
    run = FakeRun(fail_on_log=1)
    m = _mirror(monkeypatch, tmp_path, lambda **kw: run)
    for step in (0, 10, 20):
        m.log_row({**ROW, "step": step})
    m.finish({"status": "ok"}, [tmp_path / "dynamics.png"])
    assert [step for step, _ in run.logged] == [0]  # nothing is sent after the failure
    assert run.summary == {} and run.finished == [1]  # closed, marked failed
    (msg,) = _dlf_warnings(caplog)
    assert "ConnectionError" in msg and "\n" not in msg


def test_failing_init_warns_once_and_never_raises(monkeypatch, tmp_path, caplog):
    def init(**kw):
        raise TimeoutError("no server")

    m = _mirror(monkeypatch, tmp_path, init)
    m.log_row(ROW)
    m.finish({"status": "ok"}, [])
    (msg,) = _dlf_warnings(caplog)
    assert "could not start" in msg and "TimeoutError" in msg


# --- the reader and the key layout, without wandb ------------------------------------------

def test_key_layout_round_trips_seed_numbers_and_nulls():
    from dlf.tracking.wandb_mirror import history_item

    seeds = list(range(8, 12))  # seed_9 < seed_10 numerically, not as strings
    row = {"step": 30, "gamma": [0.25, 2.5, 0.25], "loss": [1.0, None, 0.5, 2.0],
           "ce": [1.0, None, 0.5, 2.0], "train_acc": [1.0, None, 0.0, 0.75],
           "val_acc": [0.5, None, 0.125, 1.0]}
    item = history_item(row, seeds)
    assert item["loss/seed_9"] is None and item["loss/seed_10"] == 0.5
    assert item["loss/mean"] == pytest.approx(3.5 / 3)
    # wandb writes integral floats as JSON integers (1.0 -> 1); the reader makes them floats again
    wire = {k: json.loads(json.dumps(int(v) if isinstance(v, float) and v.is_integer() else v))
            for k, v in item.items()}
    (back,) = metrics_rows([{**wire, "_step": 30, "_runtime": 1.2}])
    assert back == row and json.dumps(back) == json.dumps(row)


def test_reader_rejects_corrupt_files(tmp_path):
    from dlf.tracking.wandb_records import iter_payloads

    with pytest.raises(RecordError, match="header"):
        list(iter_payloads(b"not a run file"))
    import struct
    import zlib

    good = b":W&B\xe1\xbe\x00" + struct.pack("<IHB", zlib.crc32(b"\x01abc"), 3, 1) + b"abc"
    assert list(iter_payloads(good)) == [b"abc"]
    with pytest.raises(RecordError, match="checksum"):
        list(iter_payloads(good[:-1] + b"x"))
    with pytest.raises(RecordError):
        list(iter_payloads(good[:-1]))  # truncated


# --- names from what varies, summary runs of phase diagrams, resumed runs ------------------

@slow
def test_sweep_names_tags_and_config_carry_the_swept_keys(tmp_path, tiny):
    """A Fig. 5-like sweep over optimizer.lr and model.width: directory names, W&B names (unique
    across sweeps), tags and config show both; two sweeps of the same command do not collide."""
    base = [o for o in tiny if not o.startswith(("seeds=", "model.width"))]
    names = {}
    for sweep in ("a", "b"):
        p = run_cli("-m", *base, "seeds=1", "optimizer.lr=0.5,1", "model.width=4,8", "logger=wandb",
                    "logger.mode=offline", f"hydra.sweep.dir=sw/{sweep}", cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
        jobs = sorted((d for d in (tmp_path / "sw" / sweep).iterdir() if d.is_dir()), key=lambda d: d.name)
        assert [d.name for d in jobs] == ["0_A10_T100_s0_lr0.5_width4", "1_A10_T100_s0_lr0.5_width8",
                                          "2_A10_T100_s0_lr1_width4", "3_A10_T100_s0_lr1_width8"]
        for d in jobs:
            run = read_run(offline_run_file(d))
            lr, width = d.name.split("_lr")[1].split("_width")
            assert run.group == f"sw_{sweep}" and run.name == f"sw_{sweep}/{d.name}"
            assert {"A=10", "T=100", "seed=0", f"lr={lr}", f"width={width}"} <= set(run.tags)
            assert run.config["sweep"] == {"group": f"sw_{sweep}", "job": int(d.name[0]),
                                           "varying": {"optimizer.lr": lr, "model.width": width}}
            assert run.config["optimizer"]["lr"] == float(lr) and run.config["model"]["width"] == int(width)
            names[run.name] = run.run_id
    assert len(names) == 8 and len(set(names.values())) == 8


def _phase_run(d):
    run = read_run(offline_run_file(d))
    assert run.exit_code == 0 and run.job_type == "phase"
    columns, data = table(run, "phase/table")
    phase = list(__import__("csv").DictReader((d / "phase.csv").open()))
    assert columns == list(phase[0]) and len(data) == len(phase)
    for got, want in zip(data, phase):
        for c, v in zip(columns, got):
            assert (v is None and want[c] == "") or float(v) == pytest.approx(float(want[c])), (c, v, want[c])
    img = [h["figures/phase"] for h in run.history if "figures/phase" in h][-1]
    assert (offline_run_file(d).parent / "files" / img["path"]).read_bytes() == (d / "phase.png").read_bytes()
    (art,) = run.artifacts
    assert art["type"] == "phase-diagram" and set(art["files"]) == {"phase.csv", "runs.csv"}
    import base64
    import hashlib
    for f, (digest, size) in art["files"].items():
        data = (d / f).read_bytes()
        assert size == len(data) and digest == base64.b64encode(hashlib.md5(data).digest()).decode()
    return run


@slow
def test_phase_grid_logs_table_image_and_artifact(tmp_path):
    p = run_cli("grid.A=1,10", "grid.T=10", "seeds=2", "train.steps=30", "train.log_every=10", "model.width=4",
                "logger=wandb", "logger.mode=offline", "figures=true", "hydra.run.dir=grid", module="dlf.phase",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    run = _phase_run(tmp_path / "grid")
    s = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert run.group == naming.group_of(tmp_path / "grid") and run.name == f"{run.group}/phase"
    assert run.summary["best/val_acc_mean"] == pytest.approx(s["best"]["val_acc_mean"])
    assert run.summary["points"] == 2 and run.summary["runs"] == 4


@slow
def test_aggregate_logs_the_sweep_diagram_in_the_jobs_group(tmp_path, tiny):
    base = [o for o in tiny if not o.startswith("seeds=")]
    p = run_cli("-m", *base, "seeds=1", "schedule.A=1,10", "seed=0,1", "logger=wandb", "logger.mode=offline",
                "hydra.sweep.dir=sw/x", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    a = run_cli("sw/x", module="dlf.aggregate", cwd=tmp_path)
    assert a.returncode == 0, a.stderr[-3000:]
    root = tmp_path / "sw" / "x"
    run = _phase_run(root)
    job = read_run(offline_run_file(next(root.glob("0_*"))))
    assert run.group == job.group == "sw_x" and run.name == "sw_x/aggregate"
    assert run.summary["points"] == 2 and run.summary["jobs_ok"] == 4


@slow
def test_killed_and_rerun_cifar_run_is_one_wandb_run(tmp_path):
    """SIGKILL after epoch 3 (checkpoints every 2 epochs), rerun: both attempts have the run's id,
    and joined as `wandb sync` joins them their history is metrics.jsonl, every epoch once."""
    from test_cifar_data import fake_cifar, write_batches_py
    from test_cifar_train import tiny as cifar_tiny

    cifar = write_batches_py(tmp_path / "cifar-10-batches-py", *fake_cifar(80, 40))
    args = [*cifar_tiny(cifar, "checkpoint.every_epochs=2"), "logger=wandb", "logger.mode=offline",
            "hydra.run.dir=run"]
    killed = run_cli(*args, cwd=tmp_path, env={"DLF_FAULT": "3:KILL"})
    assert killed.returncode != 0
    p = run_cli(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "run"
    first, second = (read_run(f) for f in offline_run_files(d))  # a killed attempt keeps what was flushed
    assert first.run_id == second.run_id == naming.run_id(d) and second.resumed
    assert first.exit_code is None and second.exit_code == 0  # the killed attempt never closed
    run = read_run_dir(d)
    assert run.attempts == 2 and run.exit_code == 0
    rows = read_jsonl(d / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(7))
    assert metrics_rows(run.history) == rows
    assert run.metrics["*"] == "epoch" and run.history[-1]["epoch"] == 6
    assert run.summary["final/val_acc/mean"] == json.loads((d / "summary.json").read_text())["final"]["val_acc"]["mean"]
