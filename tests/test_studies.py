"""docs/studies.py: every study's command composes and validates as `dlf.phase` would run it, and
the report's statistics helpers (paired effects by seed, Wilson intervals, Holm families) compute
what the tables say."""
import math
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cli

from dlf import config as config_lib

config_lib.register_resolvers()
sys.path.insert(0, str(ROOT / "docs"))
import studies  # noqa: E402
import studies_report  # noqa: E402

COMMANDS = [(s, n, ov) for s, d in studies.RUNS.items() for n, ov in d.items()]


@pytest.mark.parametrize("study, name, overrides", COMMANDS, ids=[f"{s}-{n}" for s, n, _ in COMMANDS])
def test_every_study_command_composes_and_validates(study, name, overrides):
    from dlf.drive.grid import check

    run_cfg = studies.expected_config(overrides)
    check(run_cfg)
    assert run_cfg.seeds >= (16 if study != "threshold" else 4)
    if study == "controls" and name != "triangle":  # each control differs from the triangle in its own keys
        assert run_cfg.schedule.program_options() != dict(shape="triangle", order="cyclic", order_seed=0,
                                                          period_extra=0, target="classes")


def test_every_study_has_its_block_in_studies_md_and_readme():
    md, readme = (ROOT / "docs" / "studies.md").read_text(), (ROOT / "README.md").read_text()
    for study in studies.RUNS:
        assert f"<!-- figures:{study} -->" in md and f"<!-- /figures:{study} -->" in md
        assert f"<!-- figures:find_{study} -->" in readme
        assert study in studies_report.PARTS


def test_effect_pairs_by_seed_and_drops_missing_values():
    cell = {0: 0.9, 1: 0.8, 2: None, 3: 0.7, 5: 0.6}
    base = {0: 0.5, 1: 0.6, 2: 0.4, 3: float("nan"), 4: 0.1}
    e = studies_report.effect(cell, base)  # seeds 0 and 1 only
    assert e["n"] == 2 and e["diff"] == pytest.approx(0.3) and (e["wins"], e["losses"]) == (2, 0)
    d = np.array([0.4, 0.2])
    half = 12.706204736174705 * d.std(ddof=1) / math.sqrt(2)  # t_{0.975, 1}
    assert (e["lo"], e["hi"]) == (pytest.approx(0.3 - half), pytest.approx(0.3 + half))


@pytest.mark.parametrize("k, n", [(0, 32), (32, 32), (10, 32), (1, 7)])
def test_wilson_interval_bounds_are_where_the_score_test_rejects(k, n):
    """Wilson's bounds are the proportions q with |k/n - q| = z sqrt(q (1 - q) / n) (the score test
    at 95%), clipped to [0, 1]; k = 0 has the lower bound 0, k = n the upper bound 1."""
    z = 1.959963984540054
    p, lo, hi = studies_report.wilson(k, n)
    assert p == k / n and 0 <= lo <= p <= hi <= 1
    for q in (lo, hi):
        if 0 < q < 1:
            assert abs(p - q) == pytest.approx(z * math.sqrt(q * (1 - q) / n), rel=1e-5)
    assert (k == 0) == (lo == 0) and (k == n) == (hi == 1)


def test_family_bolds_intervals_that_exclude_zero_and_counts_holm_survivors():
    up = {"diff": 0.2, "lo": 0.1, "hi": 0.3, "p": 0.001, "wins": 9, "ties": 0, "losses": 1, "n": 10}
    flat = {"diff": 0.0, "lo": -0.1, "hi": 0.1, "p": 0.9, "wins": 5, "ties": 0, "losses": 5, "n": 10}
    rows = studies_report.family([("a", up, ""), ("b", flat, "")])
    assert "**+0.200 [+0.100, +0.300]**" in rows[0] and "**" not in rows[1]
    assert rows[0].endswith("| 0.002 |") and rows[1].endswith("| 0.9 |")  # Holm: 2 x 0.001; max(0.9, 0.002)
    assert studies_report.survivors([("a", up, ""), ("b", flat, "")]) == 1


def test_studies_md_names_commits_in_this_history():
    """Every block of docs/studies.md names the commit(s) its runs were made at, and each is an
    ancestor of HEAD (a number in the docs comes from code in main's history)."""
    import re
    import subprocess

    md = (ROOT / "docs" / "studies.md").read_text()
    for study in studies.RUNS:
        block = md.split(f"<!-- figures:{study} -->")[1].split(f"<!-- /figures:{study} -->")[0]
        m = re.search(r"\(commits? ([0-9a-f]{10}(?:, [0-9a-f]{10})*)", block)
        assert m, f"docs/studies.md: block {study} names no commit"
        for sha in m.group(1).split(", "):
            p = subprocess.run(["git", "merge-base", "--is-ancestor", sha, "HEAD"], cwd=ROOT, capture_output=True)
            assert p.returncode == 0, f"{study}: commit {sha} is not in this history"


def test_replace_block_rewrites_only_its_block_and_leaves_no_temporary(tmp_path):
    import figures

    f = tmp_path / "doc.md"
    f.write_text("a\n<!-- figures:x -->\nold\n<!-- /figures:x -->\nb\n")
    figures.replace_block(f, "x", "new\n")
    assert f.read_text() == "a\n<!-- figures:x -->\nnew\n<!-- /figures:x -->\nb\n"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.md"]
    with pytest.raises(SystemExit):
        figures.replace_block(f, "y", "z")


@pytest.mark.slow
def test_a_finished_directory_of_another_command_is_stale(tmp_path):
    """--reuse must not restate a directory made by another command: stale() names the keys (the
    grid included) that differ from what the study's command would run."""
    cmd = ["grid.A=1,10", "grid.T=20", "seeds=2", "train.steps=40", "train.log_every=20", "model.width=4"]
    p = run_cli(*cmd, "hydra.run.dir=g", module="dlf.phase", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert studies.stale(tmp_path / "g", cmd) == []
    assert studies.stale(tmp_path / "g", [*cmd[:1], "grid.T=10,20", *cmd[2:]]) == ["grid.T"]
    assert studies.stale(tmp_path / "g", [*cmd, "schedule.target=lr"]) == ["schedule.target"]
    assert "seeds" in studies.stale(tmp_path / "g", [*cmd[:2], "seeds=3", *cmd[3:]])
