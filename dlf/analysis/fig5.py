"""Fig. 5a, threshold against learning rate: `python -m dlf.fig5 <dir> [<dir> ...] [-o out dir]`.

Reads every job's summary.json below a multirun directory, takes its per-seed thresholds
(`threshold` `per_seed[*].mean`: one value per seed, the mean over that seed's cascades; from
dlf.analysis.bifurcation.threshold_summary) and config (model.width, optimizer.name/lr/momentum);
or, from a `dlf.phase` directory with probes (e.g. `grid.lr=0.5,1,2,4,8`), each run's `threshold`
in runs.csv (the same per-seed value) and its learning rate (the `optimizer.lr` column, else the
config's). Pools runs with the same (width, optimizer, eta), fits per width and writes fig5.csv
and fig5.png. Failed jobs and runs without a threshold are listed and skipped.

Fit [decision]: the data are the per-seed thresholds, not the onsets: onsets of one cascade are
correlated and their spread is heavy-tailed, seeds are independent. Ordinary least squares of
log thr = a + b log eta over every (seed, eta) value; se(a), se(b) from the residual scatter
(dof = values - 2). The intercept is the prefactor c = exp(a) of thr = c eta^b, tested against the
stability edge c0/eta of the optimizer (c0 = 2 for gradient descent): z_b = (b + 1) / se(b),
z_a = (a - log c0) / se(a). With b fixed at -1, c = exp(mean(log(thr eta))) and se from the
spread of log(thr eta) over the values. A point's error bar is the standard error of its
per-seed mean (std / sqrt(seeds)).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlf.analysis.results import RunResult, kind, read_runs_csv, read_sweep
from dlf.figures import probes as probe_plots


@dataclass(frozen=True)
class Point:
    width: int
    optimizer: str  # "gd", "momentum beta=0.9", ...
    eta: float
    mean: float
    std: float
    n: int  # seeds with a threshold
    values: tuple[float, ...] = ()  # per-seed thresholds


def stability(name: str, beta: float) -> float | None:
    """c in the quadratic's stability edge c/eta (SPEC 2, Fig. 5a); None where there is none."""
    return {"gd": 2.0, "sgd": 2.0, "momentum": 2 + 2 * beta,
            "nesterov": (2 + 2 * beta) / (1 + 2 * beta)}.get(name)


def optimizer_label(name: str, beta: float) -> str:
    return f"{name} beta={beta:g}" if name in ("momentum", "nesterov") else name


def job_point(run: RunResult) -> Point | str:
    """A run's Point (from its summary.json and typed config), or why it is skipped."""
    s, cfg = run.summary, run.config
    if not s:
        return f"no summary.json: {run.error}"
    if s.get("status") not in ("ok", "diverged") or cfg is None:
        return f"status {s.get('status')!r}: {run.error or s.get('error', 'no error recorded')}"
    if s.get("A") == 1:
        return "A=1: an ordinary-loss baseline (drawn in fig5bc.png)"
    thr = s.get("threshold")
    if not thr:
        return "no threshold in summary.json (probes off?)"
    values = tuple(float(r["mean"]) for r in thr.get("per_seed", []) if r.get("mean") is not None)
    if not values:
        return f"no threshold: {thr.get('n_onsets', 0)} onset(s), no cascade with two Hessian samples before it"
    opt, width = cfg.optimizer, getattr(cfg.model, "width", None)
    if width is None:
        return f"model.name={cfg.model.name} has no width"
    if opt.lr_schedule != "constant":
        return f"optimizer.lr_schedule={opt.lr_schedule}: a threshold against eta needs a constant lr"
    return point(int(width), optimizer_label(opt.name, float(getattr(opt, "momentum", 0.0))), float(opt.lr), values)


def point(width: int, optimizer: str, eta: float, values) -> Point:
    v = np.asarray(values, float)
    return Point(width, optimizer, eta, float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0,
                 int(v.size), tuple(float(x) for x in v))


