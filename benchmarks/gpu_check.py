"""GPU check (issue 13): CPU-equal grid results, full Fig. 3 grid, width-1000 rate, Myrtle5 images/s, TF32.

    python benchmarks/gpu_check.py --out DIR                  # on the GPU machine (launch/gpu_check.sh)
    python benchmarks/gpu_check.py --out DIR --size tiny      # the same sections at toy sizes (CPU test)
    python benchmarks/gpu_check.py --make-reference           # on a CPU: writes gpu_check_reference.json
    python benchmarks/gpu_check.py --merge DIR/gpu_check.md   # back here: into BENCHMARKS.md

Sections (`--sections`, default all), each recorded even if another fails:
  equal   a 12-run spiral grid (300 steps at lr 0.1: at lr 1 the dynamics are chaotic and amplify
          float32 rounding past any useful tolerance) through dlf.phase on the default device, on the
          vmapped path (train.vmap_size auto) and the chunked one (grid.chunk_runs=5, last chunk
          padded), at matmul_precision highest and default; per-run final loss and accuracies are
          compared with the CPU reference shipped beside this script.
  tf32    relative error of a float32 matmul and convolution at each matmul_precision.
  fig3    the full Fig. 3 width-100 grid (7 A x 6 T x 50 seeds x 35 000 steps) through the CLI
          (python -m dlf.phase) in a fresh process: end-to-end wall time and run-steps/s.
  wide    the same 2100 runs at width 1000 for fewer steps: run-steps/s.
  ratios  the per-step reference loop (benchmarks/engine.py) on the default device and the CPU
          engine (dlf.phase on this machine's CPU cores, benchmarks/phase.py) at both widths.
  myrtle  Myrtle5-64, batch 512, 50 000 random images: images/s in float32, float32 with
          matmul_precision=highest, and bfloat16, input pipeline included (benchmarks/cifar.py).
Writes DIR/gpu_check.json (every figure, rewritten after each section) and DIR/gpu_check.md (a
BENCHMARKS.md section). Exits 1 if the comparison with the CPU reference fails (precision highest).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # children share the GPU with this process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFERENCE = HERE / "gpu_check_reference.json"
SECTIONS = ("equal", "tf32", "fig3", "wide", "ratios", "myrtle")
FIG3 = dict(A=[1, 5, 10, 20, 30, 50, 70], T=[50, 100, 200, 300, 500, 1000], seeds=50)
# The comparison grid: the same at every size, since its CPU reference is shipped.
EQUAL = dict(width=100, A=[1.0, 10.0], T=[10, 20], seeds=3, steps=300, lr=0.1, chunk_runs=5)
LOSS_RTOL = 3e-5  # looped vs vmapped on one CPU: ~1e-7 at lr 0.1 (4e-5 and 2 flipped examples at lr 1,
# 120 steps: chaos amplifies rounding); TF32 rounds to ~5e-4
GOALS = dict(fig3_wall_s=60.0, fig3_us_per_run_step=0.7, myrtle_float32=300_000, myrtle_bfloat16=550_000)
SIZES = {
    "full": dict(fig3=dict(FIG3, steps=35_000, log_every=5000), wide=dict(FIG3, steps=2000, log_every=1000),
                 ref_steps=300, cpu_steps={100: 2000, 1000: 400},
                 myrtle=dict(width=64, images=50_000, epochs=3, batch=512, side=32)),
    "tiny": dict(fig3=dict(A=[1, 10], T=[20], seeds=2, steps=200, log_every=100),
                 wide=dict(A=[1], T=[20], seeds=2, steps=20, log_every=10),
                 ref_steps=10, cpu_steps={100: 20, 1000: 4},
                 myrtle=dict(width=4, images=64, epochs=1, batch=32, side=8)),
}


# --- the CPU-vs-device comparison ---------------------------------------------------------------

def equal_grid(out_dir: Path, chunked: bool, matmul_precision: str, vmap_size: int | None = None) -> list[dict]:
    """Final (A, T, seed, train_acc, val_acc, loss) of every run of the comparison grid
    (vmap_size None: the backend's default, all runs on accelerators, 1 on CPU)."""
    from dlf import config as config_lib
    from dlf.drive.grid import run_phase

    e = EQUAL
    cfg = config_lib.from_dict({
        "model": {"width": e["width"]}, "seeds": e["seeds"],
        "grid": {"A": e["A"], "T": e["T"], "chunk_runs": e["chunk_runs"] if chunked else None},
        "schedule": {"off_last_periods": 0}, "optimizer": {"lr": e["lr"]}, "compile_cache": None,
        "matmul_precision": matmul_precision,
        "train": {"steps": e["steps"], "log_every": e["steps"], "vmap_size": vmap_size}})
    summary = run_phase(cfg, out_dir)
    with (out_dir / "runs.csv").open() as f:
        runs = [{k: (None if v == "" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
    return [dict(r, T=int(r["T"]), seed=int(r["seed"]), chunk_runs=summary["chunk_runs"]) for r in runs]


def compare(runs: list[dict], reference: list[dict], loss_rtol: float = LOSS_RTOL,
            acc_atol: float | None = None) -> dict:
    """Per-run comparison with the reference: final loss to `loss_rtol` (relative), accuracies to
    `acc_atol` (default: one example of the 300, i.e. one point may flip class). A run missing on
    either side, or diverged on one side only, is a mismatch."""
    acc_atol = 1.0 / 300 + 1e-6 if acc_atol is None else acc_atol
    key = lambda r: (float(r["A"]), int(r["T"]), int(r["seed"]))  # noqa: E731
    got, ref = {key(r): r for r in runs}, {key(r): r for r in reference}
    bad, max_loss, max_acc = [], 0.0, 0.0
    for k in sorted(set(got) | set(ref)):
        g, r = got.get(k), ref.get(k)
        if g is None or r is None:
            bad.append({"run": k, "why": "missing on the " + ("device" if g is None else "reference") + " side"})
            continue
        if (g["loss"] is None) != (r["loss"] is None):
            bad.append({"run": k, "why": "diverged on one side only"})
            continue
        if g["loss"] is None:
            continue
        dl = abs(g["loss"] - r["loss"]) / max(abs(r["loss"]), 1e-12)
        da = max(abs(g[a] - r[a]) for a in ("train_acc", "val_acc"))
        max_loss, max_acc = max(max_loss, dl), max(max_acc, da)
        if dl > loss_rtol or da > acc_atol:
            bad.append({"run": k, "loss": g["loss"], "ref_loss": r["loss"], "loss_rel": dl, "acc_abs": da})
    return {"ok": not bad, "runs": len(ref), "mismatches": len(bad), "first_mismatches": bad[:5],
            "max_loss_rel": max_loss, "max_acc_abs": max_acc, "loss_rtol": loss_rtol, "acc_atol": acc_atol}


def section_equal(res: dict, reference_path: Path, size: str) -> None:
    reference = json.loads(Path(reference_path).read_text())
    out = {"grid": EQUAL, "reference": {k: reference[k] for k in ("machine", "git_sha") if k in reference}}
    precisions = ("highest",) if size == "tiny" else ("highest", "default")
    for precision in precisions:
        for path in ("vmapped", "chunked"):
            with tempfile.TemporaryDirectory() as d:
                runs = equal_grid(Path(d), path == "chunked", precision)
            out[f"{path}_{precision}"] = compare(runs, reference["runs"]) | {"chunk_runs": runs[0]["chunk_runs"]}
            if path == "vmapped" and precision == "highest":  # kept for a look at a mismatch
                out["runs"] = [{k: r[k] for k in ("A", "T", "seed", "train_acc", "val_acc", "loss")} for r in runs]
    out["ok"] = all(out[f"{p}_highest"]["ok"] for p in ("vmapped", "chunked"))
    res["equal"] = out


def make_reference(path: Path) -> None:
    """Compute the comparison grid on this machine (meant: a CPU) and write it as the reference."""
    sys.path.insert(0, str(HERE))
    from _md import machine

    from dlf.outputs import git_sha

    with tempfile.TemporaryDirectory() as d:
        runs = equal_grid(Path(d) / "a", False, "highest")
        other = equal_grid(Path(d) / "b", True, "highest", vmap_size=EQUAL["chunk_runs"])  # as on a GPU
    noise = compare(other, runs)
    assert noise["ok"], f"the two CPU paths disagree beyond the tolerance: {noise}"
    ref = {"grid": EQUAL, "machine": machine(), "git_sha": git_sha(),
           "cpu_path_noise": {k: noise[k] for k in ("max_loss_rel", "max_acc_abs")},
           "runs": [{k: r[k] for k in ("A", "T", "seed", "train_acc", "val_acc", "loss", "diverged_step")}
                    for r in runs]}
    path.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {path}: {len(runs)} runs; looped vs chunked-and-vmapped on this CPU: max loss rel "
          f"{noise['max_loss_rel']:.2e}, max acc abs {noise['max_acc_abs']:.4f}")


# --- TF32 --------------------------------------------------------------------------------------

def section_tf32(res: dict) -> None:
    """Relative (Frobenius) error of a float32 matmul (vs float64 numpy) and a 3x3 convolution
    (vs the same convolution at precision highest) at each jax_default_matmul_precision."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1024, 1024)), rng.standard_normal((1024, 1024))
    exact = a @ b
    x = rng.standard_normal((8, 32, 32, 64)).astype(np.float32)
    w = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",  # noqa: E731
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    err = lambda got, want: float(np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want))  # noqa: E731
    with jax.default_matmul_precision("highest"):
        conv_ref = np.asarray(jax.jit(conv)(x, w), np.float64)
    out = {}
    for p in ("default", "high", "highest"):
        with jax.default_matmul_precision(None if p == "default" else p):
            mm = jax.jit(jnp.matmul)(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
            cv = jax.jit(conv)(x, w)
        out[p] = {"matmul_rel_err": err(mm, exact), "conv_rel_err": err(cv, conv_ref)}
    d = out["default"]
    out["default_is_tf32_or_lower"] = bool(d["matmul_rel_err"] > 1e-5 or d["conv_rel_err"] > 1e-5)
    out["note"] = ("float32 rounding gives ~1e-7 here, TF32 (10-bit mantissa) ~3e-4, bfloat16 ~2e-3; "
                   "conv errors are relative to the same convolution at precision highest")
    res["tf32"] = out


# --- throughput ----------------------------------------------------------------------------------

def section_fig3(res: dict, size: str) -> None:
    """The Fig. 3 width-100 grid as a user runs it: `python -m dlf.phase ...` in a fresh process."""
    g = SIZES[size]["fig3"]
    with tempfile.TemporaryDirectory() as d:
        argv = [sys.executable, "-m", "dlf.phase", "experiment=fig3_spiral_narrow",
                "grid.A=" + ",".join(map(str, g["A"])), "grid.T=" + ",".join(map(str, g["T"])),
                f"seeds={g['seeds']}", f"train.steps={g['steps']}", f"train.log_every={g['log_every']}",
                "compile_cache=null", f"hydra.run.dir={d}"]
        t0 = time.perf_counter()
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=_env())
        wall = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(f"{' '.join(argv[1:])} failed:\n{p.stderr[-3000:]}")
        s = json.loads((Path(d) / "summary.json").read_text())
    run_steps = s["runs"] * s["steps"]
    res["fig3"] = {"command": "python -m dlf.phase " + " ".join(argv[3:-1]), "runs": s["runs"], "steps": s["steps"],
                   "wall_s": wall, "phase_wall_s": s["wall_s"], "compile_s": s["compile_s"], "train_s": s["train_s"],
                   "run_steps_per_s": s["run_steps_per_s"], "us_per_run_step_train": 1e6 / s["run_steps_per_s"],
                   "us_per_run_step_end_to_end": 1e6 * wall / run_steps, "chunks": s["chunks"],
                   "best": s["best"], "backend": s["backend"]}


def grid_rate(width: int, g: dict) -> dict:
    from dlf import config as config_lib
    from dlf.drive.grid import run_phase

    cfg = config_lib.from_dict({"model": {"width": width}, "seeds": g["seeds"], "compile_cache": None,
                                "grid": {"A": g["A"], "T": g["T"]}, "schedule": {"off_last_periods": 1},
                                "train": {"steps": g["steps"], "log_every": g["log_every"]}})
    with tempfile.TemporaryDirectory() as d:
        s = run_phase(cfg, Path(d))
    return {k: s[k] for k in ("runs", "steps", "wall_s", "compile_s", "train_s", "run_steps_per_s", "chunks")}


def section_wide(res: dict, size: str) -> None:
    r = grid_rate(1000, SIZES[size]["wide"])
    r["us_per_run_step"] = 1e6 / r["run_steps_per_s"]
    r["full_grid_min_extrapolated"] = 42 * 50 * 35_000 / r["run_steps_per_s"] / 60
    res["wide"] = r


def section_ratios(res: dict, size: str) -> None:
    """Reference loop on the default device and the CPU engine on this machine's cores."""
    from engine import ref_for

    from dlf import config as config_lib

    cores = len(os.sched_getaffinity(0))
    out = {"cpu_cores": cores}
    for width in (100, 1000):
        cfg = config_lib.from_dict({"model": {"width": width}, "seeds": 1, "compile_cache": None,
                                    "schedule": {"A": 10, "T": 100, "off_last_periods": 0}})
        ref = 1 / ref_for(cfg, SIZES[size]["ref_steps"])
        env = _env(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={cores}")
        p = subprocess.run([sys.executable, str(HERE / "phase.py"), "--worker", str(width),
                            str(SIZES[size]["cpu_steps"][width]), "auto"], capture_output=True, text=True, env=env,
                           cwd=ROOT)  # the CPU's default step (fused where it applies)
        if p.returncode:
            raise RuntimeError(f"CPU engine (benchmarks/phase.py --worker) failed:\n{p.stderr[-3000:]}")
        cpu = json.loads(p.stdout.strip().splitlines()[-1])
        out[str(width)] = {"reference_loop_run_steps_per_s": ref, "cpu_engine_run_steps_per_s": cpu["run_steps_per_s"],
                           "cpu_engine_runs": cpu["runs"], "cpu_engine_devices": cpu["devices"]}
    res["ratios"] = out


def section_myrtle(res: dict, size: str) -> None:
    m = SIZES[size]["myrtle"]
    out = {"setup": m}
    for label, precision, mp in (("float32", "float32", None), ("float32_highest", "float32", "highest"),
                                 ("bfloat16", "bfloat16", None)):
        env = _env(**({"JAX_DEFAULT_MATMUL_PRECISION": mp} if mp else {}))
        p = subprocess.run([sys.executable, __file__, "--myrtle-worker", precision,
                            *(str(m[k]) for k in ("images", "epochs", "width", "batch", "side"))],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        if p.returncode:
            raise RuntimeError(f"Myrtle worker {label} failed:\n{p.stderr[-3000:]}")
        out[label] = json.loads(p.stdout.strip().splitlines()[-1])
    res["myrtle"] = out


def myrtle_worker(precision: str, images: str, epochs: str, width: str, batch: str, side: str) -> None:
    import jax
    from cifar import measure

    r = measure(precision, int(images), int(epochs), int(width), int(batch), int(side))
    print(json.dumps(r | {"matmul_precision": str(jax.config.jax_default_matmul_precision)}))


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env | extra


# --- report ------------------------------------------------------------------------------------

def markdown(res: dict, command: str) -> str:
    """The BENCHMARKS.md section: each figure beside its goal, and the ratios."""
    def get(*path, fmt="{:,.0f}"):
        x = res
        for p in path:
            if not isinstance(x, dict) or p not in x:
                return "not measured"
            x = x[p]
        return fmt.format(x)

    def met(value, goal, less=True):
        return "" if value is None else ("yes" if (value < goal if less else value >= goal) else "**no**")

    f3, wide, my, eq, tf = (res.get(k, {}) for k in ("fig3", "wide", "myrtle", "equal", "tf32"))
    rows = [
        "| figure | measured | goal | met |", "|---|---:|---:|:--:|",
        f"| Full Fig. 3 width-100 grid ({get('fig3', 'runs')} runs x {get('fig3', 'steps')} steps), end to end "
        f"(`python -m dlf.phase`, fresh process) | {get('fig3', 'wall_s', fmt='{:.1f}')} s | < 60 s | "
        f"{met(f3.get('wall_s'), GOALS['fig3_wall_s'])} |",
        "| same, per run-step end to end / training only | "
        f"{get('fig3', 'us_per_run_step_end_to_end', fmt='{:.3f}')} / "
        f"{get('fig3', 'us_per_run_step_train', fmt='{:.3f}')} us | <= 0.7 us | "
        f"{met(f3.get('us_per_run_step_end_to_end'), GOALS['fig3_us_per_run_step'] + 1e-9)} |",
        f"| width-1000 grid ({get('wide', 'runs')} runs x {get('wide', 'steps')} steps) | "
        f"{get('wide', 'us_per_run_step', fmt='{:.2f}')} us/run-step ({get('wide', 'run_steps_per_s')} run-steps/s; "
        f"full grid ~{get('wide', 'full_grid_min_extrapolated', fmt='{:.1f}')} min) "
        "| ~4 us (measured outside the project, H100) | |",
        f"| Myrtle5-{get('myrtle', 'setup', 'width')}, batch {get('myrtle', 'setup', 'batch')}, float32 "
        f"(matmul_precision default) | {get('myrtle', 'float32', 'images_per_s')} images/s | >= 300k | "
        f"{met(my.get('float32', {}).get('images_per_s'), GOALS['myrtle_float32'], less=False)} |",
        "| same, float32, matmul_precision=highest | "
        f"{get('myrtle', 'float32_highest', 'images_per_s')} images/s | | |",
        f"| same, bfloat16 | {get('myrtle', 'bfloat16', 'images_per_s')} images/s | >= 550k | "
        f"{met(my.get('bfloat16', {}).get('images_per_s'), GOALS['myrtle_bfloat16'], less=False)} |",
    ]
    for path in ("vmapped", "chunked"):
        for p in ("highest", "default"):
            c = eq.get(f"{path}_{p}")
            if c:
                rows.append(f"| device = CPU reference, {path} path (chunk_runs {c['chunk_runs']}), matmul_precision "
                            f"{p}: max rel. loss diff / max acc. diff over {c['runs']} runs | "
                            f"{c['max_loss_rel']:.1e} / "
                            f"{c['max_acc_abs']:.4f} | <= {c['loss_rtol']:.0e} / <= 1 example | "
                            f"{'yes' if c['ok'] else '**no**'} |")
    if "default" in tf:
        rows.append(f"| float32 matmul / conv rel. error at matmul_precision default (highest) | "
                    f"{tf['default']['matmul_rel_err']:.1e} / {tf['default']['conv_rel_err']:.1e} "
                    f"({tf['highest']['matmul_rel_err']:.1e} / {tf['highest']['conv_rel_err']:.1e}) | "
                    f"{'TF32 or lower' if tf['default_is_tf32_or_lower'] else 'true float32'} by default | |")
    ratio_rows = []
    for w in ("100", "1000"):
        r = res.get("ratios", {}).get(w)
        dev = (f3 if w == "100" else wide).get("run_steps_per_s")
        if r and dev:
            cpu, ref = r["cpu_engine_run_steps_per_s"], r["reference_loop_run_steps_per_s"]
            ratio_rows.append(f"| {w} | {dev:,.0f} | {cpu:,.0f} (**{dev / cpu:.0f}x**) "
                              f"| {ref:,.0f} (**{dev / ref:.0f}x**) |")
    text = [
        f"## GPU check ({res['machine']['device_kind']})",
        "",
        f"Command: `{command}` — machine: {res['machine']['description']}; git {res['machine']['git_sha']}; "
        f"total {res.get('total_s', 0):.0f} s.",
        "",
        *rows,
    ]
    if ratio_rows:
        text += ["", f"Grid run-steps/s on the device vs the CPU engine on the same machine's "
                 f"{res['ratios']['cpu_cores']} cores (`dlf.phase`, one XLA device per core, 16 runs) and vs "
                 "the per-step reference loop (one jitted step per Python iteration, four values read back; "
                 "benchmarks/engine.py) on the device:", "",
                 "| width | device grid | CPU engine (device / CPU) | reference loop (device grid / loop) |",
                 "|---:|---:|---:|---:|", *ratio_rows]
    errors = {k: v for k, v in res.get("errors", {}).items()}
    if errors:
        text += ["", "Sections that failed: " + "; ".join(f"{k}: {v.splitlines()[-1]}" for k, v in errors.items())]
    return "\n".join(text) + "\n"


def describe_machine() -> dict:
    import jax

    sys.path.insert(0, str(HERE))
    from _md import machine

    from dlf.outputs import git_sha

    return {"description": machine(), "device_kind": jax.devices()[0].device_kind,
            "backend": jax.default_backend(), "jax": jax.__version__, "python": platform.python_version(),
            "git_sha": os.environ.get("DLF_GIT_SHA") or git_sha()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output directory (gpu_check.json, gpu_check.md)")
    ap.add_argument("--size", choices=tuple(SIZES), default="full")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of: {', '.join(SECTIONS)}")
    ap.add_argument("--reference", type=Path, default=REFERENCE)
    ap.add_argument("--make-reference", action="store_true", help="write --reference from this machine (a CPU)")
    ap.add_argument("--merge", type=Path, metavar="GPU_CHECK_MD",
                    help="instead: put a returned gpu_check.md into BENCHMARKS.md (section gpu)")
    ap.add_argument("--myrtle-worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.merge:
        from _md import write_section

        print(f"wrote {write_section('gpu', args.merge.read_text())}")
        return 0
    if args.myrtle_worker:
        return myrtle_worker(*args.myrtle_worker) or 0
    if args.make_reference:
        return make_reference(args.reference) or 0
    if args.out is None:
        ap.error("--out is required")
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()
    res = {"command": command, "size": args.size, "goals": GOALS, "machine": describe_machine(), "errors": {}}
    runners = {"equal": lambda: section_equal(res, args.reference, args.size), "tf32": lambda: section_tf32(res),
               "fig3": lambda: section_fig3(res, args.size), "wide": lambda: section_wide(res, args.size),
               "ratios": lambda: section_ratios(res, args.size), "myrtle": lambda: section_myrtle(res, args.size)}
    for name in sections:
        t = time.perf_counter()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            runners[name]()
        except Exception:
            res["errors"][name] = traceback.format_exc()
            print(res["errors"][name], file=sys.stderr, flush=True)
        res.setdefault("section_s", {})[name] = time.perf_counter() - t
        res["total_s"] = time.perf_counter() - t0
        (args.out / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        (args.out / "gpu_check.md").write_text(markdown(res, command))  # both kept if a later section hangs
        print(f"gpu_check: {name} done in {res['section_s'][name]:.1f} s", flush=True)
    print((args.out / "gpu_check.md").read_text())
    failed = ("equal" in sections and not res.get("equal", {}).get("ok", False)) or bool(res["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
