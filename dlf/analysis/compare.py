"""Paired comparisons of every cell of a grid or sweep against its baseline cell (compare.csv).

A seed is a network initialisation shared by every cell, so cell and baseline are compared seed
by seed: the mean paired difference of a final metric, its 95% interval, wins/ties/losses and n
over the seeds present (not diverged) in both. Cells that share no seed get Welch's unpaired
interval, labelled `unpaired`. The baseline is `key=value[,key=value]` (default `A=1`) with every
other key equal; A=1 is the ordinary loss at any T, so when no A=1 cell has the same T the A=1
cell of the smallest T stands in. Each metric's comparisons are one family: p-values are given
raw and Holm-adjusted, with the family size."""
from __future__ import annotations

from typing import Any

from dlf.analysis.stats import holm, paired, unpaired
from dlf.errors import ConfigError

METRICS = ("val_acc", "train_acc")
COLUMNS = ("metric", "baseline", "kind", "n", "diff", "lo", "hi", "ci95", "wins", "ties", "losses", "p", "p_holm",
           "family", "n_cell", "n_base")


def _value(text: str) -> Any:
    try:
        f = float(text)
    except ValueError:
        return text
    return int(f) if f.is_integer() and "." not in text and "e" not in text.lower() else f


def parse_baseline(text: str, keys: list[str]) -> dict[str, Any]:
    """`A=1` or `A=1,optimizer.lr=0.5` -> {key: value}; a key may be given by its last dotted
    component (`lr=0.5`) when that is unique among `keys` (the cell keys: A, T and what varies)."""
    out = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key or not value:
            raise ConfigError(f"baseline={text!r} is not allowed; expected key=value[,key=value] (e.g. A=1)")
        match = [k for k in keys if k == key] or [k for k in keys if k.rsplit(".", 1)[-1] == key]
        if len(match) != 1:
            raise ConfigError(f"baseline key {key!r} is not allowed; expected one of: {', '.join(keys)}")
        out[match[0]] = _value(value)
    if not out:
        raise ConfigError(f"baseline={text!r} is not allowed; expected key=value (e.g. A=1)")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def _cells(runs: list[dict], keys: list[str], metric: str) -> dict[tuple, dict[int, float]]:
    """cell (values of keys) -> {seed: metric} over runs that did not diverge."""
    cells: dict[tuple, dict[int, float]] = {}
    for r in runs:
        values = cells.setdefault(tuple(r[k] for k in keys), {})
        v = r.get(metric)
        if v is not None and v == v and not (r.get("diverged_step") is not None and r["diverged_step"] >= 0):
            values[int(r["seed"])] = float(v)
    return cells


def _baseline_of(cell: tuple, keys: list[str], base: dict[str, Any], cells: dict) -> tuple | None:
    want = tuple(base[k] if k in base else v for k, v in zip(keys, cell))
    for c in cells:
        if all(_same(a, b) for a, b in zip(c, want)):
            return c
    if "T" in keys and "T" not in base and base.get("A") is not None and float(base["A"]) == 1.0:
        t = keys.index("T")  # A=1 trains the same at any T: the A=1 cell of the smallest T
        alike = [c for c in cells if all(_same(a, b) for i, (a, b) in enumerate(zip(c, want)) if i != t)]
        return min(alike, key=lambda c: c[t]) if alike else None
    return None


def describe_baseline(base: dict[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in base.items())


def compare(runs: list[dict], keys: list[str], baseline: str = "A=1",
            metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """One row per (cell, metric) for every cell that is not a baseline cell and has one: the cell's
    keys, then COLUMNS. `runs`: runs.csv rows (keys, seed, metrics, diverged_step)."""
    base = parse_baseline(baseline, keys)
    out = []
    for metric in metrics:
        cells = _cells(runs, keys, metric)
        rows = []
        for cell, values in cells.items():
            if all(_same(cell[keys.index(k)], v) for k, v in base.items()):
                continue  # a baseline cell itself
            ref = _baseline_of(cell, keys, base, cells)
            if ref is None:
                continue
            ref_values = cells[ref]
            shared = sorted(set(values) & set(ref_values))
            stat = (paired([values[s] for s in shared], [ref_values[s] for s in shared]) if shared
                    else unpaired(list(values.values()), list(ref_values.values())))
            moved = "T" in keys and "T" not in base and ref[keys.index("T")] != cell[keys.index("T")]
            rows.append({**dict(zip(keys, cell)), "metric": metric,
                         "baseline": describe_baseline(base) + (f" (T={ref[keys.index('T')]})" if moved else ""),
                         **{k: stat.get(k) for k in ("kind", "n", "diff", "lo", "hi", "ci95", "wins", "ties",
                                                     "losses", "p")},
                         "n_cell": len(values), "n_base": len(ref_values)})
        for r, adj in zip(rows, holm([r["p"] for r in rows])):
            r["p_holm"], r["family"] = adj, len(rows)
        out += rows
    return out


def verdict(rows: list[dict], metric: str = "val_acc", baseline: str | None = None) -> dict[str, Any]:
    """What the comparison says for `metric`: the family size, how many cells are better / worse
    than their baseline at 95% (interval above / below 0; and after Holm), and the best cell by the
    lower bound of its difference (mean and interval beside it)."""
    rs = [r for r in rows if r["metric"] == metric]
    baseline = baseline or (rs[0]["baseline"].split(" (")[0] if rs else "A=1")
    with_ci = [r for r in rs if r["lo"] is not None]
    best = max(with_ci, key=lambda r: (r["lo"], r["diff"])) if with_ci else None
    return {"baseline": baseline, "metric": metric, "comparisons": len(rs),
            "better": sum(r["lo"] is not None and r["lo"] > 0 for r in rs),
            "worse": sum(r["hi"] is not None and r["hi"] < 0 for r in rs),
            "better_holm": sum(r["p_holm"] is not None and r["p_holm"] < 0.05 and r["diff"] > 0 for r in rs),
            "best": best}


def reading(v: dict[str, Any]) -> str:
    """The one-line reading of a verdict: `k of m cells better than A=1 at 95% (j after Holm), w worse`."""
    if not v["comparisons"]:
        return f"no cell has a {v['baseline']} baseline to compare with"
    return (f"{v['better']} of {v['comparisons']} cells better than {v['baseline']} in {v['metric']} at 95% "
            f"({v['better_holm']} after Holm's adjustment for {v['comparisons']} comparisons), {v['worse']} worse")
