"""Shared helpers for the three test tiers (math, config, end-to-end)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlf.devices import host_device_flag

host_device_flag(2)  # the engine shards runs over 2 CPU devices here, as the CLI does on 2 cores

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def run_cli(*overrides: str, cwd: Path, timeout: float = 600, module: str = "dlf.train",
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module>` (dlf.train, dlf.phase, dlf.aggregate) as a user would, in `cwd`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_") and k != "XLA_FLAGS"}
    return subprocess.run([sys.executable, "-m", module, *overrides], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def changed_code(cwd: Path) -> str:
    """A copy of dlf (and conf/) in cwd with one source file changed (a comment added to
    dlf/data/spiral.py: the same maths, another source hash), which `python -m` in cwd imports in
    place of the checkout, as after a `git pull`. Returns the copy's source hash."""
    import shutil

    shutil.copytree(ROOT / "dlf", cwd / "dlf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(CONF, cwd / "conf")
    with (cwd / "dlf" / "data" / "spiral.py").open("a") as f:
        f.write("# a change after the run started\n")
    p = subprocess.run([sys.executable, "-c", "from dlf.outputs import source_hash; print(source_hash())"],
                       cwd=cwd, capture_output=True, text=True, check=True)
    return p.stdout.strip()


# Overrides that make any spiral run take a fraction of a second (defined once for every tier).
# (oscillating to the end: with the default switch-off, the last period, a run this short would never
# switch the dynamical loss on, which dlf refuses)
TINY = ["train.steps=6", "train.log_every=3", "seeds=2", "model.width=4", "schedule.off_last_periods=0"]
TINY_CLI = ["train.steps=40", "train.log_every=10", "seeds=2", "model.width=8", "schedule.off_last_periods=0"]


@pytest.fixture
def tiny():
    """TINY_CLI as a fresh list (a test may extend it)."""
    return list(TINY_CLI)


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib Figures that dlf's figure functions draw, captured as they close them, so
    that tests check what is plotted (axes, labels, data) rather than a file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures, close = [], plt.close

    def capture(fig=None):
        if fig is not None and hasattr(fig, "axes"):
            figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", capture)
    return figures
