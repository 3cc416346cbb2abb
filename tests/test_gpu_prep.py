"""The prepared GPU work runs on the CPU at toy sizes: the issue-13 check (launch/gpu_check.sh,
benchmarks/gpu_check.py) and the Fig. 1 runs and report (launch/fig1_gpu.sh, benchmarks/fig1_report.py)."""
import copy
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402

pytestmark = pytest.mark.slow


def _env(**extra):
    env = dict(os.environ, PYTHON=sys.executable, **extra)
    env.pop("XLA_FLAGS", None)
    return env


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory):
    """launch/gpu_check.sh --size tiny, as the device runs it (OUT set, all sections), against the
    shipped CPU reference with one run's loss perturbed by 0.1%: the check must write every section
    and still exit 1 on that one mismatch (that the runs match the unperturbed reference:
    test_compare_reports_a_perturbed_reference)."""
    out = tmp_path_factory.mktemp("gpu_check")
    ref = json.loads(gpu_check.REFERENCE.read_text())
    ref["runs"][5]["loss"] *= 1.001
    (out.parent / "ref.json").write_text(json.dumps(ref))
    p = subprocess.run(["bash", str(ROOT / "launch" / "gpu_check.sh"), "--size", "tiny", "--reference",
                        str(out.parent / "ref.json")], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                       env=_env(OUT=str(out)))
    return p, out


def test_gpu_check_writes_every_section_and_exits_1_on_a_mismatch(tiny_check):
    p, out = tiny_check
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert {f.name for f in out.iterdir()} == {"gpu_check.json", "gpu_check.md", "gpu_check.log"}
    res = json.loads((out / "gpu_check.json").read_text())
    assert res["errors"] == {} and set(res["section_s"]) == set(gpu_check.SECTIONS)
    eq = res["equal"]
    assert not eq["ok"] and eq["vmapped_highest"]["mismatches"] == eq["chunked_highest"]["mismatches"] == 1
    assert eq["vmapped_highest"]["runs"] == eq["chunked_highest"]["runs"] == 12
    assert eq["chunked_highest"]["chunk_runs"] == 5  # 12 runs in chunks of 5: the last one padded
    assert res["fig3"]["runs"] == 4 and res["fig3"]["wall_s"] > res["fig3"]["train_s"] > 0
    assert res["wide"]["run_steps_per_s"] > 0
    for w in ("100", "1000"):
        r = res["ratios"][w]
        assert r["reference_loop_run_steps_per_s"] > 0 and r["cpu_engine_run_steps_per_s"] > 0
    my = res["myrtle"]
    assert all(my[k]["images_per_s"] > 0 for k in ("float32", "float32_highest", "bfloat16"))
    assert my["float32_highest"]["matmul_precision"] == "highest" and my["float32"]["matmul_precision"] == "None"
    tf = res["tf32"]
    assert tf["highest"]["matmul_rel_err"] < 1e-5 and tf["default_is_tf32_or_lower"] is False  # CPU: true f32
    md = (out / "gpu_check.md").read_text()
    for s in ("< 60 s", ">= 300k", ">= 550k", "chunked path (chunk_runs 5)", "reference loop", "CPU engine",
              "| **no** |"):
        assert s in md, s
    assert "python 3" in (out / "gpu_check.log").read_text().lower()


def test_compare_reports_a_perturbed_reference(tiny_check):
    _, out = tiny_check
    runs = json.loads((out / "gpu_check.json").read_text())["equal"]["runs"]
    ref = json.loads(gpu_check.REFERENCE.read_text())["runs"]
    assert gpu_check.compare(runs, ref)["ok"]
    bad = copy.deepcopy(ref)
    bad[3]["loss"] *= 1 + 10 * gpu_check.LOSS_RTOL
    c = gpu_check.compare(runs, bad)
    assert not c["ok"] and c["mismatches"] == 1 and c["first_mismatches"][0]["run"] == (1.0, 20, 0)
    bad = copy.deepcopy(ref)
    bad[0]["train_acc"] += 2 / 300  # two examples
    assert gpu_check.compare(runs, bad)["mismatches"] == 1
    assert gpu_check.compare(runs[1:], ref)["first_mismatches"][0]["why"].startswith("missing")


TINY_FIG1 = ("dataset.subset=64 model.width=4 train.epochs=2 train.batch_size=32 train.log_every=1 "
             "train.eval_batch_size=64 optimizer.warmup_epochs=1 schedule.off_from_epoch=1")


