"""Packaging: a plain (non-editable) wheel carries the Hydra configs and the console scripts, so
`pip install .` works from any directory (dlf.conf is found as a package, not as ../conf)."""
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
    for script, target in (("dlf-train", "dlf.train:main"), ("dlf-phase", "dlf.phase:main"),
                           ("dlf-aggregate", "dlf.aggregate:main"), ("dlf-fig5", "dlf.fig5:main")):
        assert f"{script} = {target}" in text


def test_hydra_finds_the_config_as_a_package():
    from hydra import compose, initialize_config_module

    with initialize_config_module("dlf.conf", version_base="1.3"):
        cfg = compose("config", overrides=["model=myrtle5"])
    assert cfg.model.name == "myrtle" and cfg.dataset.name == "cifar10" and cfg.train.epochs == 700
