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
            assert int(r["threshold_n"]) == ref["n"]
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
