"""Answers a researcher can trust: Student's t and the paired and unpaired intervals against exact
values, planted effects recovered (and none where none was planted), the 95% interval's coverage,
Holm's adjustment, and the comparison of every cell of a grid with its baseline."""
import math

import numpy as np
import pytest

from dlf.analysis import compare as cmp
from dlf.analysis.stats import betainc, holm, interval, paired, t_quantile, t_sf, unpaired
from dlf.errors import ConfigError

# scipy.stats.t.ppf(0.975, df) (tables): df 1, 2, 5, 10, 29, 1000
T975 = {1: 12.706204736174707, 2: 4.302652729749464, 5: 2.570581835636314, 10: 2.2281388519862744,
        29: 2.045229642132703, 1000: 1.9623390808264074}


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_and_tail(df):
    assert t_quantile(0.975, df) == pytest.approx(T975[df], rel=1e-9)
    assert t_sf(T975[df], df) == pytest.approx(0.025, rel=1e-9)
    assert t_quantile(0.025, df) == pytest.approx(-T975[df], rel=1e-9)


def test_incomplete_beta_closed_forms():
    for x in (0.1, 0.4, 0.9):
        assert betainc(1, 1, x) == pytest.approx(x, rel=1e-12)  # uniform
        # I_x(2, 3) = 6x^2 - 8x^3 + 3x^4 (the Beta(2, 3) CDF)
        assert betainc(2, 3, x) == pytest.approx(6 * x**2 - 8 * x**3 + 3 * x**4, rel=1e-12)


def test_interval_is_the_t_interval():
    s = interval([0.4, 0.5, 0.6, None])
    assert (s["n"], s["mean"], s["std"]) == (3, pytest.approx(0.5), pytest.approx(0.1))
    assert s["ci95"] == pytest.approx(T975[2] * 0.1 / math.sqrt(3), rel=1e-12)
    assert interval([0.7])["ci95"] is None and interval([])["n"] == 0


def test_a_planted_paired_effect_is_recovered_and_none_where_none_was_planted():
    rng = np.random.default_rng(0)
    base = 0.6 + 0.1 * rng.standard_normal(30)  # seeds differ a lot ...
    effect = 0.02 + 0.005 * rng.standard_normal(30)  # ... the effect of the cell little
    r = paired(base + effect, base)
    d = effect
    assert r["kind"] == "paired" and r["n"] == 30 and r["diff"] == pytest.approx(d.mean(), abs=1e-12)
    half = T975[29] * d.std(ddof=1) / math.sqrt(30)
    assert (r["lo"], r["hi"]) == (pytest.approx(d.mean() - half, abs=1e-12), pytest.approx(d.mean() + half, abs=1e-12))
    assert r["lo"] > 0 and (r["wins"], r["ties"], r["losses"]) == (int((d > 0).sum()), 0, int((d < 0).sum()))
    assert r["p"] < 1e-10
    # unpaired, the same values cannot show it: the seed spread hides a 0.02 shift
    u = unpaired(base + effect, base)
    assert u["kind"] == "unpaired" and u["lo"] < 0 < u["hi"] and u["wins"] is None
    none = paired(base, base)
    assert (none["diff"], none["ties"], none["p"], none["ci95"]) == (0.0, 30, 1.0, 0.0)


@pytest.mark.parametrize("method, n", [(paired, 8), (unpaired, 12)])
def test_the_95_percent_interval_covers_a_planted_difference_95_percent_of_the_time(method, n):
    rng = np.random.default_rng(1234)
    truth, hits, reps = 0.03, 0, 4000
    for _ in range(reps):
        base = 0.5 + 0.05 * rng.standard_normal(n)
        cell = (base if method is paired else 0.5 + 0.05 * rng.standard_normal(n)) + truth \
            + 0.02 * rng.standard_normal(n)
        r = method(cell, base)
        hits += r["lo"] <= truth <= r["hi"]
    # binomial sd of the coverage over 4000 repeats: 0.0034
    assert abs(hits / reps - 0.95) < 0.012, hits / reps


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None]) == [0.5, None]
    assert holm([0.02, 0.9]) == pytest.approx([0.04, 0.9])


def _grid(effect_at, seeds=20, diverged=()):
    """runs.csv rows of a grid A=1,10 x T=100,300 over seeds: A=1 is the baseline (the same at every
    T); `effect_at` plants a per-seed gain in val_acc."""
    rng = np.random.default_rng(7)
    base = 0.6 + 0.08 * rng.standard_normal(seeds)
    runs = []
    for A in (1.0, 10.0):
        for T in (100, 300):
            gain = effect_at.get((A, T), 0.0)
            for s in range(seeds):
                dead = (A, T, s) in diverged
                v = None if dead else float(base[s] + gain + (0.002 * rng.standard_normal() if A != 1 else 0))
                runs.append({"A": A, "T": T, "seed": s, "val_acc": v, "train_acc": v,
                             "diverged_step": 7 if dead else -1})
    return runs


