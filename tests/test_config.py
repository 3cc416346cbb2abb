"""Config tier: every group option and experiment composes from conf/ and runs a few steps;
every bad input fails with one line naming the key."""
import json
from pathlib import Path

import pytest
from conftest import CONF, ROOT, TINY, run_cli
from hydra import compose, initialize_config_dir

from dlf import config as config_lib
from dlf.drive.run import run

GROUPS = ("dataset", "model", "optimizer", "schedule", "logger")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = [p.stem for p in sorted((CONF / "experiment").glob("*.yaml"))]


config_lib.register_resolvers()


def compose_cfg(overrides, name="config"):
    """The typed config of conf/ with these overrides (the environment as it is: the suite's shared
    compilation cache, DLF_COMPILE_CACHE)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return config_lib.from_hydra(compose(config_name=name, overrides=overrides))


# sweep points (as dlf.tracking.naming.expand writes them) whose plain overrides the sweep check
# applies to one composition per choice of config groups: values of every type, interpolations,
# experiments and groups, a `hydra.*` key, an added key, null
SWEEP_POINTS = [
    ["schedule.A=10", "schedule.T=300", "seed=3", "seeds=2", "hydra.sweep.dir=s"],
    ["schedule.A=1", "schedule.T=50", "seed=0", "seeds=2", "hydra.sweep.dir=s"],
    ["model=myrtle5", "dataset=cifar10", "model.width=8", "train.batch_size=64", "optimizer.lr=0.05"],
    ["experiment=fig5_threshold", "optimizer.lr=2", "model.width=1000"],  # T and steps interpolate lr
    ["experiment=fig5_threshold", "optimizer.lr=0.5", "model.width=100"],
    ["train.steps='${div:7000,${optimizer.lr}}'", "optimizer.lr=0.5", "schedule.T=50"],
    ["seed=5"],  # the same (no) groups as the point before: none of its values may stay
    ["precision=float64", "optimizer=adam", "optimizer.lr=1e-3", "compile_cache=null", "logger.mode=offline"],
    ["schedule=cosine", "schedule.A=5.5", "schedule.off_last_periods=0", "train.log_every=700"],
    ["++probes.hessian.every=25", "seed=7"],
]


def test_the_sweep_check_validates_each_point_as_hydra_composes_it():
    """dlf.cli.train.sweep_point (the -m precheck's fast path) gives the Config Hydra composes for
    every point, composing the defaults once per choice of config groups and never mixing points."""
    from dlf.cli.train import sweep_point

    composed = []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        def groups(overrides):
            composed.append(tuple(overrides))
            return compose(config_name="config", overrides=overrides)

        bases = {}
        for point in SWEEP_POINTS + SWEEP_POINTS[::-1]:
            fast = sweep_point(point, groups, bases)
            assert fast == config_lib.from_hydra(compose(config_name="config", overrides=point)), point
    assert len(composed) == len(set(composed)) == 7, composed  # points 0-1, 3-4 and 5-6 share their groups
    assert ("hydra.sweep.dir=s",) in composed and ("model=myrtle5", "dataset=cifar10") in composed


def test_the_sweep_check_reports_what_hydra_reports(capsys):
    """A point that the fast path cannot take (an unknown key) or that is invalid stops the sweep
    with Hydra's, or the config's, one line, naming the job."""
    from dlf.cli.train import check_sweep

    unknown = "job 0 (seed=0 model.nope=1): unknown key model.nope (the keys of each model.name variant"
    invalid = ("job 1 (schedule.A=0.5 schedule.T=10 train.steps=40): schedule.A=0.5 is not allowed; "
               "expected a number >= 1")
    for argv, expected in ((["-m", "seed=0,1", "model.nope=1,2"], unknown),
                           (["-m", "schedule.A=10,0.5", "schedule.T=10", "train.steps=40"], invalid)):
        with pytest.raises(SystemExit) as e:
            check_sweep(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith(f"dlf: error: {expected}"), err
    check_sweep(["-m", "schedule.A=1,10", "seed=range(3)", "schedule.T=10", "train.steps=40"])  # a valid sweep passes
    assert capsys.readouterr().err == ""


def test_config_reference_is_generated_from_the_code():
    text = (ROOT / "docs" / "config.md").read_text()
    assert config_lib.reference_table() in text, "docs/config.md is stale: run python -m dlf.config --write"
    keys = {line.split("`")[1] for line in config_lib.reference_table().splitlines()[2:]}
    assert {"model.width", "model.depth", "model.norm", "optimizer.momentum", "optimizer.b1",
            "probes.hessian.every", "probes.ntk.samples", "dataset.subset", "grid.A"} <= keys


def test_phase_config_is_the_train_config_plus_its_run_dir():
    cfg = compose_cfg(["experiment=fig3_spiral_narrow", "grid.A=[1,5]"], name="phase")
    assert (cfg.seeds, cfg.model.width, cfg.grid.A, cfg.grid.T) == (50, 100, (1.0, 5.0), None)
    assert compose_cfg(["experiment=fig3_spiral_wide"], name="phase").model.width == 1000


def test_defaults_are_the_documented_spiral_protocol():
    cfg = compose_cfg([])
    assert (cfg.dataset.name, cfg.model.width, cfg.model.init, cfg.optimizer.name, cfg.optimizer.lr) == (
        "spiral", 100, "lecun", "gd", 1.0)
    assert (cfg.schedule.shape, cfg.train.steps, cfg.precision) == ("triangle", 35000, "float32")
    assert cfg.off_step == 35000 - cfg.schedule.T  # oscillations off for the last period


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    from test_cifar_data import fake_cifar, write_batches_py
    return write_batches_py(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", *fake_cifar(80, 40))


def _image(option_overrides, cifar_dir):
    """Tiny overrides for options that train on CIFAR-10 images (epochs of mini-batches): the sizes of
    tests/test_cifar_train.py, so that the two share their compiled programs (the suite's cache)."""
    model = ["model.depth=10", "model.widen=1"] if "wrn" in option_overrides[0] else ["model.width=4"]
    return [f"dataset.path={cifar_dir}", "train.epochs=1", "train.batch_size=16", "train.log_every=1",
            "seeds=1", *model, "optimizer.warmup_epochs=0.5", "schedule.T=6"]


def _is_image(option: str) -> bool:
    return option.startswith(("myrtle", "wrn", "cifar", "fig1", "wrn_"))


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_group_option_composes_to_a_valid_config(group, option):
    """The quick tier's share of the check below: each option composes, validates, names itself where
    its group has a name, and survives the dict round trip the results layer reads (no run)."""
    cfg = compose_cfg([f"{group}={option}", *(["model=myrtle5"] if (group, option) == ("dataset", "cifar10") else [])])
    assert config_lib.from_dict(config_lib.to_dict(cfg)) == cfg
    named = {"dataset": cfg.dataset.name, "optimizer": cfg.optimizer.name, "schedule": cfg.schedule.shape,
             "model": cfg.model.name}.get(group)
    assert named is None or option.startswith(named), (group, option, named)


@pytest.mark.slow  # each option through the whole driver (run())
@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_group_option_composes_and_runs(group, option, tmp_path, cifar_dir):
    chosen = [f"{group}={option}"]
    if _is_image(option):
        chosen += (["model=myrtle5"] if group == "dataset" else []) + _image(chosen, cifar_dir)
        rows, seeds = 2, 1
    else:
        chosen += TINY + (["logger.mode=disabled"] if group == "logger" else [])
        rows, seeds = 3, 2
    summary = run(compose_cfg(chosen), tmp_path)
    assert summary["status"] == "ok" and summary["final"]["train_acc"]["n"] == seeds
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == rows


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_to_its_protocol(experiment):
    full = compose_cfg([f"experiment={experiment}"])
    assert config_lib.from_dict(config_lib.to_dict(full)) == full
    if _is_image(experiment):  # the CIFAR protocols: tests/test_cifar_train.py
        assert full.dataset.name == "cifar10" and full.train.epochs > 0
    elif experiment.startswith("fig3"):
        assert full.train.steps == 35000 and full.optimizer.lr == 1.0 and full.schedule.off_last_periods == 1
        assert full.model.width == {"fig3_spiral_narrow": 100, "fig3_spiral_wide": 1000, "fig3_grid": 100}[experiment]
    elif experiment == "fig4_dynamics":  # SPEC 2, Fig. 4
        assert (full.model.width, full.schedule.A, full.schedule.T, full.train.steps, full.precision) == (
            100, 70, 5000, 70000, "float64")
        assert (full.probes["hessian"].every, full.probes["ntk"].every, full.probes["hessian"].order,
                full.seeds) == (25, 25, 10, 1)
    else:  # fig5_threshold and fig5_grid: T = 5000/eta, 70 000/eta steps
        scan = compose_cfg([f"experiment={experiment}", "optimizer.lr=0.5"])
        assert (scan.schedule.T, scan.train.steps, scan.probes["hessian"].every) == (10000, 140000, 25)


@pytest.mark.slow  # each experiment through the whole driver (run())
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs(experiment, tmp_path, cifar_dir):
    tiny = _image([experiment], cifar_dir) if _is_image(experiment) else TINY
    assert run(compose_cfg([f"experiment={experiment}", *tiny]), tmp_path)["status"] == "ok"


def test_schedule_options_set_their_shape():
    for shape in ("triangle", "cosine", "square", "static"):
        cfg = compose_cfg([f"schedule={shape}"])
        assert cfg.schedule.shape == shape
    assert compose_cfg(["schedule=static"]).schedule.A == 1.0


def test_off_from_step_takes_precedence():
    cfg = compose_cfg(["schedule.off_from_step=1234"])
    assert cfg.off_step == 1234
    assert compose_cfg(["schedule.off_last_periods=0"]).off_step is None


BAD = [
    (["schedule.A=0.5"], "schedule.A", ">= 1"),
    (["schedule.T=1"], "schedule.T", ">= 2"),
    (["schedule.T=2.5"], "schedule.T", "integer"),
    (["schedule.T=abc"], "schedule.T", "integer"),
    (["model.width=0"], "model.width", ">= 1"),
    (["optimizer.lr=0"], "optimizer.lr", "> 0"),
    (["optimizer.lr=-1"], "optimizer.lr", "> 0"),
    (["train.steps=0"], "train.steps", ">= 1"),
    (["seeds=0"], "seeds", ">= 1"),
    (["precision=bf16"], "precision", "float32, float64"),
    (["model.init=he"], "model.init", "lecun, glorot"),
    (["schedule.shape=zigzag"], "schedule.shape", "triangle, cosine, square, static"),
    (["schedule=static", "schedule.A=10"], "schedule.A", "schedule.shape=static"),
    (["model=resnet"], "model=resnet", "mlp"),
    (["schedule=zigzag"], "schedule=zigzag", "triangle"),
    (["experiment=fig99"], "experiment=fig99", "fig3_spiral_narrow"),
    (["schedule.X=1"], "schedule.X", "off_last_periods"),
    (["+schedule.X=1"], "schedule.X", "off_last_periods"),
    (["lr=1"], "unknown key lr", "optimizer"),
    (["figures=sometimes"], "figures='sometimes'", "true or false"),
]


@pytest.mark.parametrize("overrides,key,allowed", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_error(overrides, key, allowed, tmp_path):
    p = run_cli(*overrides, "hydra.run.dir=run", cwd=tmp_path, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dlf: error: ") and key in lines[0] and allowed in lines[0], lines[0]
    assert "Traceback" not in p.stderr + p.stdout
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_invalid_value_records_failed_summary(tmp_path):
    p = run_cli("schedule.T=1", "hydra.run.dir=run", cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "schedule.T" in summary["error"]


@pytest.mark.parametrize("data,key", [
    ({"seed": 2**31}, "seed"),
    ({"seed": 2**31 - 2, "seeds": 5}, "seed + seeds - 1"),
    ({"seed": -1}, "seed"),
    ({"train": {"vmap_size": 0}}, "train.vmap_size"),
    ({"train": {"log_every": 0}}, "train.log_every"),
    ({"schedule": {"A": float("nan")}}, "schedule.A"),
    ({"schedule": {"A": True}}, "schedule.A"),
    ({"model": 3}, "model"),
    ({"dataset": {"classes": 1}}, "dataset.classes"),
])
def test_library_validation_names_the_key(data, key):
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.from_dict(data)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_bugs_are_not_turned_into_user_errors():
    from dlf.cli.errors import keys_of, one_line

    assert one_line(RuntimeError("a bug")) is None and one_line(KeyError("x")) is None
    assert keys_of("schedule") == ["shape", "A", "T", "off_last_periods", "off_from_step", "off_from_epoch",
                                  "off_align", "order", "order_seed", "period", "target"]
    assert keys_of("schedule.A") is None and keys_of("nope") is None


@pytest.mark.parametrize("T, literal, period, notebook", [(300, 34700, 34500, 34800), (100, 34900, 34900, 34900),
                                                         (7000, 28000, 28000, 28000), (333, 34667, 34632, 34965)])
def test_off_align_readings_of_the_last_period(T, literal, period, notebook):
    """The default follows the authors' notebooks: off at the first period boundary at or after
    steps - T; the last boundary before it (period) and steps - T itself (literal) are options."""
    cfg = compose_cfg([f"schedule.T={T}"])
    assert cfg.schedule.off_align == "notebook" and cfg.off_step == notebook
    assert notebook % T == 0 and 0 < 35000 - notebook <= T
    assert compose_cfg([f"schedule.T={T}", "schedule.off_align=period"]).off_step == period
    assert compose_cfg([f"schedule.T={T}", "schedule.off_align=literal"]).off_step == literal


@pytest.mark.parametrize("T, align, off", [(300, "period", 34615), (300, "literal", 34699), (300, "notebook", 34916),
                                           (100, "period", 34845), (100, "literal", 34899), (100, "notebook", 34946)])
def test_notebook_period_of_T_plus_1_steps_moves_the_switch_off(T, align, off):
    """schedule.period=T+1: periods last T+1 steps, so the boundaries are multiples of T+1."""
    cfg = compose_cfg([f"schedule.T={T}", "schedule.period=T+1", f"schedule.off_align={align}"])
    assert cfg.off_step == off and (align == "literal" or off % (T + 1) == 0)


def _plain(x):
    """Config values as comparable plain data (tuples as lists)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return [_plain(v) for v in x] if isinstance(x, (list, tuple)) else x


def _composed(overrides, monkeypatch):
    """The composed config.yaml (resolved, without `hydra`) as plain data, with no environment
    variable changing a default."""
    from omegaconf import OmegaConf

    for var in ("DLF_OUTPUT_DIR", "CIFAR10_DIR", "DLF_COMPILE_CACHE", "DLF_FIGURES", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    return _plain(data)


def test_the_yaml_defaults_are_the_dataclass_defaults(monkeypatch):
    """One source of defaults: the CLI's default run (conf/config.yaml and its default options)
    states every key, each with the typed config's default, so the Python API's from_dict({}) is
    the CLI's default run."""
    from dlf.analysis.results import flat

    yaml_keys = flat(_composed([], monkeypatch))
    typed_keys = flat(_plain(config_lib.to_dict(config_lib.from_dict({}))))
    assert yaml_keys.keys() == typed_keys.keys(), sorted(yaml_keys.keys() ^ typed_keys.keys())
    assert {k: v for k, v in yaml_keys.items() if typed_keys[k] != v} == {}
    monkeypatch.delenv("DLF_COMPILE_CACHE", raising=False)
    monkeypatch.delenv("DLF_FIGURES", raising=False)
    assert config_lib.from_dict({}) == compose_cfg([])


VARIANT_GROUPS = ("dataset", "model", "optimizer")
DEFAULT_OPTIONS = {"dataset": "spiral", "model": "mlp", "optimizer": "gd", "schedule": "triangle", "logger": "none",
                   "paths": "default"}


@pytest.mark.parametrize("group,option", [(g, p.stem) for g in DEFAULT_OPTIONS
                                          for p in sorted((CONF / g).glob("*.yaml"))])
def test_every_group_option_agrees_with_its_typed_defaults(group, option, monkeypatch):
    """A group option named after its variant (optimizer=momentum, dataset=cifar10) or the default
    option of its group equals the typed defaults key for key; a preset (model=wrn16_4,
    schedule=static, logger=wandb) differs from them only in keys its own file sets."""
    import dataclasses

    from omegaconf import OmegaConf

    section = _composed([f"{group}={option}"], monkeypatch)[group]
    registry = {f.name: f.metadata.get("registry") for f in dataclasses.fields(config_lib.Config)}.get(group)
    typed = (dataclasses.asdict(registry.config_of(section["name"])()) if group in VARIANT_GROUPS
             else config_lib.to_dict(config_lib.from_dict({}))[group])
    own = {k for k in OmegaConf.load(CONF / group / f"{option}.yaml") if k != "defaults"}
    preset = option != DEFAULT_OPTIONS[group] and (group not in VARIANT_GROUPS or option != section["name"])
    differ = {k for k in section if _plain(typed[k]) != section[k]}
    assert differ <= (own if preset else set()), {k: (section[k], typed[k]) for k in differ}
    assert set(section) == set(typed)


def test_per_period_values_are_methods_of_the_config():
    """A grid's switch-off step per period T comes from the one config (no rebuilt config per T)."""
    cfg = compose_cfg(["train.steps=1000", "schedule.A=1"])  # A=1: T >= steps is allowed (nothing to switch on)
    for T in (7, 100, 300, 999, 2000):
        again = config_lib.replace(cfg, schedule=dict(T=T))
        assert cfg.off_step_for(None, T) == again.off_step == -(-max(0, 1000 - T) // T) * T
        literal = config_lib.replace(cfg, schedule=dict(off_align="literal"))
        assert literal.off_step_for(None, T) == config_lib.replace(literal, schedule=dict(T=T)).off_step \
            == max(0, 1000 - T)


def _run_dir(*overrides):
    """hydra.run.dir as the CLI resolves it (the default: paths.output_dir/runs/${dlf_run_name:})."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    return Path(cfg.hydra.run.dir).name


def test_the_default_run_dir_is_named_by_the_configuration():
    """The same configuration names the same directory (so the same command resumes there), in any
    override order and whatever the keys that may differ in one run dir (logger, checkpoint, ...);
    another configuration names another; a long command line still fits a file name."""
    base = _run_dir("schedule.A=10", "optimizer.lr=0.5")
    assert base.startswith("A10_T100_s0_") and len(base) == len("A10_T100_s0_") + 10
    assert _run_dir("optimizer.lr=0.5", "schedule.A=10") == base
    assert _run_dir("schedule.A=10", "optimizer.lr=0.5", "logger.mode=offline", "checkpoint.every_steps=500",
                    "compile_cache=null") == base
    assert _run_dir("schedule.A=10", "optimizer.lr=1") != base and _run_dir("schedule.A=10", "optimizer.lr=0.5",
                                                                           "seeds=3") != base
    many = [f"{k}={v}" for k, v in (("model.width", 37), ("model.init", "glorot"), ("optimizer.lr", 0.3),
                                    ("schedule.T", 250), ("schedule.A", 20), ("seeds", 5), ("seed", 3),
                                    ("train.steps", 5000), ("train.log_every", 250), ("precision", "float64"),
                                    ("dataset.per_class", 150), ("dataset.noise", 0.3), ("schedule.shape", "cosine"),
                                    ("schedule.off_last_periods", 2), ("model.activation", "tanh"),
                                    ("dataset.classes", 4), ("train.step", "generic"))]
    name = _run_dir(*many)
    assert name.startswith("A20_T250_s3_") and len(name) < 40
    cifar = _run_dir("experiment=fig1_myrtle5_cifar10", "model.width=4")
    assert cifar.startswith("A") and cifar != _run_dir("experiment=fig1_myrtle5_cifar10", "model.width=8")


@pytest.mark.slow
def test_help_works_and_points_to_a_reference_that_ships(tmp_path):
    """Issue 24: `--help` named docs/config.md, which a wheel does not ship (and `dlf.train --help`
    crashed on the `$DLF_OUTPUT_DIR` in its text). Now both helps print, and the reference they
    name, `python -m dlf.config`, prints every key of the typed config from the package alone."""
    for module in ("dlf.train", "dlf.phase"):
        p = run_cli("--help", cwd=tmp_path, module=module)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert "python -m dlf.config" in p.stdout and "== Config ==" in p.stdout
    assert "paths.output_dir: $DLF_OUTPUT_DIR, else outputs" in run_cli("--help", cwd=tmp_path).stdout
    p = run_cli(cwd=tmp_path, module="dlf.config")
    assert p.returncode == 0 and p.stdout.strip() == config_lib.reference_table().strip()
    assert not list(tmp_path.iterdir())  # printing the reference writes nothing


@pytest.mark.parametrize("value, figures", [("false", False), ("true", True), (None, True)])
def test_dlf_figures_sets_the_figures_default_for_a_shell(value, figures, monkeypatch):
    if value is None:
        monkeypatch.delenv("DLF_FIGURES", raising=False)
    else:
        monkeypatch.setenv("DLF_FIGURES", value)
    assert compose_cfg([]).figures is figures and compose_cfg(["figures=true"]).figures is True
    assert compose_cfg(["figures=false"]).figures is False


def test_a_bad_dlf_figures_is_one_line(monkeypatch):
    monkeypatch.setenv("DLF_FIGURES", "maybe")
    with pytest.raises(config_lib.ConfigError, match=r"^figures='maybe' is not allowed; expected true or false$"):
        compose_cfg([])
