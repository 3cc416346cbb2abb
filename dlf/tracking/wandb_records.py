"""Read an offline W&B run file (`<run dir>/wandb/offline-run-*/run-<id>.wandb`) back.

wandb 0.31 ships no Python reader, so this parses the file with wandb's own protobuf classes
(`wandb.proto.wandb_internal_pb2.Record`). The framing (tested against wandb 0.31.0 only; it is
an internal format):

    header: b":W&B", uint16 0xBEE1, uint8 version 0                      (7 bytes)
    then 32 KiB blocks of chunks; a block tail shorter than 7 bytes is zero padding
    chunk:  uint32 checksum | uint16 length | uint8 type | payload      (little endian)
            type 1 = a full record, 2/3/4 = first/middle/last piece of one
            checksum = zlib.crc32(bytes([type]) + payload): the standard CRC-32, not crc32c

Each joined record is one serialized `Record`. Used here: the `run` record (config, tags,
group, ...), `history` records (one per W&B step: items with `key` or `nested_key` and
`value_json`) and `summary` records (updates and removals, applied in order).

    from dlf.tracking.wandb_records import metrics_rows, offline_run_file, read_run
    run = read_run(offline_run_file(run_dir))
    rows = metrics_rows(run.history)     # == dlf.outputs.read_jsonl(run_dir / "metrics.jsonl")
"""
from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlf.outputs import PER_SEED_KEYS

HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK_HEADER = 7  # crc32 (4) + length (2) + type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class RecordError(ValueError):
    """The file is not a (complete, uncorrupted) W&B run file."""


def offline_run_files(run_dir: Path) -> list[Path]:
    """The `run-*.wandb` files under `<run_dir>/wandb/offline-run-*/`, oldest first (one per
    attempt: a run killed and rerun in the same directory has two, with the same run id)."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def offline_run_file(run_dir: Path) -> Path:
    """The one `run-*.wandb` file under `<run_dir>/wandb/offline-run-*/` (one attempt)."""
    files = offline_run_files(run_dir)
    if len(files) != 1:
        raise FileNotFoundError(f"expected one offline W&B run file under {run_dir}/wandb, found {len(files)}"
                                " (read_run_dir reads the attempts of a resumed run as one)")
    return files[0]


def read_run_dir(run_dir: Path) -> OfflineRun:
    """All attempts of one W&B run under a dlf directory, joined as `wandb sync` joins them on the
    server: one run id, history by step (a later attempt's row replaces the same step), the
    summary and config updated in order, the exit code and metadata of the last attempt."""
    files = offline_run_files(run_dir)
    if not files:
        raise FileNotFoundError(f"no offline W&B run file under {run_dir}/wandb")
    runs = [read_run(f) for f in files]
    ids = {r.run_id for r in runs}
    if len(ids) != 1:
        raise RecordError(f"{run_dir} holds {len(ids)} different W&B runs: {sorted(ids)}")
    joined = runs[-1]
    by_step: dict[int, dict] = {}
    for r in runs:
        for h in r.history:
            by_step[h["_step"]] = h
    joined.history = [by_step[k] for k in sorted(by_step)]
    summary, config, artifacts, metrics = {}, {}, [], {}
    for r in runs:
        summary.update(r.summary)
        config.update(r.config)
        artifacts += r.artifacts
        metrics.update(r.metrics)
    joined.summary, joined.config, joined.artifacts, joined.metrics = summary, config, artifacts, metrics
    joined.attempts = len(runs)
    joined.files = files
    return joined


def iter_payloads(data: bytes) -> Iterator[bytes]:
    """The record payloads of a run file's bytes, checksums verified."""
    if data[:len(HEADER)] != HEADER:
        raise RecordError(f"not a W&B run file (header {data[:len(HEADER)]!r})")
    pos, pieces = len(HEADER), None
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer
            pos += left
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        payload = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        if len(payload) != length or zlib.crc32(bytes([kind]) + payload) != crc:
            raise RecordError(f"bad chunk at byte {pos} (truncated or checksum mismatch)")
        pos += CHUNK_HEADER + length
        if kind == FULL and pieces is None:
            yield payload
        elif kind == FIRST and pieces is None:
            pieces = [payload]
        elif kind in (MIDDLE, LAST) and pieces is not None:
            pieces.append(payload)
            if kind == LAST:
                yield b"".join(pieces)
                pieces = None
        else:
            raise RecordError(f"unexpected chunk type {kind} at byte {pos}")
    if pieces is not None:
        raise RecordError("the file ends inside a record")


def iter_records(path: Path):
    """The `wandb_internal_pb2.Record` messages of a run file, in order."""
    from wandb.proto import wandb_internal_pb2

    for payload in iter_payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record


def _key(item) -> tuple[str, ...]:
    return tuple(item.nested_key) if item.nested_key else (item.key,)


def _set(d: dict, path: tuple[str, ...], value: Any) -> None:
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value


@dataclass
class OfflineRun:
    run_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)   # without wandb's own `_wandb` key
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per W&B step
    summary: dict[str, Any] = field(default_factory=dict)  # final state; nested keys as dicts
    exit_code: int | None = None                           # None: no exit record (crashed)
    resumed: bool = False                                  # opened with resume (a rerun may follow)
    metrics: dict[str, str] = field(default_factory=dict)  # define_metric: name or glob -> its x-axis
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # {name, type, files: {path: (md5 b64, size)}}
    attempts: int = 1
    files: list[Path] = field(default_factory=list)


