"""Process-level device set-up; imports no JAX (it must run before JAX initialises)."""
from __future__ import annotations

import os


def host_device_flag(n: int | None = None) -> None:
    """Expose the CPU cores as `n` XLA host devices (default: the cores this process may use, or
    SLURM's cpus-per-task inside a SLURM job, which need not pin the process to its cores), so
    that runs are sharded over them: ~1.9x the run-steps/s of one device on a 2-core CPU
    (BENCHMARKS.md). Only affects the CPU platform; must run before JAX initialises a backend;
    an explicit --xla_force_host_platform_device_count in XLA_FLAGS wins."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        n = n or int(os.environ.get("SLURM_CPUS_PER_TASK") or len(os.sched_getaffinity(0)))
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
