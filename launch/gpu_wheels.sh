#!/usr/bin/env bash
# Wheels that dlf needs and the GPU machine lacks, into .whl/ (git-ignored; carried by the device
# tool: carry [".whl"]). The machine has Python 3.12 with jax, flax, optax, matplotlib, numpy,
# pillow, pyyaml, packaging; it lacks hydra-core, omegaconf and antlr4-python3-runtime. All three
# are pure Python (~0.4 MB together). Run here, with PyPI access, from anywhere:
#   bash launch/gpu_wheels.sh [PYTHON]        # PYTHON: any python with pip (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python3}}
mkdir -p .whl
# the device tool's platform flags (its README): Python 3.12, CPython, manylinux x86-64
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl hydra-core==1.3.8 omegaconf==2.3.1
# hydra 1.3 pins antlr4-python3-runtime 4.9.*, of which PyPI has only a source archive: build its
# pure-Python wheel (py3-none-any) here.
[ -e .whl/antlr4_python3_runtime-4.9.3-py3-none-any.whl ] ||
    "$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -l .whl
du -sh .whl
