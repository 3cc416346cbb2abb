"""Rerun the docs' Fig. 4, Fig. 5, Fig. 3 (T=300 switch-off) and paired-comparison runs and rewrite
their numbers.

`make figures` (or `python docs/figures.py [--only fig4,fig5,fig3_off,compare] [--reuse]`). Each part
trains with `dlf.train` / `dlf.phase` in subprocesses under outputs/figures/, copies its PNGs into
docs/ and replaces the text between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->` in
docs/probes.md, docs/fig3.md and README.md with numbers read from the runs' summary.json, the commands, the
measured wall time and the commit the runs were made at. --reuse skips runs whose summary.json
exists (status ok).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("DLF_OUTPUT_DIR", ROOT / "outputs")) / "figures"  # as conf/paths
DOCS = ROOT / "docs"
PY = sys.executable

# sizes [decision]: Fig. 5a at 25 000/eta steps (five periods T = 5000/eta, five cascades per seed)
# in float32 without the NTK probe (unused by Fig. 5), so the whole scan fits ~20 min of 2 CPU cores.
FIG4 = ["experiment=fig4_dynamics", "seeds=4"]
FIG5_LRS = (0.5, 1.0, 2.0, 4.0, 8.0)
FIG5_WIDTHS = (100, 1000)
FIG5_STEPS = 25_000
FIG5 = ["experiment=fig5_threshold", "seeds=4", "precision=float32", "probes.ntk.every=0",
        "grid.lr=" + ",".join(f"{x:g}" for x in FIG5_LRS), f"train.steps='${{div:{FIG5_STEPS},${{optimizer.lr}}}}'"]
FIG5BC = ["experiment=fig5_threshold", "schedule.A=1", "seeds=1", "precision=float32", "probes.ntk.every=0"]
FIG3_OFF = ["grid.A=10,20,30", "grid.T=300", "seeds=10"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def train(run_dir: Path, overrides: list[str], reuse: bool, module: str = "dlf.train"):
    """One run in run_dir (skipped with reuse when it has finished), read back by dlf.results: its
    summary.json (`.summary`) and typed config (`.config`)."""
    from dlf.results import read_run

    f = run_dir / "summary.json"
    if not (reuse and f.exists() and json.loads(f.read_text()).get("status") == "ok"):
        # a fresh directory: dlf would otherwise find its finished run there and train nothing, and the
        # docs would restate the old run's numbers as if measured now
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = [PY, "-m", module, *overrides, f"hydra.run.dir={run_dir}"]
        print("figures:", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    run = read_run(run_dir)
    if run.config is None:
        raise SystemExit(f"figures: {run_dir}: {run.error}")
    return run


def replace_block(path: Path, name: str, text: str) -> None:
    """Put `text` between the markers of `name` in `path` (the markers must exist)."""
    src = path.read_text()
    pat = re.compile(rf"(<!-- figures:{name} -->\n).*?(<!-- /figures:{name} -->)", re.S)
    if not pat.search(src):
        raise SystemExit(f"figures: {path} has no <!-- figures:{name} --> block")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a kill mid-write leaves the old file whole
    tmp.write_text(pat.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), src))
    os.replace(tmp, path)


def stamp(summaries: list[dict]) -> str:
    """The commit(s) the runs were made at (several when HEAD moved during a long scan)."""
    shas = sorted({(s.get("git_sha") or "unknown")[:10] for s in summaries})
    return ("commit " if len(shas) == 1 else "commits ") + ", ".join(shas)


def ci_of(mean, std, n, f=".3f") -> str:
    """`mean ± half-width of the 95% t interval (n=...)` from a mean, sample std and n."""
    from dlf.analysis.stats import t_quantile

    half = t_quantile(0.975, n - 1) * std / n ** 0.5 if n > 1 else None
    return f"{mean:{f}} (n=1)" if half is None else f"{mean:{f}} ± {half:{f}} (95% CI, n={n})"


def ci(values, f=".3f") -> str:
    """`mean ± half-width of the 95% t interval (n=...)` of the finite values."""
    from dlf.analysis.stats import interval

    v = interval(values)
    return f"{v['mean']:{f}} (n=1)" if v["n"] == 1 else f"{v['mean']:{f}} ± {v['ci95']:{f}} (95% CI, n={v['n']})"


def fig4(reuse: bool) -> None:
    run = train(OUT / "fig4", FIG4, reuse)
    s = run.summary
    shutil.copy(OUT / "fig4" / "probes.png", DOCS / "fig4_dynamics.png")
    t, lr = s["threshold"], run.config.optimizer.lr
    z = np.load(OUT / "fig4" / "probes.npz")
    r0 = t["per_seed"][0]
    seeds = "; ".join(f"seed {r['seed']}: {ci(r['values'])}" for r in t["per_seed"])
    first = [(o, v) for o, v in zip(r0["cascade_onsets"], r0["values"])]
    ntk = z["ntk_lambda_max"][0]
    lit = t["literal"]
    pooled = np.array([v for r in t["per_seed"] for v in r["values"] if v is not None])
    worst = max(((v, r["seed"], o) for r in t["per_seed"] for o, v in zip(r["cascade_onsets"], r["values"])
                 if v is not None), default=(np.nan, None, None))
    text = f"""`python docs/figures.py --only fig4` runs `python -m dlf.train {' '.join(FIG4)}` —
{s['wall_s']:.0f} s on the 2-core CPU ({s['compile_s']:.0f} s compilation), {stamp([s])}.

