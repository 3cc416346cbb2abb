"""Run outputs: metrics rows, seed statistics, summary.json, provenance."""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

PER_SEED_KEYS = ("loss", "ce", "train_acc", "val_acc", "val_ce")  # the engine's metrics, per run
_NOT_PER_RUN = ("diverged_step", "gamma", "loss_trace")


def _num(x) -> float | None:
    """A JSON-safe float: non-finite values become null."""
    x = float(x)
    return x if math.isfinite(x) else None


def metrics_row(step: int, metrics: dict[str, np.ndarray], epoch: int | None = None) -> dict[str, Any]:
    """One metrics.jsonl (or probes.jsonl) row from host outputs of all runs (leading axis = run):
    every per-run value, whatever its name. Values of a run that diverged before this step are
    null (its params were frozen at the last finite step). Mini-batch runs also record the epoch."""
    dead = (metrics["diverged_step"] >= 0) & (metrics["diverged_step"] < step)
    row: dict[str, Any] = {"step": int(step)}
    if epoch is not None:
        row["epoch"] = int(epoch)
    if "gamma" in metrics:
        row["gamma"] = [_num(g) for g in metrics["gamma"][0]]
    for key, values in metrics.items():
        if key not in _NOT_PER_RUN:
            row[key] = [None if d else _num(v) for v, d in zip(values, dead)]
    return row


def seed_stats(values: Iterable[float | None]) -> dict[str, Any]:
    """{mean, ci95 (half-width of the 95% t interval; None for n < 2), std (sample, ddof=1; 0 for
    n=1), n, per_seed} over the non-null values."""
    from dlf.analysis.stats import interval

    per_seed = list(values)
    s = interval(per_seed)
    return {"mean": s["mean"], "ci95": s["ci95"], "std": s["std"], "n": s["n"], "per_seed": per_seed}


def git_sha(path: Path | None = None) -> str:
    """The source tree's commit, suffixed '-dirty' with uncommitted changes; 'unknown' outside git."""
    cwd = path or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_SOURCE: str | None = None


def source_hash() -> str:
    """16 hex digits of the SHA-256 of the dlf package's Python source (every dlf/**/*.py, by
    relative path and content): what computed a result, whether or not the tree is in git."""
    global _SOURCE
    if _SOURCE is None:
        import hashlib

        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for f in sorted(root.rglob("*.py")):
            if "__pycache__" not in f.parts:
                h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        _SOURCE = h.hexdigest()[:16]
    return _SOURCE


def code_version() -> dict[str, str]:
    """{source: source_hash(), git_sha: git_sha()}: two results of one source hash come from the
    same code; the commit says where to find it."""
    return {"source": source_hash(), "git_sha": git_sha()}


class JsonlWriter:
    """Appends one JSON object per line, flushed each time so a killed run keeps its rows."""

    def __init__(self, path: Path, append: bool = False):
        self.path = Path(path)
        # a resumed run rewrites the rows it keeps first; an appending writer first ends a line
        # that a killed writer left cut short (read_jsonl then drops that line)
        self._f = self.path.open("a" if append else "w")
        if append and self._f.tell() and not self.path.read_bytes().endswith(b"\n"):
            self._f.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, allow_nan=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file; a last line cut short (a run killed while writing it) is dropped
    with a warning, a bad line elsewhere is an error."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise
            logging.getLogger("dlf").warning("dlf: %s: dropped a truncated last line", path)
    return rows


def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere the
    set-and-restore idiom)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write a file atomically: a temporary file in the same directory, then a rename, so that a
    reader (or a run killed mid-write) sees the old file or the new one, never half of one. The
    file gets the permissions any new file would (0644 under umask 022; mkstemp alone gives 0600,
    which colleagues on a shared filesystem could not read)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """A JSON file, written atomically."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> None:
    """rows as CSV with these columns (None -> empty cell), written atomically."""
    import csv
    import io

    columns = list(columns)
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=columns)
    w.writeheader()
    for row in rows:
        w.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    write_text(path, f.getvalue())


def read_csv(path: Path, ints: Iterable[str] = (), text_ok: bool = False) -> list[dict[str, Any]]:
    """A CSV of numbers back as rows: columns in `ints` as int, the others float, empty cells None;
    with text_ok, a cell that is not a number stays text (a swept key such as model.init)."""
    import csv

    ints = set(ints)

    def num(k: str, v: str):
        if v == "":
            return None
        try:
            return int(v) if k in ints else float(v)
        except ValueError:
            if text_ok and k not in ints:
                return v
            raise

    with Path(path).open() as f:
        return [{k: num(k, v) for k, v in row.items()} for row in csv.DictReader(f)]
