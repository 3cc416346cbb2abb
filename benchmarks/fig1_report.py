"""docs/fig1.md and its figure from the Fig. 1 run directories (launch/fig1_gpu.sh), beside the paper.

    python benchmarks/fig1_report.py RUN_DIR... [--commit SHA] [--timing fig1_timing.json]
    python benchmarks/fig1_report.py            # no runs yet: the page says so and gives the commands

Each RUN_DIR holds a dlf.train run's metrics.jsonl and summary.json (one seed). Writes docs/fig1.md
(--out) and, with runs, docs/fig1.png (train and test accuracy over epochs of every run).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The paper (Fig. 1, Myrtle5 on CIFAR-10, 30 seeds per point)
PAPER = {1.0: "train ~1.0, test ~0.73", "best": "test ~0.79 (+~6 points) for T ~ 100, 25 <~ A <~ 70"}
DEVICE_CALL = ('run(command="DLF_GIT_SHA=<sha> bash launch/fig1_gpu.sh", carry=[".whl", ".cifar10"], '
               "timeout_s=600)")
COMMANDS = f"""```bash
# here (PyPI and ../shared/data reachable), once:
bash launch/gpu_wheels.sh                 # hydra-core, omegaconf, antlr4 wheels -> .whl/ (0.4 MB)
bash launch/fig1_gpu.sh prepare           # JPEG CIFAR-10 + decoder -> .cifar10/ (53 MiB)
# on the GPU machine, through the device tool:
#   {DEVICE_CALL}
# which runs, after decoding the JPEG copy into cifar-10-batches-py and timing 4 epochs:
python -m dlf.train experiment=fig1_myrtle5_cifar10 dataset.path=$DATA checkpoint.every_epochs=0 schedule.A=1
python -m dlf.train experiment=fig1_myrtle5_cifar10 dataset.path=$DATA checkpoint.every_epochs=0 \\
    schedule.A=50 schedule.T=100
# (and, if A=1 diverges, once more with model.parameterization=ntk)
# back here, with the returned files:
mkdir -p outputs/fig1_gpu && tar xzf fig1_runs.tar.gz -C outputs/fig1_gpu
python benchmarks/fig1_report.py outputs/fig1_gpu/runs/* --commit <sha> --timing fig1_timing.json
```"""
DIFFERS = """- **Data**: the JPEG copy of CIFAR-10 (`../shared/data/cifar10_jpeg.npz`: quality-75 JPEG, 4:2:0
  chroma; per-channel means agree with the original to 4 decimals, std ~1% lower), decoded into the
  `cifar-10-batches-py` layout with its training images shuffled (seed 0). Accuracies on it are
  close to, not equal to, those on the original images.
- **Seeds**: one seed (0) per run; the paper averages 30 seeds per (A, T) point.
- **Parameterisation**: standard, He-normal weights (`W_std = sqrt(2)`), zero biases (our decision;
  the paper is silent). The authors' code builds on neural-tangents, whose layers default to the NTK
  parameterisation (`model.parameterization=ntk` here), which changes each layer's effective
  learning rate by ~fan_in/W_std^2; which one the paper's Fig. 1 used is not stated.
