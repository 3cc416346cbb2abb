"""Fig. 5a, threshold against learning rate: `python -m dlf.fig5 <multirun dir> [-o out dir]`.

Reads every job's summary.json below the directory, takes its pooled `threshold` (from
dlf.analysis.bifurcation.threshold_summary) and config (model.width, optimizer.name/lr/momentum),
pools jobs with the same (width, optimizer, eta), fits log thr = a + b log eta per width and
writes fig5.csv and fig5.png. Failed jobs and jobs without a threshold are listed and skipped.

Fit [decision]: weighted least squares in (log eta, log thr). A point's error is the relative
standard error of its mean, sigma = std / sqrt(n) / mean (delta method; n = pooled onset
samples); points without one (n < 2 or std = 0) get the median sigma of the others, and with
none at all every weight is 1. se(b) = sqrt([(X^T W X)^-1]_bb * s), with s = max(1, chi2/dof)
for a weighted fit (the errors are taken as known, and inflated when the points scatter more
than they allow: PDG scale factor) and s = chi2/dof for an unweighted one (ordinary least
squares); dof = points - 2, and se(b) is NaN for an unweighted fit through two points.
"""
from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlf.analysis.results import read_sweep
from dlf.figures import probes as probe_plots


@dataclass(frozen=True)
class Point:
    width: int
    optimizer: str  # "gd", "momentum beta=0.9", ...
    eta: float
    mean: float
    std: float
    n: int


def stability(name: str, beta: float) -> float | None:
    """c in the quadratic's stability edge c/eta (SPEC 2, Fig. 5a); None where there is none."""
    return {"gd": 2.0, "sgd": 2.0, "momentum": 2 + 2 * beta,
            "nesterov": (2 + 2 * beta) / (1 + 2 * beta)}.get(name)


def optimizer_label(name: str, beta: float) -> str:
    return f"{name} beta={beta:g}" if name in ("momentum", "nesterov") else name


def job_point(s: dict) -> Point | str:
    """A summary.json's Point, or why it is skipped."""
    if s.get("status") not in ("ok", "diverged"):
        return f"status {s.get('status')!r}: {s.get('error', 'no error recorded')}"
    if s.get("A") == 1:
        return "A=1: an ordinary-loss baseline (drawn in fig5bc.png)"
    thr = s.get("threshold")
    if not thr:
        return "no threshold in summary.json (probes off?)"
    if thr.get("mean") is None or not thr.get("n"):
        return f"no threshold: {thr.get('n_onsets', 0)} onset(s) with a Hessian sample before them"
    try:
        opt, width = s["config"]["optimizer"], s["config"]["model"]["width"]
        name, eta = opt["name"], float(opt["lr"])
    except (KeyError, TypeError) as e:
        return f"config lacks {e}"
    if opt.get("lr_schedule", "constant") != "constant":
        return f"optimizer.lr_schedule={opt['lr_schedule']}: a threshold against eta needs a constant lr"
    return Point(int(width), optimizer_label(name, float(opt.get("momentum", 0.0))), eta,
                 float(thr["mean"]), float(thr.get("std") or 0.0), int(thr["n"]))


def collect(root: Path) -> tuple[list[Point], dict[str, str]]:
    """(one Point per usable job, {job: why} for the others) below `root`."""
    points, skipped = [], {}
    for run in read_sweep(root).runs:
        job = run.path.relative_to(root).as_posix()
        p = job_point(run.summary) if run.summary else f"no summary.json: {run.error}"
        if isinstance(p, str):
            skipped[job] = p
        else:
            points.append(p)
    return points, skipped


