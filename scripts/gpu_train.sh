#!/usr/bin/env bash
# Trains the world model on a rented GPU from an exported array file (JAX backend, no
# TensorFlow): V-JEPA 2 pretraining, then V-JEPA 2-AC fine-tuning, each within a time budget,
# with the device-resident loop (STEPS_PER_CALL steps per compiled call; 0: keras fit).
# The run comes back as run.tar (split into <= 15 MB parts under $OUT when needed).
#   ARRAYS=.gpu/play_wide_64.npz.xz bash scripts/gpu_train.sh
# Rejoin here with: cat run.tar.part-* > run.tar && tar xf run.tar
set -uo pipefail
OUT=${OUT:-out}
ARRAYS=${ARRAYS:-.gpu/play_wide_64.npz.xz}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
RUN=/tmp/gpu_run
python3 scripts/train_arrays.py --arrays "$ARRAYS" --out "$RUN" \
    --pretrain-seconds "${PRETRAIN_SECONDS:-230}" --finetune-seconds "${FINETUNE_SECONDS:-190}" \
    --pretrain-batch "${PRETRAIN_BATCH:-128}" --finetune-batch "${FINETUNE_BATCH:-128}" \
    --probe-steps "${PROBE_STEPS:-40}" --steps-per-call "${STEPS_PER_CALL:-50}" --workers 12 2>&1 | grep -v -E "^(I0000|W0000|E0000)" | tee "$OUT/train.log"
status=${PIPESTATUS[0]}
(cd "$RUN" && tar cf "$OUT/run.tar" world_model summary.json pretrain/config.json \
    pretrain/metrics.jsonl) || exit 1
size=$(stat -c %s "$OUT/run.tar")
if [ "$size" -gt 15000000 ]; then
    split -b 15000000 "$OUT/run.tar" "$OUT/run.tar.part-" && rm "$OUT/run.tar"
fi
ls -la "$OUT"
exit "$status"
