#!/usr/bin/env bash
# Issue 13's GPU check in one command on the GPU machine (benchmarks/gpu_check.py; estimated 4-6 min on one
# H200, budget 8). Before it, here: bash launch/gpu_wheels.sh (hydra-core, omegaconf, antlr4 into .whl/).
# Device tool call, from the repo root of the session's checkout (spell the sha out):
#   run(command="DLF_GIT_SHA=<git rev-parse --short HEAD> bash launch/gpu_check.sh", carry=[".whl"], timeout_s=600)
# Writes $OUT/gpu_check.json, $OUT/gpu_check.md (a BENCHMARKS.md section), $OUT/gpu_check.log
# (outputs/gpu_check/ when OUT is unset). Extra arguments go to the script (CPU test: --size tiny).
set -uo pipefail
DLF_JOB=gpu_check
source "$(dirname "$0")/device_env.sh"
LOG=$OUT/gpu_check.log
device_versions 2>&1 | tee "$LOG"
"$PY" benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
