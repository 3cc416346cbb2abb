"""Typed configs: frozen dataclasses whose fields carry their allowed range, built and checked
from a plain mapping with one-line errors that name the key (STYLE 8)."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from dlf.errors import ConfigError

INT32_MAX = 2**31 - 1  # steps, periods and seeds travel as int32 / uint32 inside compiled code


def setting(default: Any, *, low: float | None = None, gt: float | None = None, high: float | None = None,
            lt: float | None = None, choices: tuple[str, ...] | None = None, doc: str = "") -> Any:
    """A dataclass field carrying its allowed range or choices (checked when built). Integers are
    bounded by int32 unless `high` says otherwise."""
    return field(default=default, metadata=dict(low=low, gt=gt, high=high, lt=lt, choices=choices, doc=doc))


def variant(registry, default_name: str, doc: str = "") -> Any:
    """A group whose dataclass is chosen by its `name` key from `registry` (model, dataset, ...):
    keys of another variant are rejected."""
    return field(default_factory=lambda: registry.config_of(default_name)(),
                 metadata=dict(registry=registry, doc=doc))


def named_groups(registry, doc: str = "") -> Any:
    """A group of sub-groups, one per registered name (probes.<name>.*), each with its own config."""
    return field(default_factory=lambda: {n: registry.config_of(n)() for n in registry.names()},
                 metadata=dict(registry=registry, groups=True, doc=doc))


def allowed(typ: str, meta: Mapping[str, Any]) -> str:
    """What a field accepts, in words (also used for the README's configuration table)."""
    if meta.get("choices"):
        return "one of: " + ", ".join(meta["choices"])
    if typ.startswith("str"):
        return "a string"
    if typ == "bool":
        return "true or false"
    kind = "an integer" if typ.startswith("int") else "a number"
    lo = meta.get("low")
    hi = meta.get("high")
    if typ.startswith("int") and hi is None:
        hi = INT32_MAX
    parts = []
    if lo is not None:
        parts.append(f">= {lo:g}")
    if meta.get("gt") is not None:
        parts.append(f"> {meta['gt']:g}")
    if meta.get("lt") is not None:
        parts.append(f"< {meta['lt']:g}")
    if hi is not None:
        parts.append(f"<= {hi:d}" if isinstance(hi, int) else f"<= {hi:g}")
    return f"{kind} {' and '.join(parts)}".strip()


def type_name(t: Any) -> str:
    """A field's type as written ("int | None"), whether or not its module postpones annotations."""
    if isinstance(t, str):
        return t
    return t.__name__ if isinstance(t, type) and not getattr(t, "__args__", None) else str(t).replace("typing.", "")


def _leaf(key: str, value: Any, f: dataclasses.Field) -> Any:
    """Convert and range-check one leaf, or raise a ConfigError naming the key."""
    typ, meta = type_name(f.type), f.metadata
    if meta.get("choose") is not None:  # a choice among a registry's names
        meta = {**meta, "choices": meta["choose"].names()}
    if typ.startswith("tuple["):
        return _tuple_leaf(key, value, typ, meta)
    bad = ConfigError(f"{key}={value!r} is not allowed; expected {allowed(typ, meta)}")
    if value is None:
        if typ.endswith("| None"):
            return None
        raise bad
    if typ == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if typ.startswith("str"):
        if not isinstance(value, str) or (meta.get("choices") and value not in meta["choices"]):
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    if typ.startswith("int"):
        if isinstance(value, float) and not value.is_integer():
            raise bad
        value = int(value)
        if value > (meta.get("high") if meta.get("high") is not None else INT32_MAX):
            raise bad
    else:
        value = float(value)
    if ((meta.get("low") is not None and value < meta["low"])
            or (meta.get("gt") is not None and not value > meta["gt"])
            or (meta.get("lt") is not None and not value < meta["lt"])
            or (meta.get("high") is not None and value > meta["high"])):
        raise bad
    return value


def _tuple_leaf(key: str, value: Any, typ: str, meta: Mapping[str, Any]) -> tuple | None:
    """A list of leaves of one type (`tuple[int, ...]`), each checked like a scalar."""
    item_typ = typ[len("tuple["):typ.index(",")]
    if value is None and typ.endswith("| None"):
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or (
            meta.get("low") is not None and not value):
        noun = "strings" if item_typ == "str" else (
            allowed(item_typ, meta).replace("a number", "numbers").replace("an integer", "integers"))
        raise ConfigError(f"{key}={value!r} is not allowed; expected a list of {noun}")
    item = dataclasses.field(metadata=meta)
    item.type = item_typ
    return tuple(_leaf(f"{key}[{i}]", v, item) for i, v in enumerate(value))


def _group(key: str, value: Any) -> Mapping[str, Any]:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a group of keys, got {value!r}")
    return value


def build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """A validated instance of dataclass `cls` from `data`; missing keys take their defaults."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"unknown key {prefix}{unknown[0]}; keys of {where}: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        f, key = fields[name], prefix + name
        reg = f.metadata.get("registry")
        if reg is not None and f.metadata.get("groups"):
            value = _group(key, value)
            out = {n: reg.config_of(n)() for n in reg.names()}
            for sub, sub_value in value.items():
                if sub not in reg:
                    raise ConfigError(f"unknown key {key}.{sub}; keys of {key}: {', '.join(reg.names())}")
                out[sub] = build(reg.config_of(sub), _group(f"{key}.{sub}", sub_value), f"{key}.{sub}.")
            kwargs[name] = out
        elif reg is not None:
            value = _group(key, value)
            variant_name = value.get("name", f.default_factory().name)
            kwargs[name] = build(reg.config_of(variant_name) if isinstance(variant_name, str)
                                 else reg.config_of(str(variant_name)), value, key + ".")
        elif f.default_factory is not dataclasses.MISSING:  # a nested group of one type
            kwargs[name] = build(f.default_factory, _group(key, value), key + ".")
        else:
            kwargs[name] = _leaf(key, value, f)
    return cls(**kwargs)


def keys_of(cls: type, path: str) -> list[str] | None:
    """Allowed keys of a section of `cls` ('' = top level, 'schedule', ...), or None if unknown.
    Variant groups list the keys of their default variant."""
    for part in [p for p in path.split(".") if p]:
        f = {f.name: f for f in dataclasses.fields(cls)}.get(part)
        if f is None or f.default_factory is dataclasses.MISSING:
            return None
        if f.metadata.get("groups"):
            return list(f.metadata["registry"].names())
        if f.metadata.get("registry") is not None:
            return None  # a variant group: its keys depend on the chosen variant
        cls = type(f.default_factory())
    return [f.name for f in dataclasses.fields(cls)]


def _describe(typ: str, meta: Mapping[str, Any]) -> str:
    opt = typ.endswith("| None")
    typ = typ.replace(" | None", "")
    if typ.startswith("tuple["):
        item = typ[len("tuple["):typ.index(",")]
        text = "a list of " + ("strings" if item == "str" else
                               allowed(item, meta).replace("a number", "numbers").replace("an integer", "integers"))
    else:
        text = allowed(typ, meta)
    return ("null or " if opt else "") + text.replace(f"<= {INT32_MAX:g}", "<= 2^31-1")


def reference(cls: type, prefix: str = "", variant_name: str = "") -> list[tuple[str, ...]]:
    """(key, variant, default, allowed, meaning) of every key of dataclass `cls`; a variant
    group's keys once per registered variant: the configuration reference (docs/config.md)."""
    import json

    out = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        reg = f.metadata.get("registry")
        if reg is not None and f.metadata.get("groups"):
            for name in reg.names():
                out += reference(reg.config_of(name), f"{key}.{name}.", variant_name)
        elif reg is not None:
            out.append((key + ".name", "", json.dumps(f.default_factory().name), "one of: " + ", ".join(reg.names()),
                        f.metadata.get("doc", "")))
            for name in reg.names():
                out += [r for r in reference(reg.config_of(name), key + ".", name) if r[0] != key + ".name"]
        elif f.default_factory is not dataclasses.MISSING:
            out += reference(f.default_factory, key + ".", variant_name)
        else:
            meta = dict(f.metadata)
            if meta.get("choose") is not None:
                meta["choices"] = meta["choose"].names()
            default = json.dumps(list(f.default) if isinstance(f.default, tuple) else f.default)
            out.append((key, variant_name, default, _describe(type_name(f.type), meta), meta.get("doc", "")))
    return out


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| key | variant | default | allowed | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{k}` | {v} | `{d}` | {a} | {m} |" for k, v, d, a, m in rows]
    return "\n".join(lines)
