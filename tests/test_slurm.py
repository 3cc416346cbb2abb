"""SLURM tier: a Hydra sweep through a real SLURM cluster (conf/hydra/launcher/slurm.yaml), one of
whose jobs fails validation; the same sweep with the basic (local) launcher for comparison.

The SLURM test needs a running cluster: `launch/slurm_up.sh` brings up a one-node one here (CI does,
see .ci/run). Without one the test is skipped, unless DLF_REQUIRE_SLURM=1, which makes it fail.
"""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import run_cli

from dlf.outputs import read_jsonl

pytestmark = pytest.mark.slow

# four jobs; job #1 (A=0.5) fails validation (A must be >= 1), the others must not mind
AMPLITUDES = ["2", "0.5", "5", "10"]
BAD = 1


def _slurm_partition() -> str:
    """The default partition of a usable SLURM cluster; skips (or fails) when there is none."""
    def unavailable(reason: str):
        if os.environ.get("DLF_REQUIRE_SLURM") == "1":
            pytest.fail(f"DLF_REQUIRE_SLURM=1 but {reason}; bring it up with DLF_SLURM_THROWAWAY=1 launch/slurm_up.sh")
        pytest.skip(f"{reason}; bring one up with DLF_SLURM_THROWAWAY=1 launch/slurm_up.sh")

    if shutil.which("sinfo") is None:
        unavailable("no SLURM client here (sinfo not on PATH)")
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True,
                           timeout=30)
    except subprocess.TimeoutExpired:
        unavailable("sinfo did not answer within 30 s (slurmctld down?)")
    if p.returncode != 0:
        unavailable(f"sinfo failed: {p.stderr.strip()[:200]}")
    rows = [line.split() for line in p.stdout.splitlines() if line.strip()]
    default = [r for r in rows if r[0].endswith("*")] or rows
    # a node that runs jobs: idle, mixed or allocated (busy, e.g. with the jobs of the other SLURM
    # test running beside this one on the other pytest worker: ours queue until CPUs are free)
    up = ("idle", "mixed", "allocated", "completing")
    usable = [r[0].rstrip("*") for r in default if len(r) == 2 and r[1] in up]
    if not usable:
        unavailable(f"no node up in the default partition (sinfo: {p.stdout.strip()[:200]!r}; "
                    f"expected one of: {', '.join(up)})")
    return usable[0]


def _sweep(tmp_path, tiny, *launcher: str) -> tuple[subprocess.CompletedProcess, object]:
    sweep = tmp_path / "sweep"
    p = run_cli("-m", f"schedule.A={','.join(AMPLITUDES)}", *tiny, f"hydra.sweep.dir={sweep}",
                *launcher, cwd=tmp_path, timeout=600,
                env={"DLF_SWEEP_PRECHECK": "0"})  # a job that fails: no check of the sweep before launching
    return p, sweep


def _check_sweep(p: subprocess.CompletedProcess, sweep) -> dict:
    """What both launchers must do: run every job, record the bad one as failed in its own
    summary.json and log, keep the others, and end the sweep with exit 2 and two stderr lines
    naming the failed job and the error. Returns {job num: run dir}."""
    dirs = {int(d.name.split("_")[0]): d for d in sweep.iterdir()
            if d.is_dir() and d.name[0].isdigit()}
    assert sorted(dirs) == list(range(len(AMPLITUDES))), (sorted(dirs), p.stderr[-2000:])
    for num, a in enumerate(AMPLITUDES):
        d = dirs[num]
        assert d.name == f"{num}_A{a}_T100_s0"
        summary = json.loads((d / "summary.json").read_text())
        if num == BAD:
            assert summary["status"] == "failed", summary
            assert "schedule.A=0.5" in summary["error"] and ">= 1" in summary["error"], summary
            assert not (d / "metrics.jsonl").exists() and not (d / "config.yaml").exists()
            assert "dlf: error: schedule.A=0.5" in (d / "train.log").read_text()
        else:
            assert summary["status"] == "ok", (d.name, summary)
            assert summary["seeds"] == [0, 1]
            rows = read_jsonl(d / "metrics.jsonl")
            assert [r["step"] for r in rows] == [0, 10, 20, 30, 40]
            assert yaml.safe_load((d / "config.yaml").read_text())["schedule"]["A"] == float(a)
    # the sweep as a whole fails (exit 2, as a bad override of a single run does), and says which
    # job and why, in two lines, without a traceback
    assert p.returncode == 2, p.stderr[-3000:]
    # (a cluster without accounting adds submitit's "Bypassing sacct error" warnings, and sacct's
    # own complaint, on every poll: the cluster's noise, not dlf's; slurm_up.sh sets accounting up)
    lines = [ln for ln in p.stderr.strip().splitlines()
             if "Bypassing sacct error" not in ln and ln != "Slurm accounting storage is disabled"]
    assert len(lines) == 2, p.stderr[-3000:]
    assert lines[0].startswith("Error executing job with overrides: ['schedule.A=0.5'"), lines
    assert lines[1] == "dlf: error: schedule.A=0.5 is not allowed; expected a number >= 1", lines
    assert "Traceback" not in p.stdout + p.stderr
    return dirs


