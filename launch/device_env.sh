# Sourced by the GPU-machine scripts (launch/gpu_check.sh, launch/fig1_gpu.sh): cd to the repo root,
# set PY and OUT (the device tool's $OUT, else outputs/<name>), install the carried wheels of .whl/
# (launch/gpu_wheels.sh) into a temporary site dir and put it and the repo on PYTHONPATH.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-outputs/${DLF_JOB:-device}}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then  # the device lacks hydra-core, omegaconf, antlr4
    SITE=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || exit 1
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

device_versions() {  # one line of versions, to the start of a log
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import sys, jax, flax, optax, hydra, omegaconf; print('python', sys.version.split()[0], '| jax', jax.__version__, jax.devices(), '| flax', flax.__version__, '| optax', optax.__version__, '| hydra', hydra.__version__, '| omegaconf', omegaconf.__version__)"
}
