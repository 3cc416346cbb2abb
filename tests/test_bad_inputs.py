"""Bad inputs of issue 10 ("validation gaps"): each is one line naming the key, before any
training (config tier: composed in-process; the output directory and sizes through the CLI)."""
import pytest
from conftest import CONF, run_cli
from hydra import compose, initialize_config_dir

from dlf import config as config_lib
from dlf.errors import ConfigError

BIG = str(2**31)  # one past int32


def _validate(*overrides, config_name="config"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return config_lib.from_hydra(compose(config_name=config_name, overrides=list(overrides)))


@pytest.mark.parametrize("overrides, message", [
    ([f"schedule.T={BIG}"], "schedule.T=2147483648 is not allowed"),
    ([f"train.steps={BIG}"], "train.steps=2147483648 is not allowed"),
    ([f"schedule.off_from_step={BIG}"], "schedule.off_from_step=2147483648 is not allowed"),
    ([f"grid.T=[100,{BIG}]"], "grid.T"),
    (["model=myrtle5", "dataset=cifar10", "model.depth=6"], "model.depth=6 is not allowed"),
    (["model=wrn16_4", "dataset=cifar10", "model.depth=17"], "model.depth=17 is not allowed"),
    (["optimizer=momentum", "optimizer.momentum=1.0"], "optimizer.momentum=1"),
    (["optimizer=adam", "optimizer.b1=1.0"], "optimizer.b1=1"),
    (["optimizer=adam", "optimizer.b2=1.5"], "optimizer.b2=1.5"),
    (["experiment=fig1_myrtle5_cifar10", "model=mlp"], "model.name=mlp is not allowed with dataset.name=cifar10"),
    (["experiment=wrn_cifar10", "model=mlp"], "model.name=mlp is not allowed with dataset.name=cifar10"),
    (["schedule.T=${oops}"], "schedule.T"),
    (["checkpoint.every_epochs=2"], "checkpoint.every_epochs=2 is not allowed in a full-batch run"),
    (["checkpoint.every_steps=100", "probes.hessian.every=10"],
     "checkpoint.every_steps=100 is not allowed with probes"),
])
def test_bad_value_is_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        _validate(*overrides)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_wrn_depth_and_myrtle_depth_accept_the_allowed_values():
    for depth in (5, 7, 10):
        _validate("model=myrtle5", "dataset=cifar10", f"model.depth={depth}")
    for depth in (10, 16, 28):
        _validate("model=wrn16_4", "dataset=cifar10", f"model.depth={depth}")


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", [
    (["model.width=100000000"], "reduce model.width, seeds or the data size"),
    (["seeds=100000000"], "reduce model.width, seeds or the data size"),
    (["hydra.run.dir="], "hydra.run.dir= (empty) is not allowed"),
    (["hydra.run.dir=a_file"], "cannot create the output directory a_file (File exists)"),
    (["hydra.run.dir=a_file/run"], "cannot create the output directory a_file/run (Not a directory)"),
    (["hydra.run.dir=/proc/dlf_run"], "cannot create the output directory /proc/dlf_run"),
])
def test_bad_input_through_the_cli_is_one_line(tmp_path, overrides, message):
    (tmp_path / "a_file").write_text("")
    dirs = [] if any(o.startswith("hydra.run.dir") for o in overrides) else ["hydra.run.dir=run"]
    p = run_cli("train.steps=20", "seeds=2", "compile_cache=null", *dirs, *overrides, cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("dlf: error: "), p.stderr[-2000:]
    assert message in lines[0], lines[0]
    assert sorted(x.name for x in tmp_path.iterdir() if x.name != "run") == ["a_file"]  # nothing in the cwd


@pytest.mark.slow
def test_classes_inconsistent_with_the_labels_is_one_line(tmp_path):
    """Today's symptom was "diverged at step 0"; now the labels are checked against dataset.classes."""
    from test_cifar_data import fake_cifar, write_batches_py

    path = write_batches_py(tmp_path / "cifar-10-batches-py", *fake_cifar(80, 40))
    p = run_cli("model=myrtle5", "model.width=4", f"dataset.path={path}", "train.epochs=1", "train.batch_size=16",
                "dataset.classes=5", "compile_cache=null", "hydra.run.dir=run", cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert "dataset.classes=5 is not allowed" in lines[0]
