"""Shared bits of the benchmark scripts: machine description, BENCHMARKS.md sections."""
from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    import jax

    return (f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, {jax.device_count()} x "
            f"{jax.default_backend()} device(s), jax {jax.__version__}, Python {platform.python_version()}")


def commit() -> str:
    """This checkout's short commit, '-dirty' when run from a tree with uncommitted changes."""
    from dlf.outputs import git_sha

    sha = git_sha(ROOT)
    return sha[:7] + ("-dirty" if sha.endswith("-dirty") else "")


def write_section(name: str, body: str) -> Path:
    """Replace (or append) the section between `<!-- bench:NAME:begin/end -->` in BENCHMARKS.md:
    under a lock (two benchmarks finishing at once both keep their sections), written atomically
    (a kill mid-write leaves the old file)."""
    import fcntl

    from dlf.outputs import write_text

    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    text = f"{begin}\n{body.strip()}\n{end}"
    path = ROOT / "BENCHMARKS.md"
    with (ROOT / ".BENCHMARKS.md.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        head = "# dlf benchmarks\n\nEach section is written by the script named in it.\n\n"
        old = path.read_text() if path.exists() else head
        if begin in old:
            new = old[: old.index(begin)] + text + old[old.index(end) + len(end):]
        else:
            new = old.rstrip() + "\n\n" + text + "\n"
        write_text(path, new)
    return path
