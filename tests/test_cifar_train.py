"""CIFAR-10 runs end to end on this CPU: tiny Myrtle/WRN through a `local` directory in the real
pickle format, checkpoints that survive SIGKILL, bf16, the protocol presets, bad inputs."""
import json

import numpy as np
import pytest
import yaml
from conftest import CONF, run_cli
from hydra import compose, initialize_config_dir
from test_cifar_data import fake_cifar, write_batches_py

from dlf import config as config_lib
from dlf.outputs import read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_batches_py(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", *fake_cifar(80, 40))


def tiny(cifar_dir, *extra):
    return ["model=myrtle5", "model.width=4", f"dataset.path={cifar_dir}", "train.epochs=6",
            "train.batch_size=16", "train.log_every=1", "optimizer.warmup_epochs=2",
            "schedule.off_from_epoch=5", "schedule.T=6", *extra]


def _summary(d):
    return json.loads((d / "summary.json").read_text())


def test_myrtle_trains_per_epoch_and_writes_outputs(tmp_path, cifar_dir):
    p = run_cli(*tiny(cifar_dir), "hydra.run.dir=run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "run"
    rows, s = read_jsonl(d / "metrics.jsonl"), _summary(d)
    assert [r["epoch"] for r in rows] == list(range(7))
    assert [r["step"] for r in rows] == [5 * e for e in range(7)]  # 80 // 16 = 5 steps per epoch
    assert s["status"] == "ok" and s["epochs"] == 6 and s["steps"] == 30 and s["steps_per_epoch"] == 5
    assert set(s["final"]) == {"loss", "ce", "train_acc", "val_acc", "val_ce"}
    # train and test accuracy over all 80 / 40 images: multiples of 1/80 and 1/40
    assert rows[-1]["train_acc"][0] * 80 == pytest.approx(round(rows[-1]["train_acc"][0] * 80))
    assert rows[-1]["val_acc"][0] * 40 == pytest.approx(round(rows[-1]["val_acc"][0] * 40))
    # Gamma: on during epochs 0-4 (step 5 = T-1 of period 0... class weights move), off from epoch 5
    assert rows[-1]["gamma"] == [1.0] * 10 and rows[1]["gamma"] != [1.0] * 10
    assert rows[1]["loss"] != rows[1]["ce"]
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert (cfg["model"]["name"], cfg["optimizer"]["name"], cfg["dataset"]["name"]) == ("myrtle", "nesterov", "cifar10")


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, cifar_dir):
    """Kill -9 right after the epoch-2 checkpoint; the same command resumes from it and ends with
    the metrics of an uninterrupted run, row for row."""
    args = tiny(cifar_dir, "checkpoint.every_epochs=2", "seeds=2")
    full = run_cli(*args, "hydra.run.dir=full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    killed = run_cli(*args, cwd=work, env={"DLF_FAULT": "3:KILL"})
    assert killed.returncode == -9
    (d,) = (work / "outputs" / "runs" / "cifar10").iterdir()  # named by the command's overrides
    assert _summary(d)["status"] == "running"  # what a killed run leaves
    assert max(r["epoch"] for r in read_jsonl(d / "metrics.jsonl")) >= 2
    again = run_cli(*args, cwd=work)  # the very same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from the checkpoint at epoch 2" in again.stdout
    a, b = read_jsonl(tmp_path / "full" / "metrics.jsonl"), read_jsonl(d / "metrics.jsonl")
    assert [r["epoch"] for r in b] == list(range(7))
    assert a == b
    assert _summary(d)["final"] == _summary(tmp_path / "full")["final"]
    # a finished run is not trained again
    third = run_cli(*args, cwd=work)
    assert third.returncode == 0 and "already holds a finished run" in third.stdout
    # another config in the same run dir is refused before anything is trained (the checkpoints there
    # belong to seeds=2; the run-directory contract itself: tests/test_reliability.py)
    clash = run_cli(*args[:-1], "seeds=3", f"hydra.run.dir='{d}'", cwd=work)  # the dir name holds '='
    assert clash.returncode == 2 and "holds a run of another configuration (differs in seeds)" in clash.stderr


def test_bf16_and_wrn_batch_norm_run(tmp_path, cifar_dir):
    p = run_cli(*tiny(cifar_dir, "precision=bfloat16"), "train.epochs=2", "optimizer.warmup_epochs=1",
                "hydra.run.dir=bf16", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _summary(tmp_path / "bf16")["status"] == "ok"
    # the sizes of test_config's model=wrn16_4 run: the two share their compiled programs (the suite's cache)
    p = run_cli("model=wrn16_4", "model.depth=10", "model.widen=1", f"dataset.path={cifar_dir}", "train.epochs=1",
                "train.batch_size=16", "train.log_every=1", "seeds=1", "optimizer.warmup_epochs=0.5", "schedule.T=6",
                "hydra.run.dir=wrn", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _summary(tmp_path / "wrn")["final"]["train_acc"]["n"] == 1


@pytest.mark.parametrize("extra, message", [
    (["dataset.source=web"], "dataset.source='web' is not allowed; expected one of: local, tfds"),
    (["dataset.path=/nonexistent/cifar"], "dataset.path="),
    (["dataset.subset=0"], "dataset.subset=0 is not allowed; expected an integer >= 1"),
    (["train.batch_size=100"], "train.batch_size=100 is not allowed; expected <= 80"),
    (["model=mlp", "dataset=cifar10"], "model.name=mlp is not allowed with dataset.name=cifar10"),
    (["train.epochs=null"], "train.batch_size=16 with train.epochs=None is not allowed"),
])
def test_bad_cifar_input_is_one_line(tmp_path, cifar_dir, extra, message):
    p = run_cli(*tiny(cifar_dir), *extra, "hydra.run.dir=bad", cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlf: error: ") and message in lines[0], p.stderr
    if "path" in message:
        assert "tfds" in lines[0] and "local" in lines[0]  # names both sources


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return config_lib.from_hydra(compose(config_name="config", overrides=list(overrides)))


@pytest.mark.parametrize("how", [["model=myrtle5"], ["experiment=fig1_myrtle5_cifar10"]])
def test_myrtle5_is_the_papers_fig1_protocol(how):
    """SPEC 2: 64 channels, no augmentation, Nesterov 0.9, batch 512, 0 -> 0.02 at epoch 300 ->
    0.002 at epoch 700, oscillations off from epoch 600."""
    cfg = _compose(*how)
    assert (cfg.dataset.name, cfg.model.name, cfg.model.depth, cfg.model.width) == ("cifar10", "myrtle", 5, 64)
    o = cfg.optimizer
    assert (o.name, o.momentum, o.lr, o.lr_schedule, o.warmup_epochs, o.final_lr) == (
        "nesterov", 0.9, 0.02, "piecewise", 300, 0.002)
    assert (cfg.train.batch_size, cfg.train.epochs) == (512, 700)
    spe = 50_000 // 512
    assert cfg.off_step_for(50_000) == 600 * spe and cfg.total_steps(50_000) == 700 * spe
    from dlf.core.optim import lr_schedule
    lr = lr_schedule(o, spe, 700 * spe)
    np.testing.assert_allclose([lr(0), lr(150 * spe), lr(300 * spe), lr(500 * spe), lr(700 * spe)],
                               [0.0, 0.01, 0.02, 0.011, 0.002], rtol=1e-6, atol=1e-9)
    if how == ["experiment=fig1_myrtle5_cifar10"]:
        assert (cfg.schedule.A, cfg.schedule.T) == (50, 100)
    wrn = _compose("experiment=wrn_cifar10")
    assert (wrn.model.name, wrn.model.depth, wrn.model.widen, wrn.model.norm) == ("wrn", 28, 10, "batch")
    assert (wrn.train.batch_size, wrn.train.epochs) == (1024, 200)


def test_optimizers_and_cosine_schedule():
    import optax

    from dlf.core.optim import OPTIMIZERS, GDConfig, build, lr_schedule
    base = GDConfig(lr=0.1, lr_schedule="cosine", warmup_steps=10, final_lr=0.0)
    lr = lr_schedule(base, 1, 110)
    np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)],
                               [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-7)
    params = {"w": np.ones(3, np.float32)}
    grads = {"w": np.full(3, 0.5, np.float32)}
    for name, ref in (("momentum", optax.sgd(0.1, momentum=0.9)),
                      ("nesterov", optax.sgd(0.1, momentum=0.9, nesterov=True)),
                      ("adam", optax.adam(0.1)), ("sgd", optax.sgd(0.1))):
        tx = build(OPTIMIZERS.config_of(name)(name=name, lr=0.1))
        s1, s2 = tx.init(params), ref.init(params)
        for _ in range(3):
            u1, s1 = tx.update(grads, s1, params)
            u2, s2 = ref.update(grads, s2, params)
            np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-7)