- Threshold (first onset of each cascade, branch-averaged Hessian lambda_max; `summary.json`
  `threshold`): seed 0 **{ci(r0['values'])}** over its cascades, i.e.
  {100 * (r0['mean'] * lr / 2 - 1):+.1f}% from 2/eta = {2 / lr:g}. All seeds: {seeds}; pooled
  {ci(pooled)} over all cascades (median {np.median(pooled):.3f}), per-seed means
  {ci([r['mean'] for r in t['per_seed'] if r['mean'] is not None])},
  {100 * (t['seed_mean']['mean'] * lr / 2 - 1):+.1f}%
  from 2/eta). The spread is heavy-tailed: the largest value, {worst[0]:.2f}, is seed {worst[1]}'s cascade at
  step {worst[2]}, one of the short late cascades near a period boundary, where lambda_max jumps
  from ~2 to 5-7 between two samples (25 steps) just before the detected onset: the rise is faster
  than the sampling, and the two samples before the onset already see the instability. Each cascade
  holds many more episodes ({t['n_onsets']} in all); their onsets,
  where lambda_max reaches ~{np.nanmax(z['hessian_lambda_max']):.0f}, are not thresholds.
- Seed 0's cascades start at steps {', '.join(f'{o:,}'.replace(',', ' ') for o, _ in first)} with lambda_max
  {', '.join(f'{v:.2f}' for _, v in first)}.
- Paper-literal variant (lambda_max before the first and after the last jump >= {t['detector']['jump']}
  between samples, around each cascade): {ci_of(lit['mean'], lit['std'], lit['n'])} over its starts and ends
  (mean jump {lit['jump_mean']:.3f}). It is lower: the lambda_max samples already alternate by ~0.1 in the
  approach to 2/eta (we read this as a stable but oscillating mode driven by the moving
  landscape), so the first jump comes before the instability.
- NTK lambda_max on the whole training set (Theta = J J^T, J the Jacobian of the 300 x 3 logits, no
  1/N): {np.nanmin(ntk):.0f} to {np.nanmax(ntk):.0f} over the run. On the same trajectory the former
  51-point sample set (`probes.ntk.samples=51`) gives values several times smaller, which was the
  gap to the scale of the paper's Fig. 4f.
