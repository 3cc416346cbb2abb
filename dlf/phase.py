"""`python -m dlf.phase`: the entry is dlf.cli.phase (the CLI entries live together in dlf/cli/)."""
from dlf.cli.phase import main

if __name__ == "__main__":
    main()
