"""One-line messages for user errors (composition, validation, SLURM), and `run_app`, which runs a
@hydra.main app from the command line with them."""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

from dlf.config import Config, ConfigError
from dlf.core import typed


def keys_of(path: str) -> list[str] | None:
    """Allowed keys of a config section ('' = top level, 'schedule', ...), or None if unknown."""
    return typed.keys_of(Config, path)


def _before_the_app(e: BaseException) -> bool:
    """Raised by Hydra before any dlf code ran (no frame of the dlf package but this module)."""
    tb, here = e.__traceback__, Path(__file__).resolve()
    package = here.parents[1]
    while tb is not None:
        f = Path(tb.tb_frame.f_code.co_filename).resolve()
        if f != here and package in f.parents:
            return False
        tb = tb.tb_next
    return True


def one_line(e: BaseException) -> str | None:
    """The one-line message for a user error, or None for anything else (a bug keeps its traceback)."""
    if isinstance(e, ConfigError):
        return str(e)
    if isinstance(e, OSError) and e.filename is not None and _before_the_app(e):
        return (f"cannot create the output directory {e.filename} ({e.strerror}); give a writable "
                "hydra.run.dir (hydra.sweep.dir in a sweep)")
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and e.options is not None:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not an option; choose one of: {', '.join(sorted(e.options))}"
    if isinstance(e, OverrideParseException):
        return f"cannot parse override: {str(e).splitlines()[0]} (syntax: key=value, group=option)"
    if isinstance(e, ValueError) and str(e).startswith("Config group override must be") and _before_the_app(e):
        return f"cannot parse override: {str(e).splitlines()[0]} (syntax: key=value, group=option)"
    if isinstance(e, ConfigCompositionException):
        full_key = getattr(e.__cause__, "full_key", None)
        if full_key:
            section, _, _ = full_key.rpartition(".")
            keys = keys_of(section)
            where = section or "the top level"
            variants = ("model", "dataset", "optimizer")
            allowed = f"; keys of {where}: {', '.join(keys)}" if keys else (
                f" (the keys of each {section}.name variant: python -m dlf.config)" if section in variants else "")
            return f"unknown key {full_key}{allowed}"
        first = str(e).splitlines()[0]
        if first.startswith("Ambiguous value for argument"):
            arg = first.split("'")[1] if first.count("'") >= 2 else "key=a,b"
            key, _, value = arg.partition("=")
            return (f"{first}: to sweep over the values add -m (python -m dlf.train -m {arg}); a list is "
                    f"{key}=[{value}], a string {key}='{value}'")
        return first
    if type(e).__module__.startswith("omegaconf") and getattr(e, "full_key", None) and _before_the_app(e):
        # e.g. hydra.run.dir=/x/${oops}: Hydra resolves its own keys before dlf runs
        first = str(e).splitlines()[0]
        return f"{e.full_key}: {first}; check the interpolations (${{...}}) of that value"
    if type(e).__module__.startswith("submitit") and isinstance(e, RuntimeError):
        # a SLURM job that was rejected, killed or failed outside Python: say which and where its
        # log is; the other jobs' outputs are in the sweep dir (python -m dlf.aggregate <dir>)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if type(e).__name__ == "FailedSubmissionError" or first.startswith("sbatch:"):
            return f"SLURM rejected the sweep: {first} (check hydra.launcher.* against the partition)"
        return f"SLURM: {first} (see the job's .submitit log in the sweep dir)"
    return None


_EMPTY_DIR = re.compile(r"^\+{0,2}(hydra\.(?:run|sweep)\.dir)=\s*(?:''|\"\"|null)?\s*$")


def run_app(app: Callable[[], object]) -> None:
    """Run a @hydra.main app from the command line: CPU cores become XLA devices, and user errors
    (composition, validation, SLURM) print as one `dlf: error: ...` line with exit code 2."""
    from dlf.devices import host_device_flag

    for a in sys.argv[1:]:
        if m := _EMPTY_DIR.match(a):
            print(f"dlf: error: {m.group(1)}= (empty) is not allowed; expected a directory for the outputs",
                  file=sys.stderr)
            sys.exit(2)
    import warnings

    # Hydra warns of a missing hydra.searchpath entry and goes on; dlf refuses it in one line (check_searchpath)
    warnings.filterwarnings("ignore", message=r"provider=hydra\.searchpath.* is not available")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us, to print them as one line
    host_device_flag()  # CPU cores as XLA devices: runs are sharded over them
    try:
        app()
    except Exception as e:  # noqa: BLE001 - user errors become one line, bugs keep their traceback
        msg = one_line(e)
        if msg is None:
            raise
        print(f"dlf: error: {msg}", file=sys.stderr)
        sys.exit(2)
