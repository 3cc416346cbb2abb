"""README commands are checked: every `.venv/bin/python -m dlf.<cli> ...` line of its bash blocks
composes and validates (sweeps with each swept key's first value), the other CLIs and make targets
exist, the error example prints what the README shows, and the results snippet and the
aggregate command run on a real sweep made with the README's sweep command (tiny overrides)."""
import importlib
import re
import shlex

import pytest
from conftest import CONF, ROOT, TINY_CLI, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlf import config as config_lib

config_lib.register_resolvers()
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def commands() -> list[list[str]]:
    out = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line:
                out.append(shlex.split(line))
    return out


def _first_values(overrides: list[str]) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        value = next(iter(o.sweep_string_iterator())) if o.is_sweep_override() else o.get_value_element_as_str()
        out.append(f"{key}={value}")
    return out


DLF = [c for c in commands() if c[:2] == [".venv/bin/python", "-m"]]


def test_readme_has_the_setup_commands_and_the_make_targets_exist():
    cmds = commands()
    assert ["make", "run"] in cmds and ["make", "test"] in cmds
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert len(DLF) >= 15


@pytest.mark.parametrize("cmd", DLF, ids=[" ".join(c[2:])[:60] for c in DLF])
def test_every_readme_command_composes_and_validates(cmd):
    module, args = cmd[2], cmd[3:]
    importlib.import_module(module)
    if module not in ("dlf.train", "dlf.phase"):
        assert hasattr(importlib.import_module(module), "main")
        return
    args = [a for a in args if a not in ("-m", "--help") and a != "--cfg" and a != "job"]
    if module == "dlf.phase":
        from dlf.cli.phase import list_args
        args = list_args(args)
    else:
        args = _first_values(args)
    if any(a.startswith("model=foo") for a in args):
        return  # the error example (test_the_error_example_prints_what_the_readme_shows)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("phase" if module == "dlf.phase" else "config", overrides=args, return_hydra_config=True)
    run_cfg = config_lib.from_hydra(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    if module == "dlf.phase":
        from dlf.drive.grid import check
        check(run_cfg)


def test_the_error_example_prints_what_the_readme_shows(tmp_path):
    lines = README.splitlines()
    (i,) = [k for k, line in enumerate(lines) if line.startswith("$ ") and "model=foo" in line]
    cmd, expected = lines[i], lines[i + 1]
    p = run_cli(*shlex.split(cmd.removeprefix("$ "))[3:], cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == expected


@pytest.mark.slow
def test_readme_sweep_aggregate_and_results_snippet_run(tmp_path):
    (sweep,) = [c for c in DLF if c[2] == "dlf.train" and "-m" in c and "seed=0,1" in c
                and not any("launcher" in a for a in c)]
    tiny = [o for o in TINY_CLI if not o.startswith("seeds=")]
    p = run_cli(*sweep[3:], *tiny, "hydra.sweep.dir=sw", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    agg = [c for c in DLF if c[2] == "dlf.aggregate"][0]
    a = run_cli(*[x.replace("outputs/multirun/<date>/<time>", "sw") for x in agg[3:]], module="dlf.aggregate",
                cwd=tmp_path)
    assert a.returncode == 0, a.stderr
    assert (tmp_path / "sw" / "runs.csv").exists() and (tmp_path / "sw" / "phase.png").exists()
    (snippet,) = [b for b in _blocks("python") if "dlf.results.load" in b]
    code = re.sub(r'"outputs/multirun/[^"]+"', repr(str(tmp_path / "sw")), snippet)
    lines = code.strip().splitlines()
    ns: dict = {}
    exec("\n".join(lines[:-2]), ns)
    table = eval(lines[-2].split("  #")[0], ns)
    assert list(table.index) == [(1.0, 100), (1.0, 300), (10.0, 100), (10.0, 300)]
    assert list(table["count"]) == [2, 2, 2, 2]
    paired = eval(lines[-1].split("  #")[0], ns)  # A=10 against A=1 at each T, both metrics
    assert sorted(zip(paired.metric, paired["T"])) == [("train_acc", 100), ("train_acc", 300), ("val_acc", 100),
                                                       ("val_acc", 300)]
    assert set(paired.n) == {2} and set(paired.kind) == {"paired"} and set(paired.family) == {2}
