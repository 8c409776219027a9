#!/usr/bin/env bash
# Does resolution make the gripper's opening readable from the encoder's latents?
# On a rented GPU (JAX, no TensorFlow): for each array file (the same play episodes exported
# at 64 and at 128 px), pretrain the tiny encoder for the same wall-clock budget, fine-tune the
# predictor for a few steps (only so that a world-model folder exists to load), then run
# scripts/gripper_probe.py on the frozen encoder. Results land in $OUT/probe_<size>.json.
#   ARRAYS="play_64.npz.xz play_128.npz.xz" PRETRAIN_STEPS=1500 bash scripts/gpu_probe_resolution.sh
# (PRETRAIN_STEPS: the same number of steps for every file; the default is a time budget,
# PRETRAIN_SECONDS, from which the first step's compilation is taken too.)
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
status=0
for arrays in ${ARRAYS:?set ARRAYS to the array files}; do
    name=$(basename "$arrays" .npz.xz)
    run=/tmp/probe_run_$name
    rm -rf "$run"
    if [ -n "${PRETRAIN_STEPS:-}" ]; then budget="--pretrain-steps $PRETRAIN_STEPS"
    else budget="--pretrain-seconds ${PRETRAIN_SECONDS:-120}"; fi
    python3 scripts/train_arrays.py --arrays "$arrays" --out "$run" $budget --finetune-steps 20 \
        --pretrain-batch "${PRETRAIN_BATCH:-64}" --finetune-batch 16 --probe-steps 20 \
        --workers 12 2>&1 | grep -v -E "^(I0000|W0000|E0000)" > "$OUT/train_$name.log" || status=1
    cp "$run/summary.json" "$OUT/summary_$name.json" 2>/dev/null
    python3 scripts/gripper_probe.py --model "$run/world_model" --arrays "$arrays" \
        --episodes "${EPISODES:-240}" --out "$OUT/probe_$name.json" 2>&1 \
        | grep -v -E "^(I0000|W0000|E0000)" | tee "$OUT/probe_$name.log" || status=1
done
exit "$status"