- **Protocol otherwise as the paper**: no augmentation, per-channel standardisation, Nesterov 0.9,
  batch 512 (the last incomplete batch of each epoch dropped), lr 0 -> 0.02 at epoch 300 -> 0.002
  at epoch 700, oscillations off from epoch 600, float32, no gradient clipping, no batch norm."""


def load(run_dir: Path) -> dict:
    from dlf.results import read_run

    run = read_run(run_dir)
    if run.config is None:
        raise SystemExit(f"fig1_report: {run_dir}: {run.error}")
    s, cfg = run.summary, run.config
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    spe = s.get("steps_per_epoch") or 1
    div = sorted(s.get("diverged_at_step", {}).values())
    ep = [r["epoch"] for r in rows]
    tr = [r["train_acc"][0] for r in rows]
    te = [r["val_acc"][0] for r in rows]
    ok = [(e, a) for e, a in zip(ep, te) if a is not None]
    best = max(ok, key=lambda x: x[1]) if ok else (None, None)
    return {"name": run_dir.name, "A": s["A"], "T": s["T"], "status": s["status"], "epochs": s.get("epochs"),
            "parameterization": getattr(cfg.model, "parameterization", "standard"),
            "width": getattr(cfg.model, "width", None), "subset": getattr(cfg.dataset, "subset", None),
            "marks": ((cfg.optimizer.warmup_epochs, "peak lr"), (cfg.schedule.off_from_epoch, "oscillations off")),
            "wall_s": s.get("wall_s"), "compile_s": s.get("compile_s"), "git_sha": s.get("git_sha"),
            "diverged_epoch": (div[0] // spe) if div else None, "epoch": ep, "train_acc": tr, "test_acc": te,
            "final_train": tr[-1] if tr else None, "final_test": te[-1] if te else None,
            "best_test": best[1], "best_epoch": best[0]}


def label(r: dict) -> str:
    a = "A=1 (ordinary loss)" if r["A"] == 1 else f"A={r['A']:g}, T={r['T']}"
    return a + (", NTK param." if r["parameterization"] == "ntk" else "")


def plot(path: Path, runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, r in enumerate(runs):
        c = f"C{i}"
        nan = lambda v: [math.nan if x is None else x for x in v]  # noqa: E731
        ax.plot(r["epoch"], nan(r["train_acc"]), "--", color=c, lw=1.2, label=f"{label(r)}: train")
        ax.plot(r["epoch"], nan(r["test_acc"]), "-", color=c, lw=1.6, label=f"{label(r)}: test")
        if r["diverged_epoch"] is not None:
            ax.axvline(r["diverged_epoch"], color=c, ls=":", lw=1)
    for e, what in runs[0]["marks"]:
        if e is None:
            continue
        ax.axvline(e, color="0.7", lw=0.8)
        ax.text(e, 0.02, f" {what}", color="0.5", fontsize=7, rotation=90, va="bottom")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02),
           title=f"Myrtle5-{runs[0]['width']} on CIFAR-10 (JPEG copy), one seed per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt(x, f="{:.4f}"):
    return "—" if x is None else f.format(x)


def page(runs: list[dict], commit: str | None, timing: dict | None, png: str) -> str:
    head = ["# Fig. 1: Myrtle5 on CIFAR-10, ordinary loss (A=1) vs dynamical loss (A=50, T=100)", ""]
    if not runs:
        return "\n".join(head + [
            "**No GPU run has happened yet.** The sessions that prepared this page were lent no GPU, and 700",
            "epochs of Myrtle5-64 are impractical on their CPUs (seconds per step). This page holds no",
            "measured numbers; `benchmarks/fig1_report.py` regenerates it from the run directories once the",
            "runs exist (the commands below, tested end to end on a CPU at toy sizes in tests/test_gpu_prep.py).",
            "", "## Commands", "", COMMANDS, "",
            "## The paper (Ruiz-Garcia et al. 2021, Fig. 1)", "",
            f"- A=1: {PAPER[1.0]}.", f"- Dynamical loss, best region: {PAPER['best']}.", "",
            "## What will differ from the paper", "", DIFFERS, ""])
    shas = {r["git_sha"] for r in runs if r["git_sha"] and r["git_sha"] != "unknown"}
    commit = commit or (", ".join(sorted(shas)) if shas else "unknown")
    tiny = [r for r in runs if r["subset"] or (r["width"] and r["width"] != 64) or (r["epochs"] or 700) != 700]
    rows = ["| run | parameterisation | final train acc | final test acc | best test acc (epoch) | divergence | "
            "wall time (s) | paper |", "|---|---|---:|---:|---:|---|---:|---|"]
    for r in runs:
        div = "none" if r["diverged_epoch"] is None else f"epoch {r['diverged_epoch']}"
        paper = PAPER[1.0] if r["A"] == 1 else PAPER["best"]
        rows.append(f"| {label(r)} | {r['parameterization']} | {fmt(r['final_train'])} | {fmt(r['final_test'])} | "
                    f"{fmt(r['best_test'])} ({r['best_epoch']}) | {div} | {fmt(r['wall_s'], '{:.0f}')} | {paper} |")
    out = head + [f"Measured on the GPU machine by `launch/fig1_gpu.sh` at commit `{commit}`; one seed per run.", ""]
    if tiny:
        out += ["**These runs are not the full protocol** (a subset of images, another width or fewer epochs: "
                + ", ".join(r["name"] for r in tiny) + "); they are no evidence about the paper's claim.", ""]
    out += [f"![train (dashed) and test (solid) accuracy over epochs]({png})", "", *rows, ""]
    a1 = [r for r in runs if r["A"] == 1 and r["parameterization"] == "standard"]
    dyn = [r for r in runs if r["A"] != 1]
    if a1 and dyn and a1[0]["final_test"] is not None and dyn[0]["final_test"] is not None:
        d = dyn[0]["final_test"] - a1[0]["final_test"]
        out += [f"Final test accuracy, dynamical minus ordinary loss: {d:+.4f} (paper: about +0.06, "
                "over 30 seeds).", ""]
    if timing:
        out += [f"Timing run ({timing.get('epochs')} epochs, A={timing.get('A')}, T={timing.get('T')}): compile "
                f"{timing.get('compile_s', 0):.1f} s, "
                f"{timing.get('train_s', 0) / max(timing.get('epochs') or 1, 1):.2f} s "
                "per epoch.", ""]
    out += ["## Commands", "", COMMANDS, "", "## What differs from the paper", "", DIFFERS, ""]
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run directories (metrics.jsonl, summary.json)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "fig1.md")
    ap.add_argument("--commit", help="the commit the runs were made at (default: their summaries' git_sha)")
    ap.add_argument("--timing", type=Path, help="fig1_timing.json (the timing run's summary.json)")
    args = ap.parse_args(argv)
    runs = sorted((load(d) for d in args.runs), key=lambda r: (r["A"] != 1, r["parameterization"], r["A"]))
    png = args.out.with_suffix(".png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if runs:
        plot(png, runs)
    timing = json.loads(args.timing.read_text()) if args.timing and args.timing.exists() else None
    args.out.write_text(page(runs, args.commit, timing, png.name))
    print(f"wrote {args.out}" + (f" and {png}" if runs else " (no runs)"))


if __name__ == "__main__":
    main()
