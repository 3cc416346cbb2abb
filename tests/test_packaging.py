"""Packaging: a plain (non-editable) wheel carries the top-level conf/ as dlf/conf and the console
scripts, so `pip install .` works from any directory; a checkout works from any directory too,
its parent included (a clone named `dlf` does not shadow the package)."""
import subprocess
import sys
import zipfile

import pytest
from conftest import CONF, ROOT


@pytest.mark.slow
def test_wheel_holds_every_config_and_the_console_scripts(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = tmp_path.glob("dlf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"dlf/conf/{f.relative_to(CONF).as_posix()}" for f in CONF.rglob("*.yaml")}
    assert len(configs) > 30 and configs <= names, sorted(configs - names)[:5]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    for script in ("train", "phase", "aggregate", "diagram", "fig5"):
        assert f"dlf-{script} = dlf.cli.{script}:main" in text
    modules = {f"dlf/{p.relative_to(ROOT / 'dlf').as_posix()}" for p in (ROOT / "dlf").rglob("*.py")}
    assert modules <= names, sorted(modules - names)[:5]  # every subpackage is listed in pyproject.toml
    # installed from the wheel alone (no checkout on the path), the CLI composes the shipped configs
    site = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    code = ("import dlf.cli, sys; from hydra import compose, initialize_config_dir; d = dlf.cli.conf_dir(); "
            "initialize_config_dir(config_dir=str(d), version_base='1.3'); "
            "c = compose('config', overrides=['model=myrtle5']); print(d, c.model.name, c.train.epochs)")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == [str(site / "dlf" / "conf"), "myrtle", "700"]


def test_the_checkout_configs_are_the_top_level_conf():
    from dlf.cli import conf_dir

    assert conf_dir() == ROOT / "conf" and CONF == ROOT / "conf" and not (ROOT / "dlf" / "conf").exists()


def test_commands_work_from_the_parent_of_a_clone_named_dlf(tmp_path):
    """`dlf/.venv/bin/python -m dlf.aggregate ...` from the directory that holds the clone: the clone's
    folder (also named dlf, with an outputs/ inside) must not shadow the package."""
    (tmp_path / "dlf").symlink_to(ROOT)
    p = subprocess.run([sys.executable, "-m", "dlf.aggregate", "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and "usage: python -m dlf.aggregate" in p.stdout, p.stderr[-2000:]
