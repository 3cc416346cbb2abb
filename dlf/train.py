"""`python -m dlf.train`: the entry is dlf.cli.train (the CLI entries live together in dlf/cli/)."""
from dlf.cli.train import main

if __name__ == "__main__":
    main()