def grid_points(root: Path) -> tuple[list[Point], dict[str, str]]:
    """(one Point per learning rate of a dlf.phase directory: the thresholds of its runs with A != 1,
    {run: why} for the runs left out)."""
    import json

    from dlf.config import stored

    cfg = stored(json.loads((root / "summary.json").read_text())["config"])
    opt, width = cfg.optimizer, getattr(cfg.model, "width", None)
    if width is None or opt.lr_schedule != "constant":
        return [], {root.name: f"model.name={cfg.model.name}, optimizer.lr_schedule={opt.lr_schedule}: a threshold "
                               "against eta needs a model width and a constant lr"}
    values: dict[float, list[float]] = {}
    skipped = {}
    for r in read_runs_csv(root / "runs.csv"):
        run = f"{root.name}/runs.csv A={r['A']:g} T={r['T']} seed={r['seed']}"
        eta = float(r.get("optimizer.lr") or opt.lr)
        if r["A"] == 1:
            skipped[f"{run} lr={eta:g}"] = "A=1: an ordinary-loss baseline"
        elif r.get("threshold") is None:
            skipped[f"{run} lr={eta:g}"] = "no threshold in runs.csv (probes off, diverged or no cascade)"
        else:
            values.setdefault(eta, []).append(float(r["threshold"]))
    label = optimizer_label(opt.name, float(getattr(opt, "momentum", 0.0)))
    return [point(int(width), label, eta, v) for eta, v in sorted(values.items())], skipped


def collect(root: Path) -> tuple[list[Point], dict[str, str]]:
    """(one Point per usable job, {job: why} for the others) below `root` (a multirun directory),
    or of a dlf.phase directory (`grid_points`)."""
    if kind(root) == "grid":
        return grid_points(root)
    points, skipped = [], {}
    for run in read_sweep(root).runs:
        job = run.path.relative_to(root).as_posix()
        p = job_point(run)
        if isinstance(p, str):
            skipped[job] = p
        else:
            points.append(p)
    return points, skipped


