"""Figures people read: content checks (axes, labels, plotted values) of dynamics.png for a
spiral run (F's oscillation visible although the log points are a multiple of T) and for an
epoch run (epoch axes, a legend beside the panels for 10 classes)."""
import numpy as np
import pytest
from conftest import run_cli

from dlf.figures.dynamics import dynamics
from dlf.outputs import read_jsonl


def _rows(n_rows, every, C, seeds=2, epoch=False, band=True):
    rows = []
    for i in range(n_rows):
        r = {"step": i * every, "gamma": [1.0] * C, "loss": [1.0 / (i + 1)] * seeds,
             "train_acc": [0.5] * seeds, "val_acc": [0.4] * seeds}
        if epoch:
            r["epoch"] = i
        if band and i:
            r["loss_min"], r["loss_max"] = [0.5 / (i + 1)] * seeds, [2.0 / (i + 1)] * seeds
        rows.append(r)
    return rows


def test_spiral_dynamics_draws_the_range_of_F_per_interval(tmp_path, drawn):
    gamma = np.ones((501, 3))
    dynamics(tmp_path / "d.png", _rows(6, 100, 3), gamma, 200, 400, "spiral")
    ax = drawn[-1].axes[2]
    assert ax.get_xlabel() == "step" and "min-max of F" in ax.get_title()
    assert len(ax.collections) == 2  # one band per seed
    verts = ax.collections[0].get_paths()[0].vertices
    assert verts[:, 1].max() == pytest.approx(2.0 / 2) and verts[:, 1].min() == pytest.approx(0.5 / 6)
    (f0, _) = [line for line in ax.lines if len(line.get_xdata()) == 6]  # F of each seed (not the off line)
    np.testing.assert_allclose(f0.get_ydata(), [1.0 / (i + 1) for i in range(6)])
    assert drawn[-1].axes[0].get_legend() is not None  # 3 classes: the legend fits in the panel


def test_epoch_run_dynamics_is_in_epochs_with_the_legend_beside(tmp_path, drawn):
    spe = 98
    gamma = np.ones((10 * spe + 1, 10))
    dynamics(tmp_path / "d.png", _rows(11, spe, 10, seeds=1, epoch=True, band=False), gamma, 2000, 6 * spe,
             "cifar", steps_per_epoch=spe)
    fig = drawn[-1]
    assert [ax.get_xlabel() for ax in fig.axes[:4]] == ["epoch"] * 4
    (f0,) = [line for line in fig.axes[2].lines if len(line.get_xdata()) == 11]
    np.testing.assert_allclose(f0.get_xdata(), np.arange(11))
    assert fig.axes[0].get_legend() is None
    leg = fig.axes[1].get_legend()
    assert [t.get_text() for t in leg.get_texts()] == [str(i) for i in range(10)]
    assert leg.get_bbox_to_anchor().x0 > fig.axes[1].get_window_extent().x1 - 1  # beside, not over, the curves
    assert "oscillations off" in [t.get_text().strip() for t in fig.axes[0].texts]
    assert fig.axes[0].lines[-1].get_xdata()[0] == 6  # the off line, in epochs


@pytest.mark.slow
def test_cli_run_with_log_points_a_multiple_of_T_shows_the_oscillation(tmp_path, drawn):
    """log_every=200 = 2T: F at the log points alone would hide the oscillation; the per-interval
    range recorded by the engine shows it."""
    p = run_cli("train.steps=1000", "train.log_every=200", "schedule.T=100", "schedule.A=20", "seeds=1",
                "model.width=16", "hydra.run.dir=run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for r in rows[1:]:
        assert r["loss_min"][0] <= r["loss"][0] <= r["loss_max"][0] * 1.5
    assert max(r["loss_max"][0] / r["loss_min"][0] for r in rows[1:]) > 1.2  # the oscillation
