#!/usr/bin/env bash
# One GPU benchmark session (JAX backend, no TensorFlow needed): pretraining steps for the tiny
# and ViT-L presets in bf16, world-model rollout throughput and planning seconds per action.
# Results land in $OUT (or ./out). SKIP_TRAIN=1 skips the training steps.
#   KERAS_BACKEND=jax bash scripts/gpu_bench.sh
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-200}" python3 "$@" 2>&1 | grep -v -E "^(WARNING|I0000|E0000)" | tail -5; }
if [ -z "${SKIP_TRAIN:-}" ]; then
# The #15 bars: tiny pretraining (batch 128, 64 px) and AC fine-tuning steps/s through the
# device-resident loop, beside keras fit on host batches; ViT-L pretraining's share of the peak.
run scripts/bench_device_loop.py --compare-fit --matmul-size 8192 --json "$OUT/device_loop.json"
run scripts/bench_device_loop.py --preset large --resolution 256 --frames 16 --pretrain-batch 8 \
    --phases pretrain --steps-per-call 5 --calls 3 --matmul-size 8192 \
    --json "$OUT/device_loop_large.json"
run scripts/bench_train_step.py --preset large --resolution 256 --frames 16 --batch-size 8 \
    --steps 8 --precision mixed_bfloat16 --matmul-size 8192 --json "$OUT/train_large.json"
run scripts/bench_train_step.py --preset tiny --resolution 128 --frames 8 --batch-size 64 \
    --steps 8 --precision mixed_bfloat16 --matmul-size 8192 --json "$OUT/train_tiny.json"
fi
run scripts/bench_world_model.py --image-size 128 --candidates 256 --context 1 --repeats 10 \
    --out "$OUT/world_model.json"
run scripts/bench_plan.py --quick --out "$OUT/plan.json"
# The reference planner's budget (800 samples, 10 iterations, horizon 1) with a ViT-L encoder and
# the reference-size (24 x 1024) AC predictor on 256 px frames, float32.
run scripts/bench_plan.py --preset large --image-size 256 --frame-size 256 --budgets 800,10,1 \
    --samples --horizons --skip-comparison --repeats 3 --out "$OUT/plan_large.json"