@pytest.fixture(scope="module")
def fig1_out(tmp_path_factory):
    """launch/fig1_gpu.sh at toy sizes on fake CIFAR-10 (timing epoch, then A=1 and A=50 T=100)."""
    from test_cifar_data import fake_cifar, write_batches_py

    d = tmp_path_factory.mktemp("fig1")
    data = write_batches_py(d / "cifar-10-batches-py", *fake_cifar(64, 32))
    env = _env(OUT=str(d / "out"), CIFAR10_DIR=str(data), FIG1_WORK=str(d / "work"), FIG1_EPOCHS="2",
               FIG1_TIME_EPOCHS="1", FIG1_OVERRIDES=TINY_FIG1)
    p = subprocess.run(["bash", str(ROOT / "launch" / "fig1_gpu.sh")], cwd=ROOT, capture_output=True, text=True,
                       timeout=1200, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return d


def test_fig1_gpu_returns_both_runs_in_three_files(fig1_out):
    import tarfile

    out = fig1_out / "out"
    assert {f.name for f in out.iterdir()} == {"fig1_runs.tar.gz", "fig1_timing.json", "fig1_gpu.log"}
    with tarfile.open(out / "fig1_runs.tar.gz") as t:
        names = set(t.getnames())
        t.extractall(fig1_out / "back", filter="data")
    for run in ("A1", "A50_T100"):
        assert {f"runs/{run}/metrics.jsonl", f"runs/{run}/summary.json"} <= names
    s = json.loads((fig1_out / "back" / "runs" / "A50_T100" / "summary.json").read_text())
    assert (s["A"], s["T"], s["epochs"], s["status"]) == (50.0, 100, 2, "ok")
    timing = json.loads((out / "fig1_timing.json").read_text())
    assert timing["epochs"] == 1 and timing["estimate_s_per_run"] >= timing["process_wall_s"] > 0
    log = (out / "fig1_gpu.log").read_text()
    assert "estimate per 2-epoch run" in log and "done: A1 A50_T100" in log


def test_fig1_report_from_the_runs(fig1_out, tmp_path):
    runs = sorted((fig1_out / "back" / "runs").iterdir())
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fig1_report.py"), *map(str, runs),
                        "--out", str(tmp_path / "fig1.md"), "--commit", "abc1234",
                        "--timing", str(fig1_out / "out" / "fig1_timing.json")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "fig1.md").read_text()
    assert (tmp_path / "fig1.png").stat().st_size > 10_000
    for s in ("| A=1 (ordinary loss) | standard |", "| A=50, T=100 | standard |", "`abc1234`",
              "not the full protocol", "test ~0.73", "What differs from the paper", "Timing run (1 epochs"):
        assert s in md, s
    assert "No GPU run has happened yet" not in md


def test_fig1_page_without_runs_is_the_committed_one():
    import fig1_report

    text = fig1_report.page([], None, None, "fig1.png")
    assert "No GPU run has happened yet" in text and "launch/fig1_gpu.sh" in text
    assert (ROOT / "docs" / "fig1.md").read_text() == text


def test_fig1_gpu_skips_runs_that_do_not_fit(tmp_path):
    env = _env(OUT=str(tmp_path / "out"), CIFAR10_DIR=str(tmp_path), FIG1_WORK=str(tmp_path / "work"),
               FIG1_TIME_EPOCHS="0", FIG1_BUDGET_S="-1")
    p = subprocess.run(["bash", str(ROOT / "launch" / "fig1_gpu.sh")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=env)
    log = (tmp_path / "out" / "fig1_gpu.log").read_text()
    assert p.returncode == 0 and "SKIPPED A1" in log and "FIG1_RUNS=A50_T100" in log and "done: no run" in log


def test_matmul_precision_key_sets_jax_at_run_start(tmp_path):
    import jax

    from dlf import config as config_lib
    from dlf.drive.run import run

    with pytest.raises(config_lib.ConfigError, match="matmul_precision='tf32' is not allowed"):
        config_lib.from_dict({"matmul_precision": "tf32"})
    cfg = config_lib.from_dict({"matmul_precision": "highest", "seeds": 1, "model": {"width": 4},
                                "train": {"steps": 4, "log_every": 2}, "compile_cache": None,
                                "schedule": {"off_last_periods": 0}})
    try:
        run(cfg, tmp_path / "a")
        assert jax.config.jax_default_matmul_precision == "highest"
        assert run(config_lib.replace(cfg, matmul_precision="default"), tmp_path / "b")["status"] == "ok"
        assert jax.config.jax_default_matmul_precision is None
    finally:
        jax.config.update("jax_default_matmul_precision", None)
