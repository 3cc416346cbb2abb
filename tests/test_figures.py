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
    rows = _rows(6, 100, 3)
    for i, r in enumerate(rows):  # the second seed lower, so that the median and the range differ from seed 0
        r["loss"][1] = 0.5 / (i + 1)
    dynamics(tmp_path / "d.png", rows, gamma, 200, 400, "spiral", seeds=[7, 8])
    ax = drawn[-1].axes[2]
    assert ax.get_xlabel() == "step" and ax.get_title() == "dynamical loss F"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["median of 2 seeds", "range of all 2 seeds", "seed 7 at the log points",
                              "seed 7: min-max of F in each interval"]
    everyone, seed = ax.collections  # the range over seeds, then the highlighted seed's own band
    v = seed.get_paths()[0].vertices
    assert v[:, 1].max() == pytest.approx(2.0 / 2) and v[:, 1].min() == pytest.approx(0.5 / 6)
    assert everyone.get_paths()[0].vertices[:, 1].min() == pytest.approx(0.5 / 6)
    median, f0 = [line for line in ax.lines if len(line.get_xdata()) == 6]
    np.testing.assert_allclose(f0.get_ydata(), [1.0 / (i + 1) for i in range(6)])
    np.testing.assert_allclose(median.get_ydata(), [0.75 / (i + 1) for i in range(6)])
    leg = ax.get_legend()
    assert leg.get_bbox_to_anchor().y1 < ax.get_window_extent().y0 + 1  # below the panel, not over the curves
    class_legend = drawn[-1].axes[1].get_legend()
    assert [t.get_text() for t in class_legend.get_texts()] == ["0", "1", "2"]
    assert drawn[-1].axes[0].get_title() == "whole run"  # no period given: every step drawn
    assert drawn[-1].axes[3].get_title() == "accuracy at the log points"


def test_a_run_of_many_periods_draws_the_envelope_of_gamma(tmp_path, drawn):
    """Issue 24: over 350 periods the whole-run Gamma panel was a solid block of colour; it now
    draws each cycle's min and max (C periods: every class emphasised once; exact, from the dense
    Gamma), one point per cycle, and the drop where the oscillations stop."""
    from dlf.core.schedule import gamma

    T, C, steps = 100, 3, 35_100
    off = steps - C * T
    dense = np.asarray(gamma(np.arange(steps + 1), 10.0, T, C, "triangle", off))
    dynamics(tmp_path / "d.png", _rows(8, 5000, 3), dense, 600, off, "spiral", period=T)
    ax = drawn[-1].axes[0]
    assert ax.get_title() == "whole run: min-max of each cycle (117 cycles of 3 x T=100 steps)"
    tops = [line for line in ax.lines if len(line.get_xdata()) > 2]
    assert len(tops) == C and all(len(line.get_xdata()) == 118 for line in tops)  # one point per cycle
    top0, cycle = tops[0].get_ydata(), C * T
    np.testing.assert_allclose(top0, [dense[s:s + cycle, 0].max() for s in range(0, steps + 1, cycle)])
    assert top0[0] == pytest.approx(dense[:, 0].max()) and top0[-2] == pytest.approx(1.0)  # oscillating, then off
    bands = ax.collections
    assert len(bands) == C and bands[0].get_paths()[0].vertices[:, 1].min() == pytest.approx(dense[:off, 0].min())
    zoom = drawn[-1].axes[1]
    assert zoom.get_title() == "first 600 steps" and len(zoom.lines[0].get_xdata()) == steps + 1
    # log points every 5000 steps against a 300-step cycle: the accuracy panel says its points alias
    assert "every 5000 steps, not a multiple of the 300-step cycle" in drawn[-1].axes[3].get_title()


def test_epoch_run_dynamics_is_in_epochs_with_the_legend_beside(tmp_path, drawn):
    spe = 98
    gamma = np.ones((10 * spe + 1, 10))
    dynamics(tmp_path / "d.png", _rows(11, spe, 10, seeds=1, epoch=True, band=False), gamma, 2000 * spe, 6 * spe,
             "cifar", steps_per_epoch=spe)
    fig = drawn[-1]
    assert [ax.get_xlabel() for ax in fig.axes[:4]] == ["epoch"] * 4
    assert fig.axes[1].get_title() == "first 10 epochs"  # the run's epochs, not the zoom asked for (2000)
    (f0,) = [line for line in fig.axes[2].lines if len(line.get_xdata()) == 11]
    np.testing.assert_allclose(f0.get_xdata(), np.arange(11))
    assert fig.axes[0].get_legend() is None
    leg = fig.axes[1].get_legend()
    assert [t.get_text() for t in leg.get_texts()] == [str(i) for i in range(10)]
    assert leg.get_bbox_to_anchor().x0 > fig.axes[1].get_window_extent().x1 - 1  # beside, not over, the curves
    acc = fig.axes[3].get_legend()
    assert acc.get_bbox_to_anchor().x0 > fig.axes[3].get_window_extent().x1 - 1
    assert "oscillations off" in [t.get_text().strip() for t in fig.axes[0].texts]
    assert fig.axes[0].lines[-1].get_xdata()[0] == 6  # the off line, in epochs


