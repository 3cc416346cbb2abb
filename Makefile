# dlf: `make run` trains the default experiment, `make test` runs the whole suite, `make test-fast`
# the quick tier (no CLI end-to-end runs), `make lint` checks the code with ruff.
# Each creates .venv from pyproject.toml on first use (Python >= 3.11 as $(PYTHON)): `make run`
# installs only what the run needs, the test and lint targets add the `dev` extra.
# The install is editable in setuptools' compat mode (a path entry, not an import hook), so that a
# clone directory named `dlf` never shadows the package when commands run from its parent.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PIP_EDITABLE := -m pip install --quiet --config-settings editable_mode=compat -e

.PHONY: run test test-fast lint bench docs figures studies clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) $(PIP_EDITABLE) .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PY) $(PIP_EDITABLE) '.[dev]'
	touch $@

run: $(VENV)/.installed  ## the default experiment (narrow spiral, 8 seeds); extra overrides: make run ARGS='schedule.A=20'
	$(PY) -m dlf.train $(ARGS)

test: $(VENV)/.dev  ## the whole suite: math, config and end-to-end tiers, SLURM tier included
	$(PY) -m pytest -q -n 2 --dist worksteal tests

test-fast: $(VENV)/.dev  ## the quick tier: everything not marked slow
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" tests

lint: $(VENV)/.dev  ## ruff (configured in pyproject.toml)
	$(PY) -m ruff check dlf tests benchmarks docs launch

docs: $(VENV)/.dev  ## regenerate docs/config.md from the code
	$(PY) -m dlf.config --write

bench: $(VENV)/.dev  ## engine, init, setup-cost, grid, cache, probe, probe-run and CIFAR benchmarks; rewrite BENCHMARKS.md (~20 min on CPU)
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/init.py
	$(PY) benchmarks/setup_costs.py
	$(PY) benchmarks/phase.py
	$(PY) benchmarks/cache.py
	$(PY) benchmarks/probes.py
	$(PY) benchmarks/probe_runs.py
	$(PY) benchmarks/cifar.py

figures: $(VENV)/.dev  ## rerun Fig. 4, Fig. 5a-c and the Fig. 3 T=300 switch-off runs; rewrite their numbers in docs/ (~40 min on 2 shared CPU cores)
	$(PY) docs/figures.py $(ARGS)

studies: $(VENV)/.dev  ## the paper's open questions (docs/studies.md): Fig. 3 at 50/16 seeds, validation sets, widths, inits, controls, threshold (~1 h on 2 CPU cores)
	$(PY) docs/studies.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
