# dlf: `make run` trains the default experiment, `make test` runs the whole suite, `make test-fast`
# the quick tier (no CLI end-to-end runs).
# Both create .venv from pyproject.toml on first use (Python >= 3.11 as $(PYTHON)).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test test-fast bench docs figures clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed  ## the default experiment (narrow spiral, 8 seeds); extra overrides: make run ARGS='schedule.A=20'
	$(PY) -m dlf.train $(ARGS)

test: $(VENV)/.installed  ## the whole suite: math, config and end-to-end tiers (~20 min on 2 idle cores, SLURM tier included)
	$(PY) -m pytest -q tests

test-fast: $(VENV)/.installed  ## the quick tier: everything not marked slow (~1.5 min on 2 idle cores)
	$(PY) -m pytest -q -m "not slow" tests

docs: $(VENV)/.installed  ## regenerate docs/config.md from the code
	$(PY) -m dlf.config

bench: $(VENV)/.installed  ## engine, grid, cache, probe and CIFAR benchmarks; rewrite BENCHMARKS.md (~15 min on CPU)
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/phase.py
	$(PY) benchmarks/cache.py
	$(PY) benchmarks/probes.py
	$(PY) benchmarks/cifar.py

figures: $(VENV)/.installed  ## rerun Fig. 4, Fig. 5a-c and the Fig. 3 T=300 switch-off runs; rewrite their numbers in docs/ (~40 min on 2 shared CPU cores)
	$(PY) docs/figures.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
