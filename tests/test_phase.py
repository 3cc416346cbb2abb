"""Phase diagrams: the grid-in-one-program CLI, the per-point statistics, sweep aggregation."""
import csv
import json

import numpy as np
import pytest
from conftest import run_cli

from dlf.analysis import phase_table as diagram
from dlf.cli.phase import list_args

pytestmark = pytest.mark.slow

TINY = ["train.steps=120", "train.log_every=40", "model.width=8"]


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _phase(tmp_path, *overrides, name="phase", env=None):
    p = run_cli(*overrides, f"hydra.run.dir={name}", cwd=tmp_path, module="dlf.phase", env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return p, tmp_path / name


# ---------------------------------------------------------------- statistics (exact references)

def test_table_statistics_over_seeds_exclude_diverged():
    rng = np.random.default_rng(0)
    recs, expect = [], {}
    for A in (1.0, 10.0):
        for T in (50, 300):
            tr, va = rng.uniform(size=5), rng.uniform(size=5)
            dead = [False, True, False, False, A == 10.0 and T == 50]
            recs += [diagram.Record(A, T, s, None if d else float(tr[s]), None if d else float(va[s]), d)
                     for s, d in enumerate(dead)]
            ok = ~np.array(dead)
            t = {4: 3.182446305284263, 3: 4.302652729749464}[int(ok.sum())]  # t(0.975, n - 1)
            expect[(A, T)] = (ok.sum(), tr[ok].mean(), tr[ok].std(ddof=1), va[ok].mean(), va[ok].std(ddof=1),
                              1 - ok.mean(), t * va[ok].std(ddof=1) / np.sqrt(ok.sum()))
    rows = diagram.table(reversed(recs))  # input order does not matter
    assert [(r["A"], r["T"]) for r in rows] == [(1.0, 50), (1.0, 300), (10.0, 50), (10.0, 300)]
    for r in rows:
        n, trm, trs, vam, vas, frac, vah = expect[(r["A"], r["T"])]
        assert r["n"] == n and r["runs"] == 5
        np.testing.assert_allclose([r["train_acc_mean"], r["train_acc_std"], r["val_acc_mean"],
                                    r["val_acc_std"], r["diverged_frac"], r["val_acc_ci95"]],
                                   [trm, trs, vam, vas, frac, vah], rtol=1e-10)


def test_table_all_diverged_point_has_no_mean(tmp_path):
    rows = diagram.table([diagram.Record(5.0, 100, s, None, None, True) for s in range(3)])
    assert rows[0]["n"] == 0 and rows[0]["train_acc_mean"] is None and rows[0]["diverged_frac"] == 1.0
    diagram.write_csv(tmp_path / "p.csv", rows)
    assert diagram.read_csv(tmp_path / "p.csv") == rows


def test_phase_plot_draws_the_table(tmp_path, drawn):
    """A small grid is an annotated heat map on a colour scale fitted to the data (0-1 on request)."""
    from dlf.figures.phase import plot
    rows = diagram.table([diagram.Record(5.0, T, s, acc + 0.01 * s, acc - 0.1, False)
                          for T, acc in ((100, 0.9), (300, 0.6)) for s in range(2)])
    plot(tmp_path / "p.png", rows, "a title")
    fig = drawn[-1]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["final train accuracy", "final validation accuracy"]
    assert fig._suptitle.get_text() == "a title"
    for ax, expect in zip(panels, ([0.905, 0.605], [0.8, 0.5])):
        (im,) = ax.images
        np.testing.assert_allclose(np.ma.getdata(im.get_array()).ravel(), expect, rtol=1e-12)
        assert im.get_clim() == pytest.approx((0.5, 0.905))  # fitted to the data, shared by both panels
        assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "300"] and ax.get_ylabel() == "A"
    # every cell says its value and the half-width of its 95% interval (two seeds: t = 12.7)
    assert [t.get_text() for t in panels[0].texts] == ["0.91\n±0.06", "0.60\n±0.06"]
    assert [t.get_text() for t in panels[1].texts] == ["0.80\n±0.00", "0.50\n±0.00"]
    plot(tmp_path / "p.png", rows, "a title", unit_scale=True)
    assert drawn[-1].axes[0].images[0].get_clim() == (0.0, 1.0)


