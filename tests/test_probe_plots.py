"""Figures of the probes (Fig. 4, 5b) and the Fig. 5a aggregation: speed, zoom choice, the fit, the CLI."""
import json
import time

import numpy as np
import pytest
from conftest import run_cli

from dlf.analysis import fig5 as f5
from dlf.analysis.bifurcation import episodes
from dlf.cli import fig5 as fig5_cli
from dlf.figures.probes import envelope, fig4, fig5b, step_diff, zoom_window


def synthetic_run(steps=70_000, T=5000, C=3):
    """Fig. 4-like arrays: F sinks and rises each period, with a period-2 bounce in the middle of
    the first ten periods; Hessian lambda_max every 25 steps (one NaN), NTK likewise."""
    t = np.arange(steps)
    bounce = ((t % T) > 2000) & ((t % T) < 2600) & (t < 10 * T)
    F = 0.5 + 0.4 * np.cos(2 * np.pi * t / T) ** 2 + 0.05 * bounce * (-1.0) ** t
    gamma = np.stack([np.where((t // T) % C == i, C - 0.5, 0.25) for i in range(C)], 1)
    p = t[::25]
    hessian = 1.5 + 0.5 * np.sin(p / 800)
    hessian[7] = np.nan
    onsets, ends = episodes(F)
    return dict(steps=t, F=F, gamma=gamma, row_steps=t[::10], train_acc=0.6 + 0.3 * bounce[::10],
                val_acc=0.5 + 0.2 * bounce[::10], probe_steps=p, hessian=hessian, ntk=10 + np.cos(p / 1000),
                threshold=1.8, lr=1.0, onsets=onsets, ends=ends, title="synthetic")


def test_fig4_70k_steps_is_fast(tmp_path, drawn):
    run = synthetic_run()
    assert len(run["onsets"]) == 10
    t0 = time.perf_counter()
    zoom = fig4(tmp_path / "fig4.png", **run)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, f"fig4 took {elapsed:.1f} s"
    assert (tmp_path / "fig4.png").exists() and zoom[0] < run["onsets"][0] < run["ends"][0] < zoom[1]
    fig = drawn[-1]
    main = [ax for ax in fig.axes if ax.get_ylabel()]  # the full-run column, top to bottom
    assert [ax.get_ylabel() for ax in main][:6] == [r"$\Gamma_i(t)$", r"$F(t)$", r"$F(t)-F(t-1)$", "accuracy",
                                                     r"Hessian $\lambda_{max}$", r"NTK $\lambda_{max}$"]
    assert len(fig.axes) == 12 and "zoom: steps" in fig.axes[1].get_title()
    hess = main[4]  # the threshold and 2/eta lines are drawn at their values
    levels = {round(float(line.get_ydata()[0]), 6) for line in hess.get_lines() if len(set(line.get_ydata())) == 1}
    assert {1.8, 2.0} <= levels
    fig4(tmp_path / "nozoom.png", **{**run, "onsets": [], "ends": [], "threshold": None})
    assert len(drawn[-1].axes) == 6  # no onsets: no zoom column


def test_zoom_window_takes_the_first_cascade():
    assert zoom_window([], [], 0, 1000) is None
    # one episode: a quarter of its length either side (at least 20 steps)
    assert zoom_window([2000, 7000], [2400, 7400], 0, 70_000) == (1900, 2500)
    assert zoom_window([100], [120], 0, 1000) == (80, 140)
    # later episodes within the margin belong to the cascade; the one at 7000 does not
    assert zoom_window([2000, 2450, 2700, 7000], [2400, 2600, 2800, 7400], 0, 70_000) == (1800, 3000)
    assert zoom_window([5], [50], 0, 60) == (0, 60)  # clipped to the run


def test_envelope_keeps_the_oscillation_band():
    x = np.arange(70_000)
    y = np.where(x % 2, 1.0, -1.0) * (x > 35_000)
    xe, ye = envelope(x, y, bins=100)
    assert xe.size == ye.size == 200
    assert ye[:2].tolist() == [0.0, 0.0] and ye[-2:].tolist() == [-1.0, 1.0]
    np.testing.assert_array_equal(envelope(x[:150], y[:150], bins=100)[1], y[:150])  # short: as is


def test_step_diff_only_between_consecutive_steps():
    d = step_diff(np.array([0, 1, 2, 10, 11]), np.array([1.0, 3.0, 2.0, 5.0, 4.0]))
    np.testing.assert_array_equal(d, [np.nan, 2.0, -1.0, np.nan, -1.0])


def test_fig5b_draws_each_series_against_the_threshold(tmp_path, drawn):
    p = np.arange(0, 70_000, 25)
    series = [dict(label="width 100", probe_steps=p, hessian=2.5 + 0 * p),
              dict(label="width 1000", probe_steps=p, hessian=3 * np.exp(-p / 5000) + 0.5)]
    fig5b(tmp_path / "fig5b.png", series=series, threshold=1.9, lr=1.0, title="A=1, eta=1")
    axes = [ax for ax in drawn[-1].axes if ax.get_lines()]
    assert len(axes) == 2
    for ax, s in zip(axes, series):
        assert ax.get_title() == s["label"]
        x, y = envelope(s["probe_steps"], s["hessian"])  # the series, binned for 70k steps
        data = [line for line in ax.get_lines() if len(line.get_xdata()) == len(x)]
        np.testing.assert_allclose(data[0].get_ydata(), y)
        levels = {round(float(line.get_ydata()[0]), 6) for line in ax.get_lines() if len(set(line.get_ydata())) == 1}
        assert {1.9, 2.0} <= levels


def test_fit_recovers_an_exact_power_law_and_tests_the_intercept():
    eta = np.repeat([0.5, 1.0, 2.0, 4.0, 8.0], 4)
    f = f5.fit_power(eta, 1.9 * eta**-0.9)
    assert f["b"] == pytest.approx(-0.9, abs=1e-12) and f["c"] == pytest.approx(1.9, rel=1e-12)
    assert f["dof"] == 18 and f["b_se"] < 1e-12
    g = f5.fit_power(eta, 2.0 / eta)
    assert g["c_fixed"] == pytest.approx(2.0) and g["c"] == pytest.approx(2.0) and g["b"] == pytest.approx(-1)


def test_fit_is_ordinary_least_squares_on_the_per_seed_values():
    rng = np.random.default_rng(1)
    eta = np.repeat(np.geomspace(0.5, 8, 5), 4)
    thr = 2.2 * eta**-0.95 * np.exp(rng.normal(0, 0.1, eta.size))
    x, y = np.log(eta), np.log(thr)
    xm, ym = x.mean(), y.mean()  # textbook sums
    sxx = ((x - xm) ** 2).sum()
    b = ((x - xm) * (y - ym)).sum() / sxx
    a = ym - b * xm
    s2 = ((y - a - b * x) ** 2).sum() / (x.size - 2)
    f = f5.fit_power(eta, thr, 2.0)
    assert (f["a"], f["b"]) == pytest.approx((a, b), rel=1e-10)
    assert f["b_se"] == pytest.approx(np.sqrt(s2 / sxx), rel=1e-10)
    assert f["a_se"] == pytest.approx(np.sqrt(s2 * (1 / x.size + xm**2 / sxx)), rel=1e-10)
    assert f["z_a"] == pytest.approx((a - np.log(2)) / f["a_se"]) and f["z_b"] == pytest.approx((b + 1) / f["b_se"])
    logc = y + x
    assert f["c_fixed"] == pytest.approx(np.exp(logc.mean()))
    assert f["c_fixed_rel_se"] == pytest.approx(logc.std(ddof=1) / np.sqrt(x.size))
    assert f5.fit_power([1.0, 1.0], [2.0, 2.1]) is None


def test_pool_is_the_union_of_the_per_seed_values():
    pts = [f5.point(100, "gd", 0.5, v) for v in ([1.0, 2.0, 4.0], [3.0, 5.0])]
    (p,) = f5.pool(pts)
    u = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    assert (p.n, p.mean, p.std, p.values) == (5, pytest.approx(u.mean()), pytest.approx(u.std(ddof=1)), tuple(u))


def test_stability_lines():
    assert f5.stability("gd", 0.9) == 2 and f5.stability("momentum", 0.9) == pytest.approx(3.8)
    assert f5.stability("nesterov", 0.9) == pytest.approx(3.8 / 2.8) and f5.stability("adam", 0.9) is None


def summary(job, width, lr, thr=None, status="ok", name="gd"):
    job.mkdir(parents=True)
    opt = {"name": name, "lr": lr, "lr_schedule": "constant", **({"momentum": 0.9} if name == "momentum" else {})}
    s = {"status": status, "config": {"model": {"width": width}, "optimizer": opt}}
    if status == "failed":
        s["error"] = "RuntimeError: boom"
    if thr is not None:
        s["threshold"] = thr
    (job / "summary.json").write_text(json.dumps(s))


def sweep(root, exponent=-0.9):
    """Jobs for widths 100, 1000 and four learning rates, plus a failed job, a job without probes
    and one without onsets."""
    k = 0
    for width in (100, 1000):
        for lr in (0.25, 0.5, 1.0, 2.0):
            m = 1.9 * lr**exponent * np.array([0.95, 1.0, 1.05])  # three seeds
            summary(root / f"{k}_w{width}_lr{lr}", width, lr,
                    {"mean": m.mean(), "std": m.std(ddof=1), "n": 3, "n_onsets": 20,
                     "per_seed": [{"seed": i, "mean": v} for i, v in enumerate(m)]})
            k += 1
    summary(root / f"{k}_failed", 100, 4.0, status="failed")
    summary(root / f"{k + 1}_noprobe", 100, 4.0)
    summary(root / f"{k + 2}_noonset", 100, 4.0, {"mean": None, "std": None, "n": 0, "n_onsets": 0,
                                                  "per_seed": [{"seed": 0, "mean": None}]})


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    sweep(tmp_path / "sweep")
    r = run_cli(str(tmp_path / "sweep"), "-o", str(tmp_path / "out"), cwd=tmp_path, module="dlf.fig5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum("skipped:" in ln for ln in lines) == 3
    assert any("8_failed: status 'failed': RuntimeError: boom" in ln for ln in lines)
    fits = [ln for ln in lines if ln.startswith("dlf.fig5: width")]
    assert len(fits) == 2 and all("b = -0.900 +- 0.017" in ln and "c = 1.898" in ln for ln in fits), fits
    rows = (tmp_path / "out" / "fig5.csv").read_text().splitlines()
    assert rows[0] == "width,optimizer,eta,seeds,threshold_mean,threshold_std,per_seed" and len(rows) == 9
    assert (tmp_path / "out" / "fig5.png").stat().st_size > 10_000
    assert not (tmp_path / "out" / "fig5bc.png").exists()  # no A=1 run in this sweep


def test_fig5bc_from_the_a1_runs(tmp_path):
    """A=1 jobs (with probes.npz) are not fit points: they are drawn against the threshold of
    their learning rate (Fig. 5b/c)."""
    root = tmp_path / "sweep"
    sweep(root)
    for width in (100, 1000):
        job = root / f"a1_w{width}"
        summary(job, width, 1.0)
        s = json.loads((job / "summary.json").read_text())
        (job / "summary.json").write_text(json.dumps({**s, "A": 1}))
        np.savez(job / "probes.npz", probe_steps=np.arange(0, 1000, 25),
                 hessian_lambda_max=np.linspace(3, 1, 40)[None])
    r = run_cli(str(root), cwd=tmp_path, module="dlf.fig5")
    assert r.returncode == 0, r.stderr
    assert sum("A=1: an ordinary-loss baseline" in ln for ln in r.stdout.splitlines()) == 2
    assert (root / "fig5bc.png").stat().st_size > 10_000


def test_cli_errors(tmp_path, capsys):
    assert fig5_cli.main([str(tmp_path / "nope")]) == 2
    assert fig5_cli.main([str(tmp_path)]) == 2  # empty
    summary(tmp_path / "0_failed", 100, 1.0, status="failed")
    assert fig5_cli.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(ln.startswith("dlf.fig5: error: ") for ln in err)
    assert "is not a directory" in err[0] and "no usable runs" in err[2] and "0_failed: status" in err[2]


def test_momentum_reference_and_mixed_optimizers(tmp_path):
    for k, (name, lr) in enumerate([("momentum", 0.5), ("momentum", 1.0), ("gd", 0.5), ("gd", 1.0)]):
        summary(tmp_path / f"{k}", 100, lr, {"per_seed": [{"mean": 2 / lr}, {"mean": 2.1 / lr}]}, name=name)
    groups, skipped = f5.fig5(tmp_path)
    assert not skipped
    assert [g["label"] for g in groups] == ["width 100 (gd)", "width 100 (momentum beta=0.9)"]
    assert all(g["fit"]["b"] == pytest.approx(-1) for g in groups)


def test_a_fit_through_two_values_says_it_has_no_error():
    """Issue 24: `dlf.fig5` printed `b = -1.044 +- nan` for two points; now it says why there is
    no error and what it needs."""
    f = f5.fit_power([1.0, 2.0], [2.0, 1.0])
    assert f["dof"] == 0 and f["b"] == pytest.approx(-1.0)
    line = f5.describe(dict(width=100, optimizer="gd", fit=f, eta=[1.0, 2.0], n=2))
    assert "nan" not in line and "b = -1.000" in line and "needs >= 3 per-seed thresholds" in line
    three = f5.describe(dict(width=100, optimizer="gd", fit=f5.fit_power([1.0, 2.0, 4.0], [2.0, 1.1, 0.5]),
                             eta=[1.0, 2.0, 4.0], n=3))
    assert "+-" in three and "nan" not in three
