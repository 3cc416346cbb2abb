"""`python -m dlf.diagram <dir> [-o out.png]`: redraw phase.png of a dlf.phase or dlf.aggregate
directory from its phase.csv (e.g. after changing the plotting code)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from dlf.analysis.phase_table import read_csv
    from dlf.figures.phase import plot

    ap = argparse.ArgumentParser(prog="python -m dlf.diagram", description=__doc__.split(":", 1)[1].strip())
    ap.add_argument("dir", type=Path)
    ap.add_argument("-o", "--out", type=Path, help="output file (default: <dir>/phase.png)")
    ap.add_argument("--unit-scale", action="store_true", help="colour scale 0-1 (default: fitted to the data)")
    args = ap.parse_args(argv)
    csv_path = args.dir / "phase.csv"
    if not csv_path.exists():
        print(f"dlf.diagram: error: {csv_path} does not exist (expected a dlf.phase or dlf.aggregate directory)",
              file=sys.stderr)
        return 2
    title = args.dir.name
    if (args.dir / "summary.json").exists():
        from dlf.config import from_dict
        from dlf.drive.grid import title as phase_title

        title = phase_title(from_dict(json.loads((args.dir / "summary.json").read_text())["config"]))
    out = args.out or args.dir / "phase.png"
    plot(out, read_csv(csv_path), title, unit_scale=args.unit_scale)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