def test_sweep_with_failing_job_basic_launcher(tmp_path, tiny):
    p, sweep = _sweep(tmp_path, tiny)
    _check_sweep(p, sweep)
    # the failure also shows in the sweep's own output, where the job ran
    assert "dlf: error: schedule.A=0.5 is not allowed" in p.stdout


@pytest.mark.slurm
def test_sweep_with_failing_job_through_slurm(tmp_path, tiny):
    partition = _slurm_partition()
    submitit_dir = tmp_path / "sweep" / ".submitit"
    try:
        p, sweep = _sweep(tmp_path, tiny, "hydra/launcher=slurm",
                          f"hydra.launcher.partition={partition}", "hydra.launcher.cpus_per_task=1",
                          "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=1",
                          "hydra.launcher.timeout_min=10")
    except BaseException:
        # the sweep timed out (or the test was interrupted): leave no jobs of ours on the cluster
        ids = {d.name.split("_")[0] for d in submitit_dir.glob("*") if d.is_dir()}
        if ids:
            subprocess.run(["scancel", *sorted(ids)], capture_output=True, timeout=30)
        raise
    dirs = _check_sweep(p, sweep)
    assert "Submitit 'slurm' sweep output dir" in p.stdout
    # every job ran as a task of one SLURM job array (hydra.job.id = <array id>_<task>), and its
    # submitit files and SLURM logs sit in the sweep dir
    job_ids = {}
    for num, d in dirs.items():
        hydra_cfg = yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text())
        job_ids[num] = str(hydra_cfg["hydra"]["job"]["id"])
        assert re.fullmatch(rf"\d+_{num}", job_ids[num]), job_ids
        assert list((submitit_dir / job_ids[num]).glob("*_result.pkl")), job_ids[num]
    assert len({j.split("_")[0] for j in job_ids.values()}) == 1, job_ids
    # the failed job's SLURM log says why (SLURM itself records the job as COMPLETED: the Python
    # function submitit ran returned normally, with Hydra's failed-job record)
    bad_log = (submitit_dir / job_ids[BAD] / f"{job_ids[BAD]}_0_log.out").read_text()
    assert "dlf: error: schedule.A=0.5 is not allowed" in bad_log


def test_sweep_slurm_rejects_is_one_line(tmp_path, tiny):
    """A sweep SLURM refuses (here: a GPU on a cluster without GPUs) stops with one line."""
    partition = _slurm_partition()
    if "gpu" in subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout:
        pytest.skip("this cluster has GPUs")
    p = run_cli("-m", "schedule.A=1,2", *tiny, f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra/launcher=slurm",
                f"hydra.launcher.partition={partition}", "hydra.launcher.gpus_per_node=1", cwd=tmp_path,
                timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("dlf: error: SLURM rejected the sweep: "), p.stderr
    assert "Traceback" not in p.stderr


def _wait(cond, what: str, timeout: float, proc=None) -> None:
    import time

    end = time.time() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended while waiting for {what}: {proc.stdout.read()[-3000:]}")
        if time.time() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


def _requeued(job: str) -> bool:
    """The job is pending again after a requeue, held by SLURM until its begin time."""
    p = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True, timeout=30)
    return p.stdout.split()[:2] == ["PENDING", "BeginTime"]