"""
    replace_block(DOCS / "probes.md", "fig4", text)


def fig5(reuse: bool) -> None:
    from dlf.analysis import fig5 as f5
    from dlf.analysis.bifurcation import threshold_summary
    from dlf.analysis.results import read_runs_csv
    from dlf.drive.build import Run
    from dlf.drive.grid_probes import run_file

    root = OUT / "fig5"
    grids = {w: train(root / "a70" / f"w{w}", FIG5 + [f"model.width={w}"], reuse, module="dlf.phase")
             for w in FIG5_WIDTHS}  # every eta of a width in one program
    bc = [train(root / "a1" / f"w{w}", FIG5BC + [f"model.width={w}"], reuse) for w in FIG5_WIDTHS]
    dirs = [g.path for g in grids.values()]
    groups, skipped = f5.fig5([*dirs, root / "a1"], DOCS / "fig5")  # a1/: the A=1 runs of Fig. 5b/c
    wall = {w: g.summary["wall_s"] for w, g in grids.items()}
    rows = [f"| {p.width} | {p.eta:g} | {ci(p.values)} | {p.mean * p.eta / 2:.3f} |"
            for p in f5.pool([pt for d in dirs for pt in f5.collect(d)[0]])]
    fits = "\n".join(f"- {f5.describe(g)}" for g in groups)
    runs = [(d, r) for d in dirs for r in read_runs_csv(d / "runs.csv")]
    per_seed = [(r["optimizer.lr"], r["threshold"]) for _, r in runs if r["threshold"] is not None]
    pooled = f5.fit_power([eta for eta, _ in per_seed], [v for _, v in per_seed])
    syst = []  # the detector's onset amplitude is a choice: refit with others, from the stored F traces
    for amp in (1e-4, 1e-3, 1e-2):
        etas, vals = [], []
        for d, r in runs:
            cfg = grids[next(w for w, g in grids.items() if g.path == d)].config
            z = np.load(run_file(d, Run(r["A"], r["T"], r["seed"], r["optimizer.lr"])))
            t = threshold_summary(z["F"], z["probe_steps"], z["hessian_lambda_max"], r["T"],
                                  quiet_frac=cfg.probes["hessian"].quiet_frac, onset_amp=amp)
            for one in t["per_seed"]:
                if one["mean"] is not None:
                    etas.append(r["optimizer.lr"])
                    vals.append(one["mean"])
        f = f5.fit_power(etas, vals)
        syst.append(f"onset_amp {amp:g}: b = {f['b']:.3f} ± {f['b_se']:.3f}, c (b = -1) = {f['c_fixed']:.3f}")
    text = f"""`python docs/figures.py --only fig5` runs, for width {' and '.join(map(str, FIG5_WIDTHS))}, every eta in
one program: `python -m dlf.phase {' '.join(FIG5)} model.width=W` (T = 5000/eta, five periods, each run
frozen at its own 25 000/eta steps; {stamp([g.summary for g in grids.values()])}), then
`python -m dlf.fig5 <width-100 dir> <width-1000 dir>`. CPU cost (each width's command end to end, 4 seeds, the
2-core CPU shared with other jobs): {' and '.join(f"{wall[w]:.0f} s (width {w})" for w in FIG5_WIDTHS)}.\
{' Skipped: ' + str(skipped) if skipped else ''}

| width | eta | threshold (mean over seeds ± 95% CI) | threshold / (2/eta) |
|---|---|---|---|
{chr(10).join(rows)}

Fits (OLS of log threshold on log eta over the per-seed thresholds, one value per seed and learning rate):
{fits}
- both widths together: b = {pooled['b']:.3f} ± {pooled['b_se']:.3f},
  c = {pooled['c']:.3f} [{pooled['c_lo']:.3f}, {pooled['c_hi']:.3f}]
  (z = {pooled['z_b']:+.2f} against b = -1, {pooled['z_a']:+.2f} against c = 2); with b = -1 fixed
  c = {pooled['c_fixed']:.3f} ± {100 * pooled['c_fixed_rel_se']:.1f}%.
- systematic (the onset amplitude is a detector choice; both widths, refit from the stored F
  traces): {'; '.join(syst)}.
"""
    replace_block(DOCS / "probes.md", "fig5a", text)
    # Fig. 5b/c against the measured threshold at eta=1
    at1 = [m for g in groups for e, m in zip(g["eta"], g["mean"]) if e == 1.0]
    thr = float(np.mean(at1)) if at1 else float("nan")
    lines = []
    for s, w in zip((r.summary for r in bc), FIG5_WIDTHS):
        z = np.load(root / "a1" / f"w{w}" / "probes.npz")
        steps, lam = z["probe_steps"], z["hessian_lambda_max"][0]
        above = np.flatnonzero(lam > thr)
        half = lam[steps >= steps[-1] / 2]
        if not above.size:
            when = "is below it at every sample"
        elif above[-1] + 1 < steps.size:
            when = f"is below it for good from step {int(steps[above[-1] + 1])} on"
        else:
            when = "is above it at the last sample"
        lines.append(f"- width {w}: lambda_max {when}; above it in {100 * np.mean(half > thr):.0f}% of the "
                     f"second half's samples (median {np.median(half):.2f}); final train accuracy "
                     f"{s['final']['train_acc']['mean']:.3f} ({s['wall_s']:.0f} s)")
    text = f"""`python -m dlf.train {' '.join(FIG5BC)} model.width=W` (W = 100, 1000; eta = 1, 70 000 steps;
{stamp([r.summary for r in bc])}). The dashed line is the threshold measured in Fig. 5a at eta = 1 (mean over both
widths): **{thr:.3f}**; the dotted line is 2/eta = 2.