def pool(points: list[Point]) -> list[Point]:
    """One Point per (width, optimizer, eta): the exact mean and std (ddof=1) of the union."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        groups.setdefault((p.width, p.optimizer, p.eta), []).append(p)
    out = []
    for (w, o, eta), ps in sorted(groups.items()):
        n = np.array([p.n for p in ps], float)
        m, s = np.array([p.mean for p in ps]), np.array([p.std for p in ps])
        N, M = n.sum(), (n * m).sum() / n.sum()
        var = ((n - 1) * s**2 + n * (m - M) ** 2).sum() / (N - 1) if N > 1 else 0.0
        out.append(Point(w, o, eta, float(M), float(np.sqrt(var)), int(N)))
    return out


def fit_power(eta, thr, sigma_log) -> dict | None:
    """log thr = a + b log eta by weighted least squares (module docstring): {a, b, b_se, chi2,
    dof, weighted}; None with fewer than two distinct eta. sigma_log: NaN where unknown."""
    x, y = np.log(np.asarray(eta, float)), np.log(np.asarray(thr, float))
    if np.unique(x).size < 2:
        return None
    s = np.asarray(sigma_log, float)
    weighted = bool(np.isfinite(s).any())
    w = 1 / np.where(np.isfinite(s), s, np.nanmedian(s)) ** 2 if weighted else np.ones_like(x)
    X = np.column_stack([np.ones_like(x), x]) * np.sqrt(w)[:, None]
    coef = np.linalg.lstsq(X, y * np.sqrt(w), rcond=None)[0]
    chi2 = float((w * (y - coef[0] - coef[1] * x) ** 2).sum())
    dof = x.size - 2
    scale = (max(1.0, chi2 / dof) if dof > 0 else 1.0) if weighted else (chi2 / dof if dof > 0 else np.nan)
    cov = np.linalg.inv(X.T @ X)
    return dict(a=float(coef[0]), b=float(coef[1]), b_se=float(np.sqrt(cov[1, 1] * scale)), chi2=chi2,
                dof=dof, weighted=weighted)


def sem(p: Point) -> float:
    """std / sqrt(n), NaN where unknown (n < 2 or std = 0)."""
    return p.std / np.sqrt(p.n) if p.n > 1 and p.std > 0 else np.nan


def fig5(root: Path, out: Path | None = None) -> tuple[list[dict], dict[str, str]]:
    """Write fig5.csv and fig5.png into `out` (default `root`); returns (one dict per width and
    optimizer: label, eta, mean, sem, n, fit), {skipped job: why})."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    points, skipped = collect(root)
    if not points:
        first = next(iter(skipped.items()), None)
        raise ValueError(f"no usable runs below {root}" + (f" ({len(skipped)} job(s) skipped; first: "
                                                           f"{first[0]}: {first[1]})" if first else ""))
    out = Path(out or root)
    out.mkdir(parents=True, exist_ok=True)
    pooled = pool(points)
    with open(out / "fig5.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["width", "optimizer", "eta", "n", "threshold_mean", "threshold_std"])
        wr.writerows([p.width, p.optimizer, p.eta, p.n, p.mean, p.std] for p in pooled)
    groups = []
    for key in sorted({(p.width, p.optimizer) for p in pooled}):
        ps = [p for p in pooled if (p.width, p.optimizer) == key]
        eta, mean, se = (np.array(v) for v in zip(*[(p.eta, p.mean, sem(p)) for p in ps]))
        groups.append(dict(width=key[0], optimizer=key[1], label=f"width {key[0]}", eta=eta, mean=mean,
                           sem=se, n=sum(p.n for p in ps), fit=fit_power(eta, mean, se / mean)))
    optimizers = sorted({g["optimizer"] for g in groups})
    if len(optimizers) > 1:
        for g in groups:
            g["label"] += f" ({g['optimizer']})"
    refs = []
    for o in optimizers:
        name, _, beta = o.partition(" beta=")
        c = stability(name, float(beta or 0))
        if c is not None:
            refs.append((rf"{c:.3g}/$\eta$ ({o} stability edge)", c))
    probe_plots.fig5a(out / "fig5.png", groups=groups, references=refs,
                      title=f"{root.name}: {len(points)} job(s), {len(pooled)} point(s)")
    baselines(root, out, pooled)
    return groups, skipped


def baselines(root: Path, out: Path, pooled: list[Point]) -> Path | None:
    """Fig. 5b/c: Hessian lambda_max against the step of the A=1 runs of the sweep (first seed of
    each; probes.npz), against the threshold measured at their learning rate (pooled over widths:
    the paper finds it independent of the width). None if the sweep has no A=1 run."""
    series, lrs = [], set()
    for run in read_sweep(root).runs:
        s = run.summary
        if run.A != 1 or not run.complete or not (run.path / "probes.npz").exists():
            continue
        z = np.load(run.path / "probes.npz")
        lr = float(s["config"]["optimizer"]["lr"])
        lrs.add(lr)
        series.append(dict(label=f"width {s['config']['model']['width']}, A=1, eta={lr:g}",
                           probe_steps=z["probe_steps"], hessian=z["hessian_lambda_max"][0]))
    if not series:
        return None
    lr = sorted(lrs)[0]
    same = [p for p in pooled if p.eta == lr]
    thr = float(np.average([p.mean for p in same], weights=[p.n for p in same])) if same else None
    path = out / "fig5bc.png"
    probe_plots.fig5b(path, series=series, threshold=thr, lr=lr,
                      title=f"A=1 baselines against the threshold at eta={lr:g}")
    return path


def describe(g: dict) -> str:
    f, k = g["fit"], len(g["eta"])
    fit = (f"threshold ~ eta^{f['b']:.3f} +- {f['b_se']:.3f} ({'weighted' if f['weighted'] else 'unweighted'} "
           f"LSQ, chi2/dof {f['chi2']:.3g}/{f['dof']})") if f else "no fit (one learning rate)"
    return f"width {g['width']} ({g['optimizer']}): {fit}; {k} learning rate(s), {g['n']} onset sample(s)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dlf.fig5", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multirun/<date>/<time>)")
    ap.add_argument("-o", "--out", type=Path, default=None, help="output directory (default: sweep_dir)")
    args = ap.parse_args(argv)
    try:
        groups, skipped = fig5(args.sweep_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"dlf.fig5: error: {e}", file=sys.stderr)
        return 2
    for job, why in skipped.items():
        print(f"  skipped: {job}: {why}")
    for g in groups:
        print(f"dlf.fig5: {describe(g)}")
    print(f"dlf.fig5: wrote {(args.out or args.sweep_dir) / 'fig5.csv'} and fig5.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
