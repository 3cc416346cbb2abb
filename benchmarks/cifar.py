"""Training throughput (images/s) of Myrtle5-64 at batch 512, float32 vs bfloat16, data on device.

    .venv/bin/python benchmarks/cifar.py [--epochs 2] [--images 50000] [--no-write]

Each precision runs in its own process (one model per process, as a real run): random uint8
images of CIFAR-10's shape in a `cifar-10-batches-py`-free in-memory dataset, the engine's
mini-batch epoch program (permutation, standardisation, Nesterov step, all on the device), timed
over whole epochs after compilation. On this CPU use few images (`--images 2048`); on a GPU the
default is the full 50 000.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(precision: str, images: int, epochs: int, width: int) -> None:
    print(json.dumps(measure(precision, images, epochs, width)))


def measure(precision: str, images: int, epochs: int, width: int, batch: int = 512, side: int = 32) -> dict:
    """Training images/s of one Myrtle5 model on `images` random uint8 images (side x side x 3) in
    batches of `batch`: the engine's epoch program (permutation, gather, standardisation, step)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dlf import config as config_lib
    from dlf import models
    from dlf.core.engine import Data, Hyper
    from dlf.core.seeds import init_states
    from dlf.drive.build import program_of

    cfg = config_lib.from_dict({"dataset": {"name": "cifar10", "classes": 10}, "precision": precision,
                                "model": {"name": "myrtle", "depth": 5, "width": width},
                                "optimizer": {"name": "nesterov", "lr": 0.02, "lr_schedule": "piecewise",
                                              "warmup_epochs": 300, "final_lr": 0.002},
                                "train": {"epochs": 700, "batch_size": batch}, "seeds": 1})
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (images, side, side, 3), dtype=np.uint8))
    y = jnp.asarray(rng.integers(0, 10, images).astype(np.int32))
    data = Data(x, y, x[:1000], y[:1000], jnp.full(3, 120.0), jnp.full(3, 64.0))
    spe = images // batch
    model = models.build(cfg.model, 10, precision)
    prog = program_of(cfg, model, images, np.asarray(y))  # the builder's program, on synthetic data
    states = init_states(model, prog.tx, [0], prog.inputs(x[:1], data), lambda m, key, x: model.init(key, x))
    hp = Hyper(jnp.float32(50.0), jnp.int32(100), jnp.int32(600 * spe))
    one = jax.tree.map(lambda a: a[0], states)
    run = jax.jit(lambda s: jax.lax.scan(lambda s, _: (prog.epoch(s, hp, data), None), s, None, length=epochs)[0],
                  donate_argnums=0)
    t0 = time.perf_counter()
    compiled = run.lower(one).compile()
    compile_s = time.perf_counter() - t0
    one = jax.block_until_ready(compiled(one))  # warm-up
    t0 = time.perf_counter()
    one = jax.block_until_ready(compiled(one))
    dt = time.perf_counter() - t0
    return {"images_per_s": epochs * spe * batch / dt, "step_ms": 1e3 * dt / (epochs * spe),
            "compile_s": compile_s, "device": jax.devices()[0].device_kind}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=None, help="default: 50 000 on GPU, 2048 on CPU")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        p, n, e, w = args.worker
        return worker(p, int(n), int(e), int(w))
    import jax

    sys.path.insert(0, str(HERE))
    from _md import machine, write_section

    images = args.images or (2048 if jax.default_backend() == "cpu" else 50_000)
    res = {}
    for precision in ("float32", "bfloat16"):
        out = subprocess.run([sys.executable, __file__, "--worker", precision, str(images), str(args.epochs),
                              str(args.width)], capture_output=True, text=True, check=True).stdout
        res[precision] = json.loads(out.strip().splitlines()[-1])
        r = res[precision]
        print(f"{precision:9s} {r['images_per_s']:10,.0f} images/s | {r['step_ms']:8.2f} ms/step | compile "
              f"{r['compile_s']:.1f} s | {r['device']}", flush=True)
    rows = [f"| {p} | {r['images_per_s']:,.0f} | {r['step_ms']:.2f} | {r['compile_s']:.1f} | "
            f"{700 * 50_000 / r['images_per_s'] / 60:,.1f} |" for p, r in res.items()]
    text = "\n".join([
        f"## Myrtle5-{args.width} training throughput, batch 512 ({jax.default_backend()})",
        "",
        f"Command: `.venv/bin/python benchmarks/cifar.py{''.join(' ' + a for a in (argv or sys.argv[1:]))}` — "
        f"machine: {machine()}. One model per "
        f"process, data on the device, {images} random CIFAR-shaped uint8 images, {args.epochs} epochs "
        "timed after a warm-up call (compile excluded).",
        "",
        "| precision | images/s | ms/step | compile (s) | 700 epochs of 50 000 images (min, extrapolated) |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"- bfloat16 / float32: x{res['bfloat16']['images_per_s'] / res['float32']['images_per_s']:.2f}.",
    ])
    if not args.no_write:
        print(f"wrote {write_section('cifar-' + jax.default_backend(), text)}")


if __name__ == "__main__":
    main()
