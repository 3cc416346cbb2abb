"""`python -m dlf.fig5 <multirun dir> [-o out dir]` (dlf-fig5): Fig. 5a, the curvature threshold
against the learning rate, fitted per width (dlf.analysis.fig5), and Fig. 5b/c from the A=1 jobs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from dlf.analysis.fig5 import describe, fig5

    ap = argparse.ArgumentParser(prog="python -m dlf.fig5", description=__doc__.split("(dlf-fig5): ")[1])
    ap.add_argument("sweep_dir", type=Path, nargs="+", help="multirun directories (outputs/multirun/<date>/<time>) "
                    "or dlf.phase directories with probes (e.g. one per width)")
    ap.add_argument("-o", "--out", type=Path, default=None, help="output directory (default: the first sweep_dir)")
    args = ap.parse_args(argv)
    try:
        groups, skipped = fig5(args.sweep_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"dlf.fig5: error: {e}", file=sys.stderr)
        return 2
    for job, why in skipped.items():
        print(f"  skipped: {job}: {why}")
    for g in groups:
        print(f"dlf.fig5: {describe(g)}")
    print(f"dlf.fig5: wrote {(args.out or args.sweep_dir[0]) / 'fig5.csv'} and fig5.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
