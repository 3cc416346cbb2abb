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
    (["optimizer.lr_schedule=piecewise", "optimizer.warmup_steps=35000"],
     "optimizer.warmup_steps=35000 is not allowed; expected < train.steps=35000"),
    (["optimizer.lr_schedule=cosine", "optimizer.final_lr=2"], "optimizer.final_lr=2 is not allowed; expected <= "),
    (["experiment=fig1_myrtle5_cifar10", "train.epochs=2", "optimizer.warmup_epochs=2"],
     "optimizer.warmup_epochs=2 is not allowed; expected < train.epochs=2"),
    (["plugins=['']"], "plugins: '' is not allowed; expected a module name"),
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
    p = run_cli("train.steps=20", "schedule.T=10", "seeds=2", "compile_cache=null", *dirs, *overrides, cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("dlf: error: "), p.stderr[-2000:]
    assert message in lines[0], lines[0]
    assert sorted(x.name for x in tmp_path.iterdir() if x.name != "run") == ["a_file"]  # nothing in the cwd


@pytest.mark.parametrize("overrides, message", [
    (["schedule.T=1000", "train.steps=1000"], "schedule.T=1000 with train.steps=1000 and schedule.off_last_periods=1 "
     "is not allowed: the dynamical loss would never switch on"),
    (["schedule.T=300", "train.steps=500", "schedule.off_last_periods=2"], "schedule.T=300 with train.steps=500"),
    (["schedule.off_from_step=0"], "schedule.off_from_step=0 is not allowed with A > 1"),
    (["schedule.T=1000", "train.steps=1999", "schedule.off_align=period"],
     "expected train.steps >= 2 * P (P = T, the period length)"),
    (["schedule.T=1000", "train.steps=1000", "schedule.off_align=literal"], "expected train.steps > 1 * P"),
])
def test_a_dynamical_loss_that_never_switches_on_is_refused(overrides, message):
    """Issue 21, case 2: with T >= train.steps the default switch-off (the last period) turned the
    oscillations off from step 0, and a run labelled A=10 trained exactly as A=1."""
    with pytest.raises(ConfigError) as e:
        _validate(*overrides)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_the_same_period_is_fine_when_the_loss_oscillates_or_is_honestly_a_1():
    for fine in (["schedule.A=1"], ["schedule=static"], ["schedule.off_last_periods=0"], ["train.steps=1001"],
                 ["train.steps=2000", "schedule.off_align=period"], ["train.steps=1001", "grid.T=[100,1000]"]):
        assert _validate("schedule.T=1000", "train.steps=1000", *fine).schedule.T == 1000


@pytest.mark.slow
def test_a_grid_whose_dynamical_loss_never_switches_on_is_one_line(tmp_path):
    p = run_cli("grid.A=1,10", "grid.T=100,1000", "train.steps=1000", "seeds=1", "hydra.run.dir=g", cwd=tmp_path,
                module="dlf.phase")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert "grid.T=[1000] with train.steps=1000 and schedule.off_last_periods=1 is not allowed" in lines[0]
    assert not (tmp_path / "g" / "runs.csv").exists() and not (tmp_path / "g" / "phase.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("module, args, message", [
    ("dlf.train", ["schedule.A=1,10"], "Ambiguous value for argument 'schedule.A=1,10': to sweep over the values "
     "add -m (python -m dlf.train -m schedule.A=1,10)"),
    ("dlf.train", ["=5"], "cannot parse override: Config group override must be a string or a list"),
    ("dlf.train", ["experiment=fig3_grid"], "is a sweep over schedule.A, schedule.T: add -m"),
    ("dlf.phase", ["grid.A=1,10", "probes.hessian.every=500", "train.steps=400"], "probes.hessian.every=500 is not "
     "allowed; expected 0 (off) or <= train.steps=400"),
    ("dlf.phase", ["grid.A=1,10", "probes.ntk.every=5", "grid.shards=2"], "grid.shards=2 is not allowed with probes "
     "on; expected 1"),
    ("dlf.phase", ["grid.lr=1,2", "optimizer.lr_schedule=cosine"], "grid.lr is not allowed with "
     "optimizer.lr_schedule=cosine; expected constant"),
    ("dlf.phase", ["grid.lr=1,-2"], "grid.lr[1]=-2 is not allowed; expected a number > 0"),
    ("dlf.train", ["plugins=[os]"], "plugins: 'os' registered nothing; expected a module that registers"),
    ("dlf.train", ["hydra.searchpath=[file:///no/such/configs]"], "hydra.searchpath: file:///no/such/configs does "
     "not exist"),
    ("dlf.train", ["hydra.searchpath=[pkg://no_such_pkg.conf]"], "hydra.searchpath: pkg://no_such_pkg.conf does "
     "not exist"),
    ("dlf.train", ["hydra.run.dir=/x/${oops}"], "hydra.run.dir: Interpolation key 'oops' not found"),
    ("dlf.phase", ["grid.shards=0"], "grid.shards=0 is not allowed; expected an integer >= 1"),
])
def test_command_line_slips_are_one_line(tmp_path, module, args, message):
    """Issue 21's bad inputs at the command line: a forgotten -m (with Hydra's hint), an override
    without a key, a sweep experiment run as one job, a probe of a grid that never runs after step 0,
    probes in a sharded grid (a merge does not gather their series), a grid.lr with an lr schedule or
    a learning rate <= 0,
    a plugin that registers nothing, a search path that does not exist (Hydra only warns), an
    interpolation in a Hydra key that cannot resolve, a shard count of 0."""
    p = run_cli("hydra.run.dir=run", *args, cwd=tmp_path, module=module)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("dlf: error: "), p.stderr[-2000:]
    assert message in lines[0], lines[0]
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "runs.csv").exists()


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
