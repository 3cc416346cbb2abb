"""Shared helpers for the three test tiers (math, config, end-to-end)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dlf.devices import host_device_flag

host_device_flag(2)  # the engine shards runs over 2 CPU devices here, as the CLI does on 2 cores

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# One JAX compilation cache for the whole session, shared by the xdist workers and every CLI they
# start (DLF_COMPILE_CACHE is the default compile_cache): the same small programs are compiled once
# per session rather than once per process. A fresh directory per session, so no test depends on a
# cache left by an earlier one; tests of the cache itself set compile_cache (or the variable) themselves.
_CACHE_VAR = "DLF_TEST_COMPILE_CACHE"


def pytest_configure(config):
    if _CACHE_VAR not in os.environ:  # the controller (or a run without xdist); workers inherit it
        os.environ[_CACHE_VAR] = tempfile.mkdtemp(prefix="dlf-test-jax-cache-")
        config.dlf_cache_owner = True
    os.environ["DLF_COMPILE_CACHE"] = os.environ[_CACHE_VAR]
    os.environ["DLF_FIGURES"] = "false"  # figures=true where a test looks at them (~0.3 s each; ~300 runs)
    from dlf.drive.session import use_compile_cache

    use_compile_cache(Path(os.environ[_CACHE_VAR]))


def pytest_unconfigure(config):
    if getattr(config, "dlf_cache_owner", False):
        shutil.rmtree(os.environ.pop(_CACHE_VAR), ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The SLURM tests first: they spend much of their time waiting on the cluster, which the other
    worker fills, rather than at the end of the session with one core idle. Then the other slow
    tests, then the quick ones (each in file order): the session ends on many short tests that both
    workers share, not on one long test that leaves the other core idle."""
    items.sort(key=lambda item: (item.get_closest_marker("slurm") is None, item.get_closest_marker("slow") is None))


@pytest.fixture(autouse=True)
def _registries_as_they_were():
    """What a test registers (a plugin's model, loss or probe) is gone after it, and so is the plugin
    module (a later import registers it again): no test, and no in-process CLI run, sees another's."""
    from dlf.core.losses import LOSSES
    from dlf.core.optim import OPTIMIZERS
    from dlf.core.registry import REGISTERING_MODULES
    from dlf.core.schedule import SHAPES
    from dlf.data import DATASETS
    from dlf.models import MODELS
    from dlf.probes.evaluators import PROBES

    registries = (LOSSES, OPTIMIZERS, SHAPES, DATASETS, MODELS, PROBES)
    before = [set(r.names()) for r in registries]
    modules = set(sys.modules)
    yield
    for r, names in zip(registries, before):
        for name in set(r.names()) - names:
            r.unregister(name)
    for m in (REGISTERING_MODULES & set(sys.modules)) - modules:
        if not m.startswith("dlf"):
            del sys.modules[m]


@pytest.fixture(autouse=True)
def _quick_tier_runs_no_driver(request, monkeypatch):
    """The quick tier (make test-fast: tests not marked slow) never runs a whole driver: a test that
    does is marked slow, as the marker in pyproject.toml says; here it fails and says so."""
    if request.node.get_closest_marker("slow") is None:
        from dlf.drive.session import Session

        def refuse(self, *args, **kwargs):
            raise AssertionError(f"{request.node.nodeid} runs a whole driver ({self.what}): mark it slow")

        monkeypatch.setattr(Session, "execute", refuse)
    yield


# the entries whose main() run_cli calls in the test process (each returns an exit code or None)
IN_PROCESS = ("dlf.train", "dlf.phase", "dlf.aggregate", "dlf.stats", "dlf.diagram")


def run_cli(*overrides: str, cwd: Path, timeout: float = 600, module: str = "dlf.train",
            env: dict | None = None, fresh_process: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m <module>` (dlf.train, dlf.phase, dlf.aggregate) as a user would, in `cwd`.

    The entry's own main() runs in this process (its argv, environment and working directory set,
    stdout and stderr captured, the exit code returned; the process's state restored after), which
    spares each call a Python and JAX start-up and reuses this worker's compiled programs. A fresh
    process is started instead where one is the point or in-process state would differ: `fresh_process`,
    fault injection (DLF_FAULT*: a fault may kill the process), another copy of dlf in `cwd`
    (changed_code), a launcher that starts jobs (hydra/launcher=...), W&B, or an environment that
    changes the devices or the import path. `timeout` applies to a fresh process only.
    (tests/test_e2e.py::test_a_cli_call_in_the_test_process_is_the_one_in_a_fresh_process)"""
    if fresh_process or module not in IN_PROCESS or _needs_a_process(overrides, cwd, env or {}):
        base = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_") and k != "XLA_FLAGS"}
        return subprocess.run([sys.executable, "-m", module, *overrides], cwd=cwd, env={**base, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
    return _in_process(module, list(overrides), Path(cwd), env or {})


def _needs_a_process(overrides, cwd: Path, env: dict) -> bool:
    if any(k.startswith(("DLF_FAULT", "WANDB_", "XLA_FLAGS", "SLURM_", "PYTHONPATH")) for k in env):
        return True
    if (Path(cwd) / "dlf").exists():
        return True
    return any(o.startswith(("hydra/launcher=", "logger=", "+plugins", "plugins=")) for o in overrides)


def _loggers() -> list:
    import logging

    return [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                   if isinstance(lg, logging.Logger))]


def _in_process(module: str, argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    import contextlib
    import importlib
    import io
    import logging
    import signal
    import traceback
    import warnings

    import jax
    from hydra.core.singleton import Singleton

    entry = importlib.import_module(module)
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    hydra_state = Singleton.get_state()
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP)}
    log_state = {lg: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in _loggers()}
    jax_state = {k: getattr(jax.config, k) for k in ("jax_default_matmul_precision", "jax_compilation_cache_dir")}
    code = 0
    try:
        os.environ.update({k: str(v) for k, v in env.items()})
        os.chdir(cwd)
        sys.argv = [str(Path(entry.__file__)), *argv]
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = entry.main() or 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int | None):
                    print(e.code, file=err)
            except Exception:  # noqa: BLE001 - as the process would: the traceback on stderr, exit 1
                traceback.print_exc(file=err)
                code = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        Singleton.set_state(hydra_state)
        for s, h in signals.items():
            signal.signal(s, h)
        for lg in _loggers():
            level, handlers, propagate, disabled = log_state.get(lg, (logging.NOTSET, [], True, False))
            for h in lg.handlers:
                if h not in handlers:
                    h.close()
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled
        for k, v in jax_state.items():
            jax.config.update(k, v)
    return subprocess.CompletedProcess([sys.executable, "-m", module, *argv], code, out.getvalue(), err.getvalue())


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
