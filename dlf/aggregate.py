"""`python -m dlf.aggregate`: the entry is dlf.cli.aggregate (the CLI entries live together in dlf/cli/)."""
from dlf.cli.aggregate import main

if __name__ == "__main__":
    raise SystemExit(main())