{chr(10).join(lines)}
"""
    replace_block(DOCS / "probes.md", "fig5bc", text)


def fig3_off(reuse: bool) -> None:
    res, shas = {}, []
    for align in ("literal", "period"):
        d = OUT / "fig3_off" / align
        f = d / "phase.csv"
        if not (reuse and f.exists()):
            cmd = [PY, "-m", "dlf.phase", *FIG3_OFF, f"schedule.off_align={align}", f"hydra.run.dir={d}"]
            print("figures:", " ".join(cmd[1:]), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True)
            (d / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.0f}")
        res[align] = (list(csv_rows(d / "phase.csv")), (d / "wall_s.txt").read_text())
        shas.append(json.loads((d / "summary.json").read_text()))
    head = "| T=300 | " + " | ".join(f"A={r['A']:g}" for r in res["literal"][0]) + " |"
    body = []
    for align, off in (("literal", 34700), ("period", 34500)):
        cells = " | ".join(f"{r['train']:.3f} ± {r['train_ci']:.3f} / {r['val']:.3f} ± {r['val_ci']:.3f}"
                           for r in res[align][0])
        body.append(f"| off at {off} (`off_align={align}`) | {cells} |")
    from dlf.analysis.results import read_runs_csv
    from dlf.analysis.stats import paired

    runs = {a: {(r["A"], r["seed"]): r["val_acc"] for r in read_runs_csv(OUT / "fig3_off" / a / "runs.csv")}
            for a in ("literal", "period")}
    effects = []
    for A in sorted({A for A, _ in runs["literal"]}):
        seeds = sorted(s for (a, s) in runs["literal"] if a == A and runs["literal"][A, s] is not None
                       and runs["period"].get((A, s)) is not None)
        e = paired([runs["period"][A, s] for s in seeds], [runs["literal"][A, s] for s in seeds])
        effects.append(f"A={A:g}: {e['diff']:+.3f} [{e['lo']:+.3f}, {e['hi']:+.3f}] ({e['wins']}/{e['ties']}/"
                       f"{e['losses']} w/t/l, n={e['n']})")
    text = f"""{head}
|---|---|---|---|
{chr(10).join(body)}

Validation accuracy, `period` minus `literal`, paired by seed (95% interval; 3 comparisons):
{'; '.join(effects)}.

(`python -m dlf.phase {' '.join(FIG3_OFF)} schedule.off_last_periods=1 schedule.off_align=literal|period`,
{res['literal'][1]} s and {res['period'][1]} s on the 2-core CPU, {stamp(shas)};
train / validation accuracy, mean ± half-width of the 95% interval over 10 seeds)
"""
    replace_block(DOCS / "fig3.md", "fig3_off", text)


def csv_rows(path: Path):
    import csv

    with open(path) as f:
        for r in csv.DictReader(f):
            yield {"A": float(r["A"]), "train": float(r["train_acc_mean"]), "val": float(r["val_acc_mean"]),
                   "train_ci": float(r["train_acc_ci95"]), "val_ci": float(r["val_acc_ci95"])}


COMPARE = ["experiment=fig3_spiral_narrow", "grid.A=1,10,20", "grid.T=100,700", "seeds=20"]


def compare(reuse: bool) -> None:
    """README "Paired comparisons": a real narrow-spiral grid (the paper's protocol, 20 seeds) and
    the table `dlf.stats` prints for it, with the command, the time and the commit."""
    d = OUT / "compare"
    t0 = time.perf_counter()
    run = train(d, COMPARE, reuse, module="dlf.phase")
    wall = time.perf_counter() - t0
    stats = subprocess.run([PY, "-m", "dlf.stats", str(d)], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.replace(str(d), "<dir>")
    text = f"""```
$ python -m dlf.phase {' '.join(COMPARE)}
$ python -m dlf.stats <dir>
{stats.rstrip()}
```
({run.summary['runs']} runs of 35 000 steps; {wall:.0f} s on the 2-core CPU{' (reused)' if reuse and wall < 5 else ''},
{stamp([run.summary])}.)"""
    replace_block(ROOT / "README.md", "compare", text)


PARTS = {"fig4": fig4, "fig5": fig5, "fig3_off": fig3_off, "compare": compare}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--reuse", action="store_true", help="skip runs that have finished")
    args = ap.parse_args(argv)
    if git("status", "--porcelain", "--untracked-files=no"):
        print("figures: warning: the work tree has uncommitted changes; the stamped commit is HEAD")
    for name in args.only.split(","):
        t0 = time.perf_counter()
        PARTS[name](args.reuse)
        print(f"figures: {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