@pytest.mark.slurm
def test_preempted_slurm_job_requeues_resumes_and_the_sweep_aggregates_as_uninterrupted(tmp_path):
    """scancel --signal=USR2 on a running sweep job (what SLURM sends before the time limit or on
    preemption): the job finishes its chunk, checkpoints, records `interrupted`, submitit requeues
    it, the requeued job resumes from the checkpoint, and the sweep's aggregate (phase.csv) and the
    job's metrics equal those of the same sweep run without interruption."""
    import sys

    partition = _slurm_partition()
    # the generic step, 150k steps: ~5 s per job on an idle machine, long enough to be signalled (the
    # signal follows the job's second metrics row, 1000 steps in, by about a second)
    args = ["-m", "schedule.A=5,10", "train.steps=150000", "train.log_every=1000", "seeds=2", "model.width=8",
            "compile_cache=null", "train.step=generic"]
    ref = run_cli(*args, "hydra.sweep.dir=ref", cwd=tmp_path, timeout=900)
    assert ref.returncode == 0, ref.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_") and k != "XLA_FLAGS"}
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "dlf.train", *args, f"hydra.sweep.dir={sweep}",
                             "hydra/launcher=slurm",
                             f"hydra.launcher.partition={partition}", "hydra.launcher.cpus_per_task=1",
                             "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=1",
                             "hydra.launcher.timeout_min=20"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job = sweep / "0_A5_T100_s0"
        metrics = job / "metrics.jsonl"
        _wait(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, "job 0 to train", 600, proc)
        ids = {d.name.split("_")[0] for d in (sweep / ".submitit").iterdir() if d.name.split("_")[0].isdigit()}
        assert len(ids) == 1, ids  # one job array
        array = ids.pop()
        subprocess.run(["scancel", "--signal=USR2", f"{array}_0"], check=True, timeout=30)
        # SLURM holds a requeued job until 120 s after the requeue (squeue: PENDING, BeginTime); what
        # an operator may do, and what this test does to spend those 120 s on nothing: start it now
        _wait(lambda: _requeued(f"{array}_0"), "the job to be requeued", 300, proc)
        subprocess.run(["scontrol", "update", f"JobId={array}_0", "StartTime=now"], check=True, timeout=30)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", "--name=dlf"], capture_output=True, timeout=30)
    assert proc.returncode == 0, out[-3000:]
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob(f"{array}_0/*_log.*"))
    assert "caught SIGUSR2" in log and "interrupted by SIGUSR2 at step" in log, log[-3000:]
    assert "resuming from the checkpoint at step" in log, log[-3000:]
    assert read_jsonl(metrics) == read_jsonl(tmp_path / "ref" / "0_A5_T100_s0" / "metrics.jsonl")
    s = json.loads((job / "summary.json").read_text())
    assert s["status"] == "ok"
    for d in (sweep, tmp_path / "ref"):
        agg = run_cli(str(d), cwd=tmp_path, module="dlf.aggregate")
        assert agg.returncode == 0 and "2 job(s) ok, 0 failed, 0 missing" in agg.stdout, agg.stdout + agg.stderr
    assert (sweep / "phase.csv").read_text() == (tmp_path / "ref" / "phase.csv").read_text()


@pytest.mark.slurm
def test_grid_shards_run_as_a_slurm_array_and_merge_to_the_one_process_result(tmp_path):
    partition = _slurm_partition()
    grid = ["grid.A=1,10", "grid.T=20,50", "seeds=2", "train.steps=60", "train.log_every=30", "model.width=4",
            "compile_cache=null"]
    one = run_cli(*grid, "hydra.run.dir=one", cwd=tmp_path, module="dlf.phase", timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    try:
        p = run_cli(*grid, "grid.shards=2", "hydra.run.dir=sh", "hydra/launcher=slurm",
                    f"hydra.launcher.partition={partition}",
                    "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=1",
                    "hydra.launcher.timeout_min=10", cwd=tmp_path, module="dlf.phase", timeout=900)
    except BaseException:
        subprocess.run(["scancel", "--name=dlf"], capture_output=True, timeout=30)
        raise
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "sh"
    ids = {str(yaml.safe_load((d / f"shard_{k}" / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])
           for k in (0, 1)}
    assert len({i.split("_")[0] for i in ids}) == 1 and len(ids) == 2, ids  # two tasks of one SLURM array
    for name in ("phase.csv", "runs.csv"):
        assert (d / name).read_text() == (tmp_path / "one" / name).read_text(), name


def test_slurm_up_needs_its_opt_in_and_checks_its_values():
    """launch/slurm_up.sh refuses without DLF_SLURM_THROWAWAY=1 and with a bad number, before it
    touches anything."""
    from conftest import ROOT

    script = str(ROOT / "launch" / "slurm_up.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLF_SLURM")}
    p = subprocess.run([script], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 1 and "set DLF_SLURM_THROWAWAY=1" in p.stderr
    p = subprocess.run([script], capture_output=True, text=True, timeout=30,
                       env={**env, "DLF_SLURM_THROWAWAY": "1", "DLF_SLURM_UP_TIMEOUT": "9e9"})
    assert p.returncode == 1 and ("DLF_SLURM_UP_TIMEOUT=9e9 is not allowed" in p.stderr or "root" in p.stderr)
