"""The benchmark scripts still run (tiny sizes, nothing written) and print the measurements they
promise: they use the library's builder, so an API change must not silently break `make bench`."""
import math
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


# per script: a pattern whose numeric groups must all be finite and positive, and how many lines match
EXPECT = {
    "engine.py": (r"ref +([\d.]+) run-steps/s \| engine +([\d.]+) run-steps/s \| +([\d.]+) us/run-step "
                  r"\| x([\d.]+)", 4),
    "probes.py": (r"^\| [^|]+ \| ([\d,.]+) \| ([\d.]+) \|$", 5),
    "cifar.py": (r"^(?:float32|bfloat16) +([\d,.]+) images/s \| +([\d.]+) ms/step", 2),
    "fused.py": (r"reference +([\d.]+) \| generic +([\d.]+) \(cpu/dev +([\d.]+)\) \| fused +([\d.]+) "
                 r"\(cpu/dev +([\d.]+)\) us/run-step \| fused/generic x([\d.]+)", 2),
    "probe_runs.py": (r"^\| [^|]+ \| ([\d.]+) \| ([\d.]+) \| ~([\d.]+) \|$", 2),
    "init.py": (r"^\| MLP [^|]+ \| ([\d.]+) \| ([\d.]+) \| x([\d.]+) \|$", 3),
    "setup_costs.py": (r"^\| (?:precheck|dynamics)[^|]+ \| ([\d.]+) \| ([\d.]+) \| x([\d.]+) \|$", 3),
}


@pytest.mark.parametrize("script, args", [
    ("engine.py", ["--ref-steps", "5", "--engine-steps", "20", "--vmap-steps", "10", "--repeats", "1"]),
    ("probes.py", ["--steps", "20", "--calls", "2", "--repeats", "1", "--order", "5", "--ntk-order", "5",
                   "--fig4-steps", "50"]),
    ("cifar.py", ["--width", "4", "--images", "512", "--epochs", "1"]),
    ("fused.py", ["--steps", "20", "--ref-steps", "5", "--runs", "4", "--repeats", "1"]),
    ("probe_runs.py", ["--before", "HEAD", "--fig4-steps", "100", "--grid-steps", "50", "--fig5-scale", "0.01",
                       "--fig5-lrs", "2"]),
    ("init.py", ["--repeats", "1", "--seeds", "2"]),
    ("setup_costs.py", ["--repeats", "1", "--seeds", "2"]),
])
def test_benchmark_runs(script, args):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--no-write"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    pattern, n = EXPECT[script]
    found = [m.groups() for m in re.finditer(pattern, p.stdout, flags=re.M)]
    assert len(found) == n, f"expected {n} measurement lines, got {len(found)}:\n{p.stdout}"
    values = [float(v.replace(",", "")) for g in found for v in g]
    assert all(math.isfinite(v) and v > 0 for v in values), p.stdout
    unformatted = re.findall(r"\{[A-Za-z_][\w.\[\]'\"]*(?:![rsa])?(?::[^{}]*)?\}", p.stdout)
    assert not unformatted, f"placeholders printed as they are (an f missing?): {unformatted}"


def _write_sections(root, prefix, n, barrier):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _md

    _md.ROOT = root
    barrier.wait()
    for i in range(n):
        _md.write_section(f"{prefix}{i}", f"## {prefix}{i}\n\nbody {i}")


def test_benchmark_sections_written_at_once_are_all_kept(tmp_path):
    """Two benchmark processes rewriting BENCHMARKS.md at the same time: every section survives
    (read-modify-write under a lock; each write atomic)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_write_sections, args=(tmp_path, p, 150, barrier)) for p in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    missing = [f"{p}{i}" for p in "abc" for i in range(150) if f"<!-- bench:{p}{i}:end -->" not in text]
    assert not missing, missing


@pytest.mark.parametrize("lrs", ["abc", "0,1"])
def test_probe_runs_refuses_bad_learning_rates_in_one_line(lrs):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "probe_runs.py"), "--fig5-lrs", lrs, "--no-write"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].endswith(
        f"--fig5-lrs={lrs} is not allowed; expected a comma list of positive numbers")


@pytest.mark.parametrize("script", ["init.py", "setup_costs.py"])
@pytest.mark.parametrize("args", [["--repeats", "0"], ["--seeds", "0"]])
def test_benchmark_refuses_a_count_below_one_in_one_line(script, args):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--no-write"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].endswith("is not allowed; expected both >= 1")
