"""`python -m dlf.stats`: the entry is dlf.cli.stats (the CLI entries live together in dlf/cli/)."""
from dlf.cli.stats import main

if __name__ == "__main__":
    raise SystemExit(main())
