"""Probes inside a `dlf.phase` grid: every run's probe series and threshold equal those of the same
run trained alone by dlf.train (float64), and runs.csv / phase.csv carry the thresholds."""
import csv
import json

import numpy as np
import pytest

from dlf.analysis.phase_table import read_csv as read_phase
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

# width 32, lr 2, A=70, T=200: 800 float64 steps hold several period-2 cascades per run (threshold ~ 2/eta = 1)
SMALL = ["precision=float64", "model.width=32", "dataset.per_class=30", "optimizer.lr=2", "schedule.off_last_periods=0",
         "train.steps=800", "train.log_every=400", "seeds=2", "probes.hessian.every=5", "probes.hessian.order=20",
         "probes.ntk.every=50", "probes.ntk.samples=15"]


def _runs_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_grid_probes_equal_the_same_runs_trained_alone(tmp_path):
    p = run_cli("grid.A=30,70", "grid.T=200", *SMALL, "hydra.run.dir=grid", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "grid"
    runs = _runs_csv(d / "runs.csv")
    assert [(float(r["A"]), int(r["seed"])) for r in runs] == [(30.0, 0), (30.0, 1), (70.0, 0), (70.0, 1)]
    phase = read_phase(d / "phase.csv")
    for A in (30, 70):
        q = run_cli(f"schedule.A={A}", "schedule.T=200", *SMALL, f"hydra.run.dir=one{A}", cwd=tmp_path)
        assert q.returncode == 0, q.stderr[-3000:]
        one = np.load(tmp_path / f"one{A}" / "probes.npz")
        thr = json.loads((tmp_path / f"one{A}" / "summary.json").read_text())["threshold"]
        mine = [r for r in runs if float(r["A"]) == A]
        for k, r in enumerate(mine):
            z = np.load(d / "probes" / f"A{A}_T200_seed{k}.npz")
            assert z["F"].shape == (1, 800) and z["F_steps"].tolist() == one["F_steps"].tolist()
            np.testing.assert_allclose(z["F"][0], one["F"][k], rtol=1e-12)
            assert z["probe_steps"].tolist() == one["probe_steps"].tolist() == list(range(0, 801, 5))
            for name in ("hessian_lambda_max", "ntk_lambda_max"):
                np.testing.assert_allclose(z[name][0], one[name][k], rtol=1e-9, equal_nan=True)
            assert np.isfinite(z["ntk_lambda_max"][0]).sum() == 801 // 50 + 1  # its own cadence, NaN between
            # the run's threshold: the mean over its cascades, as the lone run's summary.json has it
            ref = thr["per_seed"][k]
            assert int(r["threshold_cascades"]) == ref["n"]
            if ref["mean"] is None:
                assert r["threshold"] == ""
            else:
                assert float(r["threshold"]) == pytest.approx(ref["mean"], rel=1e-9)
        if A == 70:
            assert all(p["n"] > 0 for p in thr["per_seed"])  # the comparison has thresholds to compare
        cell = next(c for c in phase if c["A"] == A)
        values = [float(r["threshold"]) for r in mine if r["threshold"]]
        assert cell["threshold_n"] == len(values)
        if values:
            assert cell["threshold_mean"] == pytest.approx(np.mean(values), rel=1e-12)
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "ok" and s["best"] is not None  # the cell keys are (A, T): the stats are no cell key


# Fig. 5's protocol in small: T and steps scale as 1/lr through the config's own interpolations
PER_LR = ["schedule.T='${div:400,${optimizer.lr}}'", "train.steps='${div:1600,${optimizer.lr}}'", "schedule.A=70",
          *[a for a in SMALL if not a.startswith(("optimizer.lr", "train.steps", "probes.ntk"))]]


def test_a_grid_over_the_learning_rate_runs_each_run_to_its_own_end(tmp_path):
    """grid.lr: one program trains every lr, each run with its own T and number of steps (frozen
    after its end); each equals the same lr trained alone by dlf.train (metrics, F, probe series,
    threshold), and the cells are (lr, A, T)."""
    p = run_cli("grid.lr=1,2", *PER_LR, "hydra.run.dir=grid", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "grid"
    runs = _runs_csv(d / "runs.csv")
    assert [(float(r["optimizer.lr"]), int(r["T"]), int(r["seed"])) for r in runs] == [
        (1.0, 400, 0), (1.0, 400, 1), (2.0, 200, 0), (2.0, 200, 1)]
    assert [(c["optimizer.lr"], c["T"]) for c in read_phase(d / "phase.csv")] == [(1.0, 400), (2.0, 200)]
    assert json.loads((d / "summary.json").read_text())["steps"] == 1600
    for lr, T, steps in ((1, 400, 1600), (2, 200, 800)):
        q = run_cli(f"optimizer.lr={lr}", *PER_LR, f"hydra.run.dir=one{lr}", cwd=tmp_path)
        assert q.returncode == 0, q.stderr[-3000:]
        s = json.loads((tmp_path / f"one{lr}" / "summary.json").read_text())
        assert (s["T"], s["steps"]) == (T, steps)
        one = np.load(tmp_path / f"one{lr}" / "probes.npz")
        mine = [r for r in runs if float(r["optimizer.lr"]) == lr]
        np.testing.assert_array_equal([float(r["train_acc"]) for r in mine], s["final"]["train_acc"]["per_seed"])
        np.testing.assert_allclose([float(r["loss"]) for r in mine], s["final"]["loss"]["per_seed"], rtol=1e-12)
        for k, r in enumerate(mine):
            z = np.load(d / "probes" / f"lr{lr}_A70_T{T}_seed{k}.npz")
            assert z["F"].shape == (1, steps) and z["probe_steps"].tolist() == list(range(0, steps + 1, 5))
            np.testing.assert_allclose(z["F"][0], one["F"][k], rtol=1e-12)
            np.testing.assert_allclose(z["hessian_lambda_max"][0], one["hessian_lambda_max"][k], rtol=1e-9)
            ref = s["threshold"]["per_seed"][k]
            assert ref["n"] > 0 and float(r["threshold"]) == pytest.approx(ref["mean"], rel=1e-9)
    # the fit and figure read the phase directory: per lr, the mean of its runs' thresholds
    from dlf.analysis.fig5 import fig5

    groups, skipped = fig5(d, tmp_path / "f5")
    assert not skipped and len(groups) == 1 and groups[0]["width"] == 32 and groups[0]["eta"].tolist() == [1.0, 2.0]
    for eta, mean in zip(groups[0]["eta"], groups[0]["mean"]):
        assert mean == pytest.approx(np.mean([float(r["threshold"]) for r in runs if float(r["optimizer.lr"]) == eta]))
    assert (tmp_path / "f5" / "fig5.png").exists() and groups[0]["fit"]["b"] < 0


def test_a_grid_over_the_learning_rate_with_the_fused_step_equals_each_lr_alone(tmp_path):
    """Without probes (the fused step on CPU): each lr's runs in the grid end where dlf.train's runs
    of that lr end, bit for bit (the updates of the lr-1 transformation scaled by the run's lr)."""
    tiny = ["train.steps='${div:40,${optimizer.lr}}'", "train.log_every=10", "seeds=2", "model.width=8",
            "schedule.off_last_periods=0", "schedule.T=10"]
    p = run_cli("grid.lr=0.5,2", *tiny, "hydra.run.dir=grid", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert s["step"] == "fused" and s["steps"] == 80
    runs = _runs_csv(tmp_path / "grid" / "runs.csv")
    for lr in (0.5, 2):
        q = run_cli(f"optimizer.lr={lr}", *tiny, f"hydra.run.dir=one{lr}", cwd=tmp_path)
        assert q.returncode == 0, q.stderr[-3000:]
        one = json.loads((tmp_path / f"one{lr}" / "summary.json").read_text())
        assert one["step"] == "fused" and one["steps"] == round(40 / lr)
        mine = [r for r in runs if float(r["optimizer.lr"]) == lr]
        for key in ("train_acc", "val_acc", "loss", "val_ce"):
            np.testing.assert_array_equal([float(r[key]) for r in mine], one["final"][key]["per_seed"])


def test_a_killed_grid_with_probes_over_the_learning_rate_goes_on_where_it_stopped(tmp_path):
    """Killed after its first call (one lr), the same command trains only the other lr's runs and
    ends with the runs.csv, phase.csv and probe series of an uninterrupted grid (grid.T fixed: the
    runs of both lr share (A, T, seed), so only the lr tells them apart)."""
    args = ["grid.lr=1,2", "grid.T=100", *[a.replace("1600", "400") for a in PER_LR], "grid.chunk_runs=2"]
    p = run_cli(*args, "hydra.run.dir=full", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 0, p.stderr[-3000:]
    k = run_cli(*args, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase", env={"DLF_FAULT": "1:KILL"})
    assert k.returncode == -9
    assert len((tmp_path / "g" / "runs.partial.jsonl").read_text().splitlines()) == 2
    again = run_cli(*args, "hydra.run.dir=g", cwd=tmp_path, module="dlf.phase")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 of 4 runs finished before" in again.stdout + again.stderr
    full, d = tmp_path / "full", tmp_path / "g"
    for name in ("runs.csv", "phase.csv"):
        assert (d / name).read_text() == (full / name).read_text(), name
    files = sorted(f.name for f in (full / "probes").iterdir())
    assert files == sorted(f.name for f in (d / "probes").iterdir()) and len(files) == 4
    for f in files:
        a, b = np.load(full / "probes" / f), np.load(d / "probes" / f)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