def test_every_cell_against_its_baseline_paired_by_seed():
    runs = _grid({(10.0, 100): 0.05}, diverged={(10.0, 300, 3)})
    rows = cmp.compare(runs, ["A", "T"], "A=1", metrics=("val_acc",))
    by = {(r["A"], r["T"]): r for r in rows}
    assert set(by) == {(10.0, 100), (10.0, 300)}  # the baseline cells are not compared with themselves
    assert by[10.0, 100]["lo"] > 0.04 and by[10.0, 100]["hi"] < 0.06 and by[10.0, 100]["wins"] == 20
    assert by[10.0, 300]["lo"] < 0 < by[10.0, 300]["hi"]  # nothing planted there
    assert by[10.0, 300]["n"] == 19 and by[10.0, 300]["n_cell"] == 19  # the diverged seed is left out
    assert all(r["family"] == 2 for r in rows) and all(r["kind"] == "paired" for r in rows)
    v = cmp.verdict(rows)
    assert (v["comparisons"], v["better"], v["worse"], v["better_holm"]) == (2, 1, 0, 1)
    assert (v["best"]["A"], v["best"]["T"]) == (10.0, 100)
    assert cmp.reading(v).startswith("1 of 2 cells better than A=1 in val_acc at 95% (1 after Holm")


def test_a_baseline_at_another_T_stands_in_for_A_1_and_other_keys_must_match():
    runs = [r for r in _grid({}) if not (r["A"] == 1.0 and r["T"] == 300)]  # A=1 only at T=100
    rows = cmp.compare(runs, ["A", "T"], "A=1", metrics=("val_acc",))
    assert {r["baseline"] for r in rows} == {"A=1", "A=1 (T=100)"}
    # another key as the baseline: lr=0.5 against lr=1 at every (A, T); a typo is one line
    lr = [{**r, "optimizer.lr": x} for r in _grid({}) for x in (0.5, 1.0)]
    rows = cmp.compare(lr, ["optimizer.lr", "A", "T"], "lr=1", metrics=("val_acc",))
    assert len(rows) == 4 and {r["optimizer.lr"] for r in rows} == {0.5}
    with pytest.raises(ConfigError, match="baseline key 'width' is not allowed; expected one of: optimizer.lr, A, T"):
        cmp.compare(lr, ["optimizer.lr", "A", "T"], "width=100")
    with pytest.raises(ConfigError, match="expected key=value"):
        cmp.parse_baseline("A", ["A", "T"])


def test_cells_that_share_no_seed_get_an_unpaired_interval():
    runs = [r for r in _grid({(10.0, 100): 0.05}) if not (r["A"] == 10.0 and r["seed"] < 10)]
    runs = [r for r in runs if not (r["A"] == 1.0 and r["seed"] >= 10)]
    (row, _) = cmp.compare(runs, ["A", "T"], "A=1", metrics=("val_acc",))
    assert row["kind"] == "unpaired" and row["wins"] is None and (row["n_cell"], row["n_base"]) == (10, 10)


# ---------------------------------------------------------------- end to end (the CLIs)

TINY = ["train.steps=40", "train.log_every=20", "model.width=8", "schedule.off_last_periods=0"]