def test_phase_plot_shows_the_paired_difference_and_hatches_cells_without_an_effect(tmp_path, drawn):
    from dlf.analysis import compare as cmp
    from dlf.figures.phase import plot

    rng = np.random.default_rng(3)
    base = 0.6 + 0.05 * rng.standard_normal(6)
    runs = [{"A": A, "T": T, "seed": s, "train_acc": float(base[s] + g), "val_acc": float(base[s] + g + 0.001 * s),
             "diverged_step": -1} for A, T, g in ((1.0, 100, 0), (1.0, 300, 0), (10.0, 100, 0.05), (10.0, 300, 0.0))
            for s in range(6)]
    recs = [diagram.Record(r["A"], r["T"], r["seed"], r["train_acc"], r["val_acc"], False) for r in runs]
    rows, comparison = diagram.table(recs), cmp.compare(runs, ["A", "T"])
    reading = cmp.reading(cmp.verdict(comparison))
    plot(tmp_path / "p.png", rows, "a title", comparison=comparison, reading=reading)
    fig = drawn[-1]
    diff = next(ax for ax in fig.axes if ax.get_title() == "val_acc: paired difference to A=1")
    (im,) = diff.images
    Z = np.ma.getdata(im.get_array())
    np.testing.assert_allclose(Z[1], [0.05, 0.0], atol=1e-12)  # A=10 row: the planted +0.05, and none
    assert np.isnan(Z[0]).all() and [t.get_text() for t in diff.texts][:2] == ["base", "base"]
    hatched = [p for p in diff.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_xy() == (0.5, 0.5)  # only (A=10, T=300): its CI holds 0
    assert fig._suptitle.get_text() == "a title\n1 of 2 cells better than A=1 in val_acc at 95% " \
        "(1 after Holm's adjustment for 2 comparisons), 0 worse"


def test_phase_plot_of_a_large_grid_is_contours(tmp_path, drawn):
    from dlf.figures.phase import plot
    rows = diagram.table([diagram.Record(float(A), T, 0, 0.5 + A / 100, 0.4 + A / 100, False)
                          for A in range(1, 11) for T in (10, 30, 100, 300, 1000, 3000, 10000)])
    plot(tmp_path / "p.png", rows, "big")
    ax = drawn[-1].axes[0]
    assert not ax.images and ax.collections and ax.get_xscale() == "log" and not ax.texts


def _png_shape(path):
    import matplotlib.image
    return matplotlib.image.imread(path).shape[:2]


def test_list_args_turn_grid_sweeps_into_lists():
    assert list_args(["grid.A=1,5,10", "grid.T=[50,100]", "schedule.A=3", "+grid.T=2,3", "seeds=4",
                      "grid.T=40", "grid.A=null"]) == \
        ["grid.A=[1,5,10]", "grid.T=[50,100]", "schedule.A=3", "+grid.T=[2,3]", "seeds=4", "grid.T=[40]",
         "grid.A=null"]


# ---------------------------------------------------------------- dlf.phase end to end

def test_phase_cli_matches_separate_train_runs(tmp_path):
    """Every point of the grid trained in one program (sharded, chunked, padded) equals the
    same point trained on its own by dlf.train, seed by seed."""
    p, d = _phase(tmp_path, "grid.A=1,10", "grid.T=30,60,100", "seeds=3", "grid.chunk_runs=4", *TINY, "figures=true")
    assert "6/6 points (18/18 runs)" in p.stdout and "run-steps/s" in p.stdout
    for f in ("phase.csv", "runs.csv", "compare.csv", "phase.png", "summary.json", "config.yaml"):
        assert (d / f).exists(), f
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "ok" and s["runs"] == 18 and s["chunks"] == 5 and s["chunk_runs"] == 4
    runs = _csv(d / "runs.csv")
    assert len(runs) == 18
    phase = diagram.read_csv(d / "phase.csv")
    assert [(r["A"], r["T"]) for r in phase] == [(A, T) for A in (1.0, 10.0) for T in (30, 60, 100)]
    for A, T in ((10, 30), (10, 100), (1, 60)):
        q = run_cli(f"schedule.A={A}", f"schedule.T={T}", "seeds=3", *TINY, f"hydra.run.dir=t{A}_{T}", cwd=tmp_path)
        assert q.returncode == 0, q.stderr[-2000:]
        one = json.loads((tmp_path / f"t{A}_{T}" / "summary.json").read_text())["final"]
        mine = [r for r in runs if float(r["A"]) == A and int(r["T"]) == T]
        assert [int(r["seed"]) for r in mine] == [0, 1, 2]
        np.testing.assert_array_equal([float(r["train_acc"]) for r in mine], one["train_acc"]["per_seed"])
        np.testing.assert_array_equal([float(r["val_acc"]) for r in mine], one["val_acc"]["per_seed"])
        np.testing.assert_allclose([float(r["loss"]) for r in mine], one["loss"]["per_seed"], rtol=1e-6)
        row = next(r for r in phase if (r["A"], r["T"]) == (A, T))
        assert row["train_acc_mean"] == pytest.approx(one["train_acc"]["mean"], rel=1e-12)
        assert row["val_acc_std"] == pytest.approx(one["val_acc"]["std"], rel=1e-12)


def test_phase_chunking_and_devices_do_not_change_results(tmp_path):
    """One chunk on one device vs. chunks of 3 (not dividing the 8 runs) on two devices."""
    _, a = _phase(tmp_path, "grid.A=1,20", "grid.T=40,80", "seeds=2", "grid.chunk_runs=3", *TINY, name="a")
    _, b = _phase(tmp_path, "grid.A=1,20", "grid.T=40,80", "seeds=2", "grid.chunk_runs=8", *TINY, name="b",
                  env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert json.loads((b / "summary.json").read_text())["devices"] == 1
    assert json.loads((a / "summary.json").read_text())["devices"] == 2
    assert _csv(a / "runs.csv") == _csv(b / "runs.csv")


def test_phase_records_diverged_runs(tmp_path):
    _, d = _phase(tmp_path, "grid.A=1,50", "grid.T=10", "seeds=2", "optimizer.lr=1e12", "train.steps=30",
                  "train.log_every=10", "model.width=8", "figures=true")
    rows = diagram.read_csv(d / "phase.csv")
    s = json.loads((d / "summary.json").read_text())
    assert s["diverged_runs"] == sum(round(r["diverged_frac"] * r["runs"]) for r in rows) > 0
    dead = [r for r in _csv(d / "runs.csv") if int(r["diverged_step"]) >= 0]
    assert dead and all(r["train_acc"] == "" for r in dead)
    # the figure can be redrawn from phase.csv alone
    q = run_cli(str(d), "-o", "again.png", cwd=tmp_path, module="dlf.diagram")
    assert q.returncode == 0, q.stderr
    assert _png_shape(tmp_path / "again.png") == _png_shape(d / "phase.png") == (564, 2016)  # 3 panels


@pytest.mark.parametrize("args, msg", [
    (["grid.A=0.5,10"], "grid.A[0]=0.5 is not allowed; expected a number >= 1"),
    (["grid.T=1,100"], "grid.T[0]=1 is not allowed; expected an integer >= 2"),
    (["grid.A=1,1"], "grid.A=[1.0, 1.0] is not allowed; expected distinct values"),
    (["grid.chunk_runs=0"], "grid.chunk_runs=0 is not allowed; expected an integer >= 1"),
    (["-m", "grid.A=1,2"], "dlf.phase trains the whole grid in one program"),
    (["schedule=static", "grid.A=1,5"], "grid.A is not allowed with schedule.shape=static"),
])
def test_phase_bad_input_is_one_line(tmp_path, args, msg):
    p = run_cli(*args, "hydra.run.dir=bad", cwd=tmp_path, module="dlf.phase")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"dlf: error: {p.stderr.strip()[len('dlf: error: '):]}"]
    assert msg in p.stderr


def test_train_refuses_grid_keys(tmp_path):
    p = run_cli("grid.A=[1,5]", "hydra.run.dir=bad", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("dlf: error: grid.A, grid.T and grid.lr are for phase diagrams")


# ---------------------------------------------------------------- sweeps of jobs + aggregation

def test_multirun_jobs_aggregate_to_the_phase_diagram(tmp_path):
    """`dlf.train -m` with the basic launcher: one job per (A, T, seed) in its own directory; a
    job given an invalid value fails alone; `dlf.aggregate` reproduces dlf.phase's diagram and
    lists the failed and the missing jobs."""
    p = run_cli("-m", "schedule.A=1,10", "schedule.T=30,100", "seed=0,1", "seeds=1", *TINY,
                "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = sorted(x.name for x in (tmp_path / "sweep").iterdir() if x.is_dir())
    assert jobs == ["0_A1_T30_s0", "1_A1_T30_s1", "2_A1_T100_s0", "3_A1_T100_s1",
                    "4_A10_T30_s0", "5_A10_T30_s1", "6_A10_T100_s0", "7_A10_T100_s1"]
    for j in jobs:
        s = json.loads((tmp_path / "sweep" / j / "summary.json").read_text())
        assert s["status"] == "ok" and len(s["seeds"]) == 1
    q = run_cli("sweep", cwd=tmp_path, module="dlf.aggregate")
    assert q.returncode == 0, q.stderr
    assert "8 job(s) ok, 0 failed, 0 missing" in q.stdout
    _, ph = _phase(tmp_path, "grid.A=1,10", "grid.T=30,100", "seeds=2", *TINY)
    agg, ref = diagram.read_csv(tmp_path / "sweep" / "phase.csv"), diagram.read_csv(ph / "phase.csv")
    assert [(r["A"], r["T"], r["n"]) for r in agg] == [(r["A"], r["T"], r["n"]) for r in ref]
    for a, r in zip(agg, ref):
        for k in ("train_acc_mean", "train_acc_std", "val_acc_mean", "val_acc_std", "diverged_frac"):
            assert a[k] == pytest.approx(r[k], rel=1e-9, abs=1e-12), k
    assert _png_shape(tmp_path / "sweep" / "phase.png") == (564, 2016)  # three panels (content: test_figures)
    # the results layer reads both back: one row per (run, seed), the same per-run finals
    import dlf.results
    swept, grid = dlf.results.load(tmp_path / "sweep"), dlf.results.load(ph)
    assert len(swept) == len(grid) == 8 and set(swept.status) == {"ok"}
    key = ["A", "T", "seed"]
    a, b = swept.sort_values(key).reset_index(drop=True), grid.sort_values(key).reset_index(drop=True)
    np.testing.assert_allclose(a.val_acc, b.val_acc, rtol=1e-12)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)  # the metric, not the config's loss name
    stats = a.groupby(["A", "T"]).train_acc.agg(["mean", "std"]).reset_index()
    for row, r in zip(stats.itertuples(), ref):
        assert (row.A, row.T) == (r["A"], r["T"]) and row.mean == pytest.approx(r["train_acc_mean"], rel=1e-9)
    assert _csv(tmp_path / "sweep" / "runs.csv") == _csv(ph / "runs.csv")  # aggregate writes runs.csv too

    # a second sweep: one job invalid (A < 1), one job's directory lost -> partial aggregation
    p = run_cli("-m", "schedule.A=0.5,10", "schedule.T=30", "seed=0,1", "seeds=1", *TINY,
                "hydra.sweep.dir=sweep2", cwd=tmp_path,
                env={"DLF_SWEEP_PRECHECK": "0"})  # let the bad job fail alone (tests/test_sweeps.py: the check)
    bad = tmp_path / "sweep2" / "0_A0.5_T30_s0" / "summary.json"
    assert json.loads(bad.read_text())["status"] == "failed"
    assert "schedule.A=0.5 is not allowed" in json.loads(bad.read_text())["error"]
    for j in ("2_A10_T30_s0", "3_A10_T30_s1"):
        assert json.loads((tmp_path / "sweep2" / j / "summary.json").read_text())["status"] == "ok"
    import shutil
    shutil.rmtree(tmp_path / "sweep2" / "3_A10_T30_s1")
    q = run_cli("sweep2", cwd=tmp_path, module="dlf.aggregate")
    assert q.returncode == 0, q.stderr
    assert "1 job(s) ok, 2 failed, 1 missing" in q.stdout
    assert "job 3 (schedule.A=10 schedule.T=30 seed=1" in q.stdout
    rep = json.loads((tmp_path / "sweep2" / "aggregate.json").read_text())
    assert set(rep["failed"]) == {"0_A0.5_T30_s0", "1_A0.5_T30_s1"}
    assert diagram.read_csv(tmp_path / "sweep2" / "phase.csv")[0]["runs"] == 1


def test_aggregate_bad_input(tmp_path):
    q = run_cli(str(tmp_path / "nope"), cwd=tmp_path, module="dlf.aggregate")
    assert q.returncode == 2 and "is not a directory" in q.stderr


@pytest.mark.parametrize("text", ["{{{: [\n", "hydra: 5\n", ""])
def test_a_malformed_multirun_yaml_is_one_line_naming_it(tmp_path, capsys, text):
    """Issue 21: a damaged multirun.yaml (it says which jobs belong to the launch) was a traceback;
    now one line naming it, exit 2, nothing written."""
    from dlf.cli.aggregate import main

    job = tmp_path / "sw" / "0_A1_T10_s0"
    job.mkdir(parents=True)
    (job / "summary.json").write_text(json.dumps({"status": "ok", "seeds": [0], "config": {"seed": 0}}))
    (tmp_path / "sw" / "multirun.yaml").write_text(text)
    assert main([str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'sw' / 'multirun.yaml'} is not a Hydra multirun.yaml" in err[0]
    assert sorted(p.name for p in (tmp_path / "sw").iterdir()) == ["0_A1_T10_s0", "multirun.yaml"]


@pytest.mark.parametrize("text, why", [("garbage,stuff\n1,2\nxx\n", "no A, T, n"),
                                       ("A,T,n,train_acc_mean,train_acc_ci95,train_acc_std,val_acc_mean,val_acc_ci95,"
                                        "val_acc_std,diverged_frac,runs\nx,5,1,,,,,,,,\n", "line 2 has no numeric A")])
def test_dlf_diagram_refuses_a_garbage_phase_csv(tmp_path, capsys, text, why):
    """Issue 21: `dlf.diagram` drew an empty figure from a garbage phase.csv and said `wrote`; now
    one line naming the file and what is wrong, exit 2, no figure."""
    from dlf.cli.diagram import main

    (tmp_path / "phase.csv").write_text(text)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'phase.csv'} is not a phase.csv" in err[0] and why in err[0]
    assert not (tmp_path / "phase.png").exists()
