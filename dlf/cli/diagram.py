"""`python -m dlf.diagram <dir> [-o out.png]` (dlf-diagram): redraw phase.png of a dlf.phase or
dlf.aggregate directory from its phase.csv (e.g. after changing the plotting code)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from dlf.analysis.phase_table import read_csv
    from dlf.analysis.results import read_run
    from dlf.drive.phase_dir import title as phase_title
    from dlf.figures.phase import plot

    ap = argparse.ArgumentParser(prog="python -m dlf.diagram", description=__doc__.split("(dlf-diagram): ")[1])
    ap.add_argument("dir", type=Path)
    ap.add_argument("-o", "--out", type=Path, help="output file (default: <dir>/phase.png)")
    ap.add_argument("--unit-scale", action="store_true", help="colour scale 0-1 (default: fitted to the data)")
    args = ap.parse_args(argv)
    csv_path = args.dir / "phase.csv"
    if not csv_path.exists():
        print(f"dlf.diagram: error: {csv_path} does not exist (expected a dlf.phase or dlf.aggregate directory)",
              file=sys.stderr)
        return 2
    cfg = read_run(args.dir).config if (args.dir / "summary.json").exists() else None
    title = phase_title(cfg) if cfg is not None else args.dir.name
    out = args.out or args.dir / "phase.png"
    comparison, reading = None, None
    if (args.dir / "compare.csv").exists():
        from dlf.analysis import compare as cmp
        from dlf.outputs import read_csv as read_any

        comparison = read_any(args.dir / "compare.csv", ints=("T", "n", "wins", "ties", "losses", "family", "n_cell",
                                                            "n_base"), text_ok=True)
        reading = cmp.reading(cmp.verdict(comparison))
    try:
        rows = read_csv(csv_path)
    except ValueError as e:
        print(f"dlf.diagram: error: {e}; redraw from a phase.csv that dlf.phase or dlf.aggregate wrote",
              file=sys.stderr)
        return 2
    plot(out, rows, title, unit_scale=args.unit_scale, comparison=comparison, reading=reading)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
