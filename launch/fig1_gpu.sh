#!/usr/bin/env bash
# Issue 14: the two Fig. 1 runs (experiment=fig1_myrtle5_cifar10, A=1 and A=50 T=100, 700 epochs)
# on the GPU machine in one command, on the JPEG copy of CIFAR-10 (../shared/data, README there).
#
# 1. Here, once, from the repo root (PyPI and ../shared/data reachable):
#      bash launch/gpu_wheels.sh              # hydra-core, omegaconf, antlr4 -> .whl/ (0.4 MB)
#      bash launch/fig1_gpu.sh prepare        # cifar10_jpeg.npz + its decoder -> .cifar10/ (53 MiB)
#    The decoded cifar-10-batches-py is ~180 MB, over the device tool's 64 MiB, so the JPEG archive
#    travels and is decoded there (~10-20 s).
# 2. Device tool call (spell the sha out):
#      run(command="DLF_GIT_SHA=<git rev-parse --short HEAD> bash launch/fig1_gpu.sh",
#          carry=[".whl", ".cifar10"], timeout_s=600)
#    It decodes the data, times FIG1_TIME_EPOCHS epochs, extrapolates to 700, then trains the runs
#    of FIG1_RUNS (default "A1 A50_T100") one after another while the estimate fits in
#    FIG1_BUDGET_S (default 540 s from the start); if A=1 diverged and time is left, A=1 again with
#    model.parameterization=ntk (A1_ntk). A run that does not fit is skipped and named in the log:
#    run it in a second command with FIG1_RUNS="A50_T100" (say) and FIG1_TIME_EPOCHS=0.
#    Results in $OUT (3 files): fig1_runs.tar.gz (runs/<name>/ with metrics.jsonl, summary.json,
#    config.yaml, dynamics.png; rewritten after each run), fig1_timing.json, fig1_gpu.log.
# 3. Here: tar xzf <files_at>/fig1_runs.tar.gz -C outputs/fig1_gpu &&
#      python benchmarks/fig1_report.py outputs/fig1_gpu/runs/* --commit <sha> --timing <files_at>/fig1_timing.json
#    writes docs/fig1.md and docs/fig1.png.
# Env: CIFAR10_DIR (a decoded cifar-10-batches-py: skips decoding), FIG1_OVERRIDES (extra Hydra
# overrides for every run, e.g. the CPU test's tiny sizes), PYTHON, OUT.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
    SRC=${FIG1_JPEG_DIR:-../shared/data}
    mkdir -p .cifar10
    install -m 0644 "$SRC/cifar10_jpeg.npz" "$SRC/cifar10_jpeg_to_batches.py" .cifar10/
    du -sh .cifar10
    exit 0
fi

DLF_JOB=fig1_gpu
source launch/device_env.sh
LOG=$OUT/fig1_gpu.log
T0=$(date +%s)
BUDGET=${FIG1_BUDGET_S:-540}
RUNS_DIR=${FIG1_WORK:-$(mktemp -d)}/runs
mkdir -p "$RUNS_DIR"
device_versions 2>&1 | tee "$LOG"
say() { echo "fig1_gpu: $*" | tee -a "$LOG"; }
elapsed() { echo $(( $(date +%s) - T0 )); }

DATA=${CIFAR10_DIR:-}
if [ -z "$DATA" ]; then
    DECODED=$(mktemp -d)
    trap 'rm -rf "$DECODED"' EXIT  # ~180 MB
    DATA=$DECODED/cifar-10-batches-py
    say "decoding .cifar10/cifar10_jpeg.npz -> $DATA"
    "$PY" .cifar10/cifar10_jpeg_to_batches.py "$DATA" 2>&1 | tee -a "$LOG" || exit 1
fi

declare -A ARGS=([A1]="schedule.A=1" [A50_T100]="schedule.A=50 schedule.T=100"
                 [A1_ntk]="schedule.A=1 model.parameterization=ntk")