def _texts_of(fig):
    """The window extents of the figure's title and of each panel's area and texts (its title, notes
    and legend, and each axis with its tick labels, label and offset), drawn as savefig draws them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)  # closed figures have lost theirs
    canvas.draw()
    r = canvas.get_renderer()

    def texts(ax):
        legend = [ax.get_legend()] if ax.get_legend() else []
        return [ax.get_window_extent(r), ax.xaxis.get_tightbbox(r), ax.yaxis.get_tightbbox(r),
                *(t.get_window_extent(r) for t in (ax.title, *ax.texts, *legend) if not isinstance(t, Text)
                  or t.get_text().strip())]

    (title,) = [t for t in fig.get_children() if isinstance(t, Text) and t.get_text() == fig.get_suptitle()]
    return fig.bbox, title.get_window_extent(r), [texts(ax) for ax in fig.axes]


@pytest.mark.parametrize("case", ["many periods, eight seeds", "ten classes over epochs, long tick labels"])
def test_no_text_of_the_dynamics_figure_is_cut_or_overlaps(tmp_path, drawn, case):
    """The fixed layout (dlf.figures.dynamics.MARGINS) at its extremes: a two-line accuracy title, a
    log-scale F, the legends beside and below; ten classes, linear F with long tick labels, a long
    title. Every panel's text lies inside the image, and no two panels, nor the title, overlap."""
    from dlf.core.schedule import gamma

    if case.startswith("many"):
        T, steps = 100, 35_000
        dense = np.asarray(gamma(np.arange(steps + 1), 10.0, T, 3, "triangle", steps - T))
        rows = _rows(71, 500, 3, seeds=8)
        for i, r in enumerate(rows):
            r["loss"] = [10.0 ** (1 - 3 * i / 70) * (1 + k) for k in range(8)]
        dynamics(tmp_path / "d.png", rows, dense, 600, steps - T, "spiral width 100, A=10, T=100, 8 seed(s), "
                 "float32", period=T, seeds=list(range(8)))
        assert "\n" in drawn[-1].axes[3].get_title() and drawn[-1].axes[2].get_yscale() == "log"
    else:
        spe = 98
        rows = _rows(11, spe, 10, seeds=3, epoch=True, band=False)
        for i, r in enumerate(rows):
            r["loss"] = [0.0123 + 1e-3 * i + 1e-4 * k for k in range(3)]
        dynamics(tmp_path / "d.png", rows, np.ones((10 * spe + 1, 10)), 2000 * spe, 6 * spe,
                 "cifar10 WRN-28-10 (36.5M parameters), A=50, T=100, 3 seed(s), bfloat16, matmul highest",
                 steps_per_epoch=spe, seeds=[0, 1, 2])
        assert drawn[-1].axes[2].get_yscale() == "linear"
    figure, title, panels = _texts_of(drawn[-1])
    assert [len(texts) for texts in panels] == [5, 5, 5, 5]
    for box in (title, *(b for texts in panels for b in texts)):
        assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1, box
    for i, texts in enumerate(panels):  # nothing of one panel over another's, nor over the title
        others = [title, *(b for j, other in enumerate(panels) if j != i for b in other)]
        assert not [(a, b) for a in texts for b in others if a.overlaps(b)], f"panel {i}"


def test_the_dynamics_layout_is_fixed_or_constrained(tmp_path, drawn):
    rows, gamma = _rows(3, 10, 3), np.ones((21, 3))
    dynamics(tmp_path / "c.png", rows, gamma, 20, None, "spiral", layout="constrained")
    assert drawn[-1].get_layout_engine() is not None and (tmp_path / "c.png").exists()
    dynamics(tmp_path / "f.png", rows, gamma, 20, None, "spiral")
    assert drawn[-1].get_layout_engine() is None
    with pytest.raises(ValueError, match="^layout='tight' is not allowed; expected fixed or constrained$"):
        dynamics(tmp_path / "t.png", rows, gamma, 20, None, "spiral", layout="tight")


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
