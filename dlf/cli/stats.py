"""`python -m dlf.stats <dir> [--baseline A=1] [--metric val_acc]` (dlf-stats): the paired
comparison of every cell of a results directory (a dlf.phase grid, a sweep of jobs, before or after
dlf.aggregate) with its baseline cell: mean difference, 95% interval, wins/ties/losses, n, p raw
and Holm-adjusted for the family of comparisons."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def table(cmp, metric: str) -> list[str]:
    """The comparison rows of `metric` as aligned text lines."""
    keys = [c for c in cmp.columns if c not in ("metric", "baseline", "kind", "n", "diff", "lo", "hi", "ci95", "wins",
                                                "ties", "losses", "p", "p_holm", "family", "n_cell", "n_base")]
    rows = cmp[cmp.metric == metric]
    head = f"{'cell':<28} {'n':>3}  {'difference (95% CI)':<32} {'w/t/l':>9} {'p':>8} {'p Holm':>8}  kind"
    lines = [head, "-" * len(head)]
    for d in rows.to_dict("records"):
        short = {k: k.rsplit(".", 1)[-1] for k in keys}
        cell = " ".join(f"{short[k]}={d[k]:g}" if isinstance(d[k], float) else f"{short[k]}={d[k]}" for k in keys)
        ci = f"[{d['lo']:+.4f}, {d['hi']:+.4f}]" if d["lo"] == d["lo"] and d["lo"] is not None else "[n < 2]"
        wtl = f"{int(d['wins'])}/{int(d['ties'])}/{int(d['losses'])}" if d["kind"] == "paired" else "-"
        p = lambda v: f"{v:.2g}" if v == v and v is not None else "-"  # noqa: E731
        lines.append(f"{cell:<28} {int(d['n']):>3}  {d['diff']:+.4f} {ci:<24} {wtl:>9} {p(d['p']):>8} "
                     f"{p(d['p_holm']):>8}  {d['kind']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dlf.stats", description=__doc__.split("(dlf-stats): ")[1])
    ap.add_argument("dir", type=Path, help="a dlf.phase directory or a multirun sweep directory")
    ap.add_argument("--baseline", default="A=1", help="key=value[,key=value] of the baseline cell (default A=1)")
    ap.add_argument("--metric", default="val_acc", choices=("val_acc", "train_acc"), help="default val_acc")
    args = ap.parse_args(argv)
    import dlf.results
    from dlf.analysis import compare as cmp_lib
    from dlf.errors import ConfigError

    try:
        df = dlf.results.load(args.dir)
        cmp = dlf.results.compare(df, baseline=args.baseline, metrics=(args.metric,))
    except (ConfigError, ValueError) as e:
        print(f"dlf.stats: error: {e}", file=sys.stderr)
        return 2
    rows = cmp.to_dict("records")
    print(f"dlf.stats: {args.dir}: {len(df)} run(s), {len(rows)} comparison(s) of {args.metric} with {args.baseline} "
          "(paired by seed: each seed is one initialisation shared by every cell)")
    if rows:
        print("\n".join(table(cmp, args.metric)))
    print(f"dlf.stats: {cmp_lib.reading(cmp_lib.verdict(rows, args.metric, args.baseline))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