# shellcheck disable=SC2086
train() {  # train DIR [overrides...]: one dlf.train run of the Fig. 1 protocol into DIR (later overrides win)
    local dir=$1; shift
    "$PY" -m dlf.train experiment=fig1_myrtle5_cifar10 dataset.source=local "dataset.path=$DATA" \
        checkpoint.every_epochs=0 "compile_cache=$RUNS_DIR/../jax_cache" "hydra.run.dir=$dir" \
        ${FIG1_OVERRIDES:-} "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}
summary() { "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# Time a few epochs: compile + per-epoch cost -> the estimate of one full run (EPOCHS epochs).
TIME_EPOCHS=${FIG1_TIME_EPOCHS:-4}
EPOCHS=${FIG1_EPOCHS:-700}
EST=0
if [ "$TIME_EPOCHS" -gt 0 ]; then
    say "timing $TIME_EPOCHS epochs (A=50 T=100)"
    S=$RUNS_DIR/../timing/summary.json
    # shellcheck disable=SC2086
    t=$(date +%s)
    # (no warm-up: the protocol's 300 epochs would outlast the timing run, which dlf refuses; the
    # speed does not depend on the learning rate)
    train "$RUNS_DIR/../timing" ${ARGS[A50_T100]} train.log_every=2 "train.epochs=$TIME_EPOCHS" \
        optimizer.warmup_epochs=0 || exit 1
    WALL=$(( $(date +%s) - t ))
    # the process's whole wall (start, data, compile, outputs) plus the other epochs at the timed rate;
    # evaluation every 2 epochs instead of 10 makes it an overestimate
    EST=$(summary "$S" "round($WALL + s['train_s'] * ($EPOCHS / $TIME_EPOCHS - 1))")
    say "estimate per ${EPOCHS}-epoch run: ${EST} s (process ${WALL} s, compile" \
        "$(summary "$S" "round(s['compile_s'], 1)") s, $(summary "$S" "round(s['train_s'] / $TIME_EPOCHS, 3)")" \
        "s/epoch with evaluation every 2 epochs)"
    summary "$S" "json.dumps(s | {'process_wall_s': $WALL, 'estimate_s_per_run': $EST, 'epochs_per_run': $EPOCHS})" \
        > "$OUT/fig1_timing.json"
fi

pack() { tar czf "$OUT/fig1_runs.tar.gz" -C "$RUNS_DIR/.." runs; }
fits() { [ $(( $(elapsed) + EST )) -le "$BUDGET" ]; }
DONE=()
for name in ${FIG1_RUNS:-A1 A50_T100}; do
    if ! fits; then say "SKIPPED $name: ${EST} s estimated, $(( BUDGET - $(elapsed) )) s left of ${BUDGET} s;" \
        "run it in another command: FIG1_RUNS=$name FIG1_TIME_EPOCHS=0"; continue; fi
    say "run $name (${ARGS[$name]}) at $(elapsed) s"
    # shellcheck disable=SC2086
    train "$RUNS_DIR/$name" ${ARGS[$name]}
    say "run $name finished with exit code $? at $(elapsed) s"
    DONE+=("$name")
    pack
done
if [ -f "$RUNS_DIR/A1/summary.json" ] && [ "$(summary "$RUNS_DIR/A1/summary.json" "s['status']")" = diverged ]; then
    if fits; then
        say "A=1 diverged: run A1_ntk (model.parameterization=ntk) at $(elapsed) s"
        # shellcheck disable=SC2086
        train "$RUNS_DIR/A1_ntk" ${ARGS[A1_ntk]}
        DONE+=(A1_ntk)
        pack
    else
        say "A=1 diverged; no time left for A1_ntk: run it with FIG1_RUNS=A1_ntk FIG1_TIME_EPOCHS=0"
    fi
fi
say "done: ${DONE[*]:-no run} in $(elapsed) s"
