"""The benchmark scripts still run (tiny sizes, nothing written): they import the library's
internals, so an API change must not silently break `make bench`."""
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script, args", [
    ("engine.py", ["--ref-steps", "5", "--engine-steps", "20", "--vmap-steps", "10", "--repeats", "1"]),
    ("probes.py", ["--steps", "20", "--calls", "2", "--repeats", "1", "--order", "5", "--ntk-order", "5",
                   "--fig4-steps", "50"]),
    ("cifar.py", ["--width", "4", "--images", "512", "--epochs", "1"]),
    ("fused.py", ["--steps", "20", "--ref-steps", "5", "--runs", "4", "--repeats", "1"]),
])
def test_benchmark_runs(script, args):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--no-write"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "x" in p.stdout or "images/s" in p.stdout
