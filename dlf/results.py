"""Public results API: `dlf.results.load(path)` -> pandas DataFrame of one schema (SCHEMA, then the
config keys that vary), `dlf.results.compare(df, baseline="A=1")` -> the paired comparisons (see
dlf.analysis.results and dlf.analysis.compare)."""
from dlf.analysis.results import (
                                  SCHEMA,
                                  ResultsError,
                                  RunResult,
                                  Sweep,
                                  compare,
                                  kind,
                                  load,
                                  read_run,
                                  read_sweep,
                                  records,
)

__all__ = ["SCHEMA", "ResultsError", "RunResult", "Sweep", "compare", "kind", "load", "read_run", "read_sweep",
           "records"]
