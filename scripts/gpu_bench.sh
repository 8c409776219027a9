#!/usr/bin/env bash
# One GPU benchmark session (JAX backend, no TensorFlow needed): pretraining steps for the tiny
# and ViT-L presets in bf16, and world-model rollout throughput. Results land in $OUT (or ./out).
#   KERAS_BACKEND=jax bash scripts/gpu_bench.sh
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-200}" python3 "$@" 2>&1 | grep -v -E "^(WARNING|I0000|E0000)" | tail -5; }
run scripts/bench_train_step.py --preset large --resolution 256 --frames 16 --batch-size 8 \
    --steps 8 --precision mixed_bfloat16 --matmul-size 8192 --json "$OUT/train_large.json"
run scripts/bench_train_step.py --preset tiny --resolution 128 --frames 8 --batch-size 64 \
    --steps 8 --precision mixed_bfloat16 --matmul-size 8192 --json "$OUT/train_tiny.json"
run scripts/bench_world_model.py --image-size 128 --candidates 256 --context 1 --repeats 10 \
    --out "$OUT/world_model.json"
if [ -f scripts/bench_plan.py ]; then
  run scripts/bench_plan.py --quick --out "$OUT/plan.json"
fi
