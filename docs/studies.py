"""The paper's open questions as studies (issue 23): rerun them and rewrite docs/studies.md.

`make studies` (or `python docs/studies.py [--only fig3,valset,width,init,controls,threshold] [--reuse]
[--runs-only]`). Every study is one or more `python -m dlf.phase` commands (listed in RUNS, run in
subprocesses under outputs/studies/); its figure goes to docs/studies/, and its text replaces the
block between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->` in docs/studies.md: the command,
a table of paired differences against the baseline (95% intervals, n, the number of comparisons in
the family and Holm-adjusted p), the cost on the machine that ran it and the commit of the runs.
--reuse keeps runs whose summary.json says ok (their commit is what the text names).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as fig  # noqa: E402  (docs/figures.py: train, replace_block, stamp, git)

OUT = fig.OUT.parent / "studies"
DOCS = fig.DOCS
MD = DOCS / "studies.md"
PNG = DOCS / "studies"

NARROW, WIDE = "experiment=fig3_spiral_narrow", "experiment=fig3_spiral_wide"
PAPER_A, PAPER_T = "grid.A=1,5,10,20,30,50,70", "grid.T=50,100,200,300,500,1000"
# [decision, cost] the wide network's periods: the paper's claim is about T <~ 700 (a width-1000 run
# costs ~10x a width-100 one on this CPU, and 16 seeds of the full grid would take ~40 min)
WIDE_T = "grid.T=100,300,700"
# [decision, fixed before the runs] the harder validation set of study b: angle noise 0.5 (2.5x the
# training noise), so that where the boundary sits between two arms matters; the radii as dlf's
HARD_VAL = "dataset.val_noise=0.5"
WIDTHS = (25, 50, 100, 200, 400, 1000)
CELLS = ["grid.A=1,10,20", "grid.T=100"]  # A=1 against two points of the paper's good region (both widths)
INITS = {"lecun": ["model.init=lecun"], "glorot": ["model.init=glorot"],
         "ntk": ["model.init=lecun", "model.parameterization=ntk"]}
CONTROL_CELLS = ["grid.A=10,20", "grid.T=100,300"]
CONTROLS = {  # each against the triangle at the same (A, T); the triangle run also holds A=1
    "triangle": ["grid.A=1,10,20", "grid.T=100,300"],
    "lr oscillation (schedule.target=lr)": ["schedule.target=lr", *CONTROL_CELLS],
    "static tilt (shape=constant, order=fixed)": ["schedule.shape=constant", "schedule.order=fixed", *CONTROL_CELLS],
    "random class order (order=random)": ["schedule.order=random", *CONTROL_CELLS],
    "cosine": ["schedule.shape=cosine", *CONTROL_CELLS],
    "square": ["schedule.shape=square", *CONTROL_CELLS],
}
LRS_PAPER, LRS_HELD = (0.5, 1.0, 2.0, 4.0, 8.0), (0.7, 1.5, 3.0, 6.0)
THR_WIDTHS = (50, 100, 300)  # 100: the paper's; 50 and 300 held out
THRESHOLD = ["experiment=fig5_threshold", "seeds=4", "probes.ntk.every=0",
             "grid.lr=" + ",".join(f"{x:g}" for x in sorted(LRS_PAPER + LRS_HELD))]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.split(" (")[0]).strip("_")


RUNS: dict[str, dict[str, list[str]]] = {
    "fig3": {"narrow": [NARROW, PAPER_A, PAPER_T, "seeds=50"], "wide": [WIDE, PAPER_A, WIDE_T, "seeds=16"]},
    "valset": {"wide_hard": [WIDE, "grid.A=1,5,10,20,30", WIDE_T, "seeds=16", HARD_VAL]},
    "width": {f"w{w}": [NARROW, *CELLS, "seeds=32", f"model.width={w}"] for w in WIDTHS},
    "init": {k: [NARROW, *CELLS, "seeds=50", *v] for k, v in INITS.items()},
    "controls": {slug(k): [NARROW, "seeds=50", *v] for k, v in CONTROLS.items()},
    "threshold": {f"w{w}": [*THRESHOLD, f"model.width={w}"] for w in THR_WIDTHS},
}


TITLES = {"fig3": "Fig. 3 at the paper's seed count.", "valset": "The wide network's generalisation.",
          "width": "Under- to over-parameterised.", "init": "Initialisation.",
          "controls": "Class emphasis or step-size kicks?", "threshold": "The curvature threshold, detector fixed."}
ANCHORS = {"fig3": "a-fig-3-at-the-papers-seed-count",
           "valset": "b-does-the-dynamical-loss-improve-the-wide-networks-generalisation",
           "width": "c-where-under-parameterised-turns-over-parameterised", "init": "d-initialisation",
           "controls": "e-controls-class-emphasis-or-step-size-kicks",
           "threshold": "f-the-curvature-threshold-with-the-detector-fixed-in-advance"}


# keys dlf.phase fills in or that never change what a grid computes: left out when a finished
# directory is checked against the command that would make it
UNCHECKED = ("paths.", "logger.", "checkpoint.", "stats.", "compile_cache", "grid.lr_T", "grid.lr_steps",
             "grid.shard", "grid.chunk_runs")


def expected_config(overrides: list[str]):
    """The typed Config `python -m dlf.phase <overrides>` composes (grid lists as dlf.phase reads them)."""
    from hydra import compose, initialize_config_dir

    from dlf import config as config_lib
    from dlf.cli.phase import list_args

    config_lib.register_resolvers()
    with initialize_config_dir(config_dir=str(fig.ROOT / "conf"), version_base="1.3"):
        return config_lib.from_hydra(compose("phase", overrides=list_args([o.replace("'", "") for o in overrides])))


def stale(run_dir: Path, overrides: list[str]) -> list[str]:
    """The keys (grid included) whose values in the finished directory's config differ from what
    `overrides` asks for now: a reused directory must come from the command the docs print."""
    from dlf.analysis.results import settings
    from dlf.results import read_run

    have, want = settings(read_run(run_dir).config), settings(expected_config(overrides))
    return sorted(k for k in set(have) | set(want) if not k.startswith(UNCHECKED) and have.get(k) != want.get(k))


def run(study: str, name: str, reuse: bool):
    """One phase directory of a study (trained unless reused), read back by dlf.results. A finished
    directory made by another command (another grid, seeds, option) is trained again, not reused."""
    t0 = time.perf_counter()
    d = OUT / study / name
    if reuse and (d / "summary.json").exists() and (keys := stale(d, RUNS[study][name])):
        print(f"studies: {d} was made by another command ({', '.join(keys[:5])} differ): training it again")
        reuse = False
    r = fig.train(d, RUNS[study][name], reuse, module="dlf.phase")
    wall = OUT / study / name / "wall_s.txt"
    if time.perf_counter() - t0 > 5 or not wall.exists():
        wall.write_text(f"{time.perf_counter() - t0:.0f}")
    return r


def wall_of(study: str, name: str) -> float:
    return float((OUT / study / name / "wall_s.txt").read_text())


def command(study: str, name: str) -> str:
    return "python -m dlf.phase " + " ".join(RUNS[study][name])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(RUNS), help=f"comma-separated studies of {', '.join(RUNS)}")
    ap.add_argument("--reuse", action="store_true", help="keep runs that have finished")
    ap.add_argument("--runs-only", action="store_true", help="train, do not rewrite docs/studies.md")
    args = ap.parse_args(argv)
    if fig.git("status", "--porcelain", "--untracked-files=no"):
        print("studies: warning: the work tree has uncommitted changes; the stamped commit is HEAD")
    PNG.mkdir(exist_ok=True)
    for study in args.only.split(","):
        if study not in RUNS:
            raise SystemExit(f"studies: --only {study} is not a study; expected one of: {', '.join(RUNS)}")
        t0 = time.perf_counter()
        runs = {name: run(study, name, args.reuse) for name in RUNS[study]}
        if not args.runs_only:
            from studies_report import PARTS  # the analyses (docs/studies_report.py)

            answer = PARTS[study](runs)
            fig.replace_block(fig.ROOT / "README.md", f"find_{study}",
                              f"- **{TITLES[study]}** {answer} ([details](docs/studies.md#{ANCHORS[study]}))")
        print(f"studies: {study} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