def pool(points: list[Point]) -> list[Point]:
    """One Point per (width, optimizer, eta): the union of the jobs' per-seed thresholds."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        groups.setdefault((p.width, p.optimizer, p.eta), []).append(p)
    return [point(w, o, eta, [v for p in ps for v in p.values]) for (w, o, eta), ps in sorted(groups.items())]


def fit_power(eta, thr, c0: float | None = 2.0) -> dict | None:
    """Fit of the per-seed thresholds thr at learning rates eta (module docstring): {a, b, a_se,
    b_se, c, c_lo, c_hi (exp(a +- se)), z_a, z_b, dof, c_fixed, c_fixed_rel_se (b = -1), z_fixed}; None with
    fewer than two distinct eta. Standard errors are NaN with dof = 0."""
    x, y = np.log(np.asarray(eta, float)), np.log(np.asarray(thr, float))
    if np.unique(x).size < 2:
        return None
    X = np.column_stack([np.ones_like(x), x])
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    dof = x.size - 2
    s2 = float(((y - X @ coef) ** 2).sum() / dof) if dof > 0 else np.nan
    cov = np.linalg.inv(X.T @ X) * s2
    a, b, a_se, b_se = float(coef[0]), float(coef[1]), float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))
    logc = y + x  # b = -1: log c = log thr + log eta
    cf_se = float(logc.std(ddof=1) / np.sqrt(logc.size))
    out = dict(a=a, b=b, a_se=a_se, b_se=b_se, c=float(np.exp(a)), c_lo=float(np.exp(a - a_se)),
               c_hi=float(np.exp(a + a_se)), z_b=(b + 1) / b_se, dof=dof, c_fixed=float(np.exp(logc.mean())),
               c_fixed_rel_se=cf_se, c0=c0)
    out["z_a"] = (a - np.log(c0)) / a_se if c0 else np.nan
    out["z_fixed"] = (logc.mean() - np.log(c0)) / cf_se if c0 and cf_se > 0 else np.nan
    return out


def sem(p: Point) -> float:
    """std / sqrt(n) of the per-seed thresholds, NaN where unknown (n < 2 or std = 0)."""
    return p.std / np.sqrt(p.n) if p.n > 1 and p.std > 0 else np.nan


def fig5(root: Path | list[Path], out: Path | None = None) -> tuple[list[dict], dict[str, str]]:
    """Write fig5.csv and fig5.png into `out` (default the first root) from one or more multirun
    or dlf.phase directories (e.g. one per width); returns (one dict per width and optimizer:
    label, eta, mean, sem, n, fit), {skipped job: why})."""
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    points, skipped = [], {}
    for r in roots:
        if not r.is_dir():
            raise FileNotFoundError(f"{r} is not a directory")
        more, why = collect(r)
        points += more
        skipped.update(why)
    root = roots[0]
    if not points:
        first = next(iter(skipped.items()), None)
        raise ValueError(f"no usable runs below {root}" + (f" ({len(skipped)} job(s) skipped; first: "
                                                           f"{first[0]}: {first[1]})" if first else ""))
    out = Path(out or root)
    out.mkdir(parents=True, exist_ok=True)
    pooled = pool(points)
    with open(out / "fig5.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["width", "optimizer", "eta", "seeds", "threshold_mean", "threshold_std", "per_seed"])
        wr.writerows([p.width, p.optimizer, p.eta, p.n, p.mean, p.std, " ".join(f"{v:.6g}" for v in p.values)]
                     for p in pooled)
    groups = []
    for key in sorted({(p.width, p.optimizer) for p in pooled}):
        ps = [p for p in pooled if (p.width, p.optimizer) == key]
        eta, mean, se = (np.array(v) for v in zip(*[(p.eta, p.mean, sem(p)) for p in ps]))
        name, _, beta = key[1].partition(" beta=")
        fit = fit_power([p.eta for p in ps for _ in p.values], [v for p in ps for v in p.values],
                        stability(name, float(beta or 0)))
        groups.append(dict(width=key[0], optimizer=key[1], label=f"width {key[0]}", eta=eta, mean=mean,
                           sem=se, n=sum(p.n for p in ps), fit=fit))
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
                      title=f"{', '.join(r.name for r in roots)}: {len(points)} job(s), {len(pooled)} point(s)")
    sweeps = [r for r in roots if kind(r) == "sweep"]  # Fig. 5b/c: the A=1 jobs of a sweep
    if sweeps:
        baselines(sweeps[0], out, pooled)
    return groups, skipped


def baselines(root: Path, out: Path, pooled: list[Point]) -> Path | None:
    """Fig. 5b/c: Hessian lambda_max against the step of the A=1 runs of the sweep (first seed of
    each; probes.npz), against the threshold measured at their learning rate (pooled over widths:
    the paper finds it independent of the width). None if the sweep has no A=1 run."""
    series, lrs = [], set()
    for run in read_sweep(root).runs:
        if run.A != 1 or not run.complete or not (run.path / "probes.npz").exists():
            continue
        z = np.load(run.path / "probes.npz", allow_pickle=False)
        lr = float(run.config.optimizer.lr)
        lrs.add(lr)
        series.append(dict(label=f"width {run.config.model.width}, A=1, eta={lr:g}",
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
    if f and f["dof"] < 1:
        fit = (f"threshold = c eta^b, b = {f['b']:.3f}, c = {f['c']:.3f} through {f['dof'] + 2} values: no error "
               "without a third value (the fit needs >= 3 per-seed thresholds; add seeds or learning rates)")
    elif f:
        fit = (f"threshold = c eta^b, b = {f['b']:.3f} +- {f['b_se']:.3f} (z vs -1: {f['z_b']:+.2f}), "
               f"c = {f['c']:.3f} [{f['c_lo']:.3f}, {f['c_hi']:.3f}]")
        if f["c0"]:
            fit += (f" (z vs {f['c0']:.3g}: {f['z_a']:+.2f}); b = -1 fixed: c = {f['c_fixed']:.3f} "
                    f"+- {100 * f['c_fixed_rel_se']:.1f}% (z {f['z_fixed']:+.2f})")
        fit += f"; OLS on per-seed values, dof {f['dof']}"
    else:
        fit = "no fit (one learning rate)"
    return f"width {g['width']} ({g['optimizer']}): {fit}; {k} learning rate(s), {g['n']} seed value(s)"