def read_run(path: Path) -> OfflineRun:
    """Run metadata, config, history rows and final summary of an offline run file. A history
    row maps each key ("/" in a key is part of the key; nested keys become dicts, e.g. a logged
    wandb.Image) to its JSON-decoded value, including wandb's `_step`, `_runtime`, `_timestamp`."""
    run = OfflineRun()
    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.entity = r.run_id, r.project, r.entity
            run.name, run.group, run.job_type, run.tags = r.display_name, r.run_group, r.job_type, list(r.tags)
            run.resumed = bool(r.resume)
            for item in r.config.update:
                _set(run.config, _key(item), json.loads(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                _set(run.config, _key(item), json.loads(item.value_json))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set(row, _key(item), json.loads(item.value_json))
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, _key(item), json.loads(item.value_json))
            for item in record.summary.remove:
                path, d = _key(item), run.summary
                for k in path[:-1]:
                    d = d.get(k, {})
                d.pop(path[-1], None)
        elif kind == "metric":
            m = record.metric
            run.metrics[m.name or m.glob_name] = m.step_metric
        elif kind == "artifact":
            a = record.artifact
            if not a.type.startswith("run_table"):  # wandb's own copy of each logged Table
                run.artifacts.append({"name": a.name, "type": a.type, "files": {
                    c.path: (c.digest, c.size) for c in a.manifest.contents}})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    run.files = [Path(path)]
    if not run.run_id:  # a killed attempt may end before its run record: the id is in the name
        run.run_id = Path(path).stem.removeprefix("run-")
    return run


_SEED = re.compile(r"^(?P<metric>[^/]+)/seed_(?P<n>\d+)$")
_CLASS = re.compile(r"^gamma/class_(?P<n>\d+)$")
_ORDER = PER_SEED_KEYS


def metrics_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """metrics.jsonl rows rebuilt from the history of a dlf run (layout: dlf.wandb_log): `step`
    from `_step`, `gamma` from `gamma/class_<i>`, each per-seed metric from `<metric>/seed_<s>`
    in increasing seed order. `<metric>/mean`, figures and wandb's own keys are ignored; history
    rows without metrics (none in a dlf run) are skipped."""
    rows = []
    for h in history:
        gamma: dict[int, Any] = {}
        per_seed: dict[str, dict[int, Any]] = {}
        scalars: dict[str, Any] = {}
        for key, value in h.items():
            if key == "step":
                continue  # the x-axis copy of `_step`
            if "/" not in key and not key.startswith("_"):
                scalars[key] = value  # a scalar of the row (mini-batch runs: `epoch`)
            elif m := _CLASS.match(key):
                gamma[int(m["n"])] = value
            elif m := _SEED.match(key):
                per_seed.setdefault(m["metric"], {})[int(m["n"])] = value
        if not gamma and not per_seed:
            continue
        row: dict[str, Any] = {"step": int(h["_step"]), **scalars,
                               "gamma": [_float(gamma[i]) for i in sorted(gamma)]}
        for metric in sorted(per_seed, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k)):
            row[metric] = [_float(per_seed[metric][s]) for s in sorted(per_seed[metric])]
        rows.append(row)
    return rows


def _float(v: Any) -> float | None:
    """JSON numbers come back as int when integral (1.0 is written `1`); metrics are floats."""
    return None if v is None else float(v)


def table(run: OfflineRun, key: str) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the last wandb.Table logged under `key` (its JSON file in the run's
    `files/` folder)."""
    logged = [h[key] for h in run.history if isinstance(h.get(key), dict)]
    if not logged:
        raise KeyError(f"no table logged under {key!r}")
    for f in reversed(run.files):
        p = f.parent / "files" / logged[-1]["path"]
        if p.exists():
            t = json.loads(p.read_text())
            return t["columns"], t["data"]
    raise FileNotFoundError(logged[-1]["path"])