def _cli(*args, cwd, module="dlf.train", env=None):
    from conftest import run_cli

    p = run_cli(*args, cwd=cwd, module=module, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.mark.slow
def test_a_sweep_over_lr_and_width_is_aggregated_cell_by_cell_with_paired_comparisons(tmp_path):
    import json

    import dlf.results
    from dlf.analysis.phase_table import read_csv
    from dlf.outputs import read_csv as read_any

    _cli("-m", "schedule.A=1,10", "optimizer.lr=0.5,1", "model.width=4,8", "seeds=3", *TINY[:2], TINY[3],
         "hydra.sweep.dir=sw", cwd=tmp_path)
    p = _cli("sw", cwd=tmp_path, module="dlf.aggregate")
    assert "8 job(s) ok" in p.stdout and "8 cell(s) over model.width, optimizer.lr, A, T" in p.stdout
    phase = read_csv(tmp_path / "sw" / "phase.csv")
    assert [(r["model.width"], r["optimizer.lr"], r["A"]) for r in phase] == [
        (w, lr, A) for w in (4.0, 8.0) for lr in (0.5, 1.0) for A in (1.0, 10.0)]
    df = dlf.results.load(tmp_path / "sw")
    assert list(df.columns) == [*dlf.results.SCHEMA, "model.width", "optimizer.lr"] and len(df) == 24
    for r in phase:  # each cell's statistics from its own runs
        cell = df[(df["model.width"] == r["model.width"]) & (df["optimizer.lr"] == r["optimizer.lr"])
                  & (df.A == r["A"])]
        assert r["n"] == 3 and r["val_acc_mean"] == pytest.approx(cell.val_acc.mean(), rel=1e-12)
        assert r["val_acc_ci95"] == pytest.approx(T975[2] * cell.val_acc.std() / math.sqrt(3), rel=1e-9)
    # every (width, lr) cell at A=10 against A=1 with the same width and lr, paired by seed
    written = [r for r in read_any(tmp_path / "sw" / "compare.csv", ints=("T", "n", "wins", "ties", "losses",
                                                                         "family", "n_cell", "n_base"), text_ok=True)
               if r["metric"] == "val_acc"]
    assert len(written) == 4 and {r["family"] for r in written} == {4}
    again = dlf.results.compare(df, metrics=("val_acc",))
    for w, r in zip(written, again.to_dict("records")):
        base = df[(df["model.width"] == w["model.width"]) & (df["optimizer.lr"] == w["optimizer.lr"]) & (df.A == 1)]
        cell = df[(df["model.width"] == w["model.width"]) & (df["optimizer.lr"] == w["optimizer.lr"]) & (df.A == 10)]
        d = cell.sort_values("seed").val_acc.to_numpy() - base.sort_values("seed").val_acc.to_numpy()
        assert w["diff"] == pytest.approx(d.mean(), abs=1e-12) == r["diff"]
        assert (w["wins"], w["losses"]) == (int((d > 0).sum()), int((d < 0).sum()))
    rep = json.loads((tmp_path / "sw" / "aggregate.json").read_text())
    assert rep["comparison"]["comparisons"] == 4 and rep["best"]["val_acc_lo"] == max(w["lo"] for w in written)
    # the same table from the command line, against another baseline
    q = _cli("sw", "--baseline", "lr=1", cwd=tmp_path, module="dlf.stats")
    assert "comparison(s) of val_acc with lr=1" in q.stdout and "cells better than lr=1" in q.stdout
    assert sum(line.startswith(("width=", "A=")) for line in q.stdout.splitlines()) == 4


@pytest.mark.slow
def test_one_schema_for_a_run_a_sweep_before_and_after_aggregation_and_a_grid(tmp_path):
    import shutil

    import dlf.results

    _cli("-m", "schedule.A=1,10", "seed=0,1", "seeds=1", *TINY, "hydra.sweep.dir=sw", cwd=tmp_path)
    before = dlf.results.load(tmp_path / "sw")
    _cli("sw", cwd=tmp_path, module="dlf.aggregate")
    after = dlf.results.load(tmp_path / "sw")
    _cli("grid.A=1,10", "seeds=2", *TINY, "hydra.run.dir=grid", cwd=tmp_path, module="dlf.phase")
    grid = dlf.results.load(tmp_path / "grid")
    _cli("seeds=2", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    run = dlf.results.load(tmp_path / "run")
    for df in (before, after, grid, run):
        assert list(df.columns) == list(dlf.results.SCHEMA)
        assert {c: str(t) for c, t in df.dtypes.items()} == dlf.results.SCHEMA
    assert before.equals(after)  # aggregating a sweep does not change what it reads as
    key = ["A", "T", "seed"]
    a, g = before.sort_values(key).reset_index(drop=True), grid.sort_values(key).reset_index(drop=True)
    for c in ("train_acc", "val_acc", "ce", "val_ce"):
        np.testing.assert_allclose(a[c], g[c], rtol=1e-6)
    # a dlf.phase directory copied into the sweep, and the jobs of another launch into the same
    # directory: neither adds rows; both are named
    shutil.copytree(tmp_path / "grid", tmp_path / "sw" / "copied_grid")
    _cli("-m", "schedule.A=1,30", "seed=0", "seeds=1", *TINY, "hydra.sweep.dir=sw", cwd=tmp_path,
         env={"DLF_SWEEP_PRECHECK": "0"})
    relaunched = dlf.results.load(tmp_path / "sw")
    assert sorted(relaunched.A) == [1.0, 30.0]  # this launch's jobs only: A=1 and A=30, seed 0
    sweep = dlf.results.read_sweep(tmp_path / "sw")
    assert "copied_grid" in sweep.foreign and any("not job 1's of this launch" in w for w in sweep.foreign.values())
    p = _cli("sw", cwd=tmp_path, module="dlf.aggregate")
    assert "left out: copied_grid: not a job of this sweep's launch" in p.stdout


def test_a_path_without_results_is_one_line(tmp_path):
    from conftest import run_cli

    import dlf.results

    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for path, msg in ((tmp_path / "nope", "does not exist"), (tmp_path / "file.txt", "is a file"),
                      (tmp_path / "empty", "holds no results")):
        with pytest.raises(dlf.results.ResultsError, match=msg):
            dlf.results.load(path)
    p = run_cli(str(tmp_path / "empty"), cwd=tmp_path, module="dlf.stats")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"dlf.stats: error: {tmp_path / 'empty'} holds no results (no summary.json, no multirun.yaml, no job "
        "directories)"]
