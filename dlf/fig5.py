"""`python -m dlf.fig5`: the entry is dlf.cli.fig5 (the CLI entries live together in dlf/cli/)."""
from dlf.cli.fig5 import main

if __name__ == "__main__":
    raise SystemExit(main())
