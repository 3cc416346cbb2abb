"""`python -m dlf.diagram`: the entry is dlf.cli.diagram (the CLI entries live together in dlf/cli/)."""
from dlf.cli.diagram import main

if __name__ == "__main__":
    raise SystemExit(main())
