"""Public results API: `dlf.results.load(path)` -> pandas DataFrame (see dlf.analysis.results)."""
from dlf.analysis.results import RunResult, Sweep, load, read_run, read_sweep, records

__all__ = ["RunResult", "Sweep", "load", "read_run", "read_sweep", "records"]
