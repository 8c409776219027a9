#!/usr/bin/env bash
# The full recipe: reproduces the shipped world model (vjepa2/assets/world_model) and the
# README's results table from nothing. Every step resumes or is skipped when run again.
#
#   bash scripts/recipe.sh [OUT]        (default OUT: runs/recipe)
#
# 1. Play logs in the `wide` scene variations (1300 episodes of 50 steps, 64 px; every held-out
#    value lies between wide values, none is shared): ~12 min on the 2-core development CPU.
# 2. Export them as one array file (36 MB, LZMA): ~2 min.
# 3. Training, two ways:
#    - on a GPU (how the shipped model was made): copy the array file to a machine with JAX and
#      run `ARRAYS=... bash scripts/gpu_train.sh` (pretraining 233 s + fine-tuning 197 s on one
#      H100: 4502 and 16701 steps at batch 128), then bring back its run folder;
#    - here, TRAIN_ON_CPU=1: the same two phases with the same step counts and batches on the
#      CPU (TensorFlow): days on 2 cores; set PRETRAIN_STEPS / FINETUNE_STEPS lower for a
#      smaller model.
# 4. Stop-rule calibration on the training logs: ~2 min.
# 5. Zero-shot evaluation in the held-out scenes, 4 tasks x 50 episodes with the random and
#    scripted-expert baselines: about 1 h 30 min on 2 cores. EVAL_EPISODES=10 makes a quicker check.
# `python scripts/ship_model.py "$OUT/train/world_model"` then installs the result as "shipped".
# VIEW=scene+wrist makes the same lineage with the wrist camera beside the scene camera
# (docs/grasp_visibility.md): twice the pixels per frame, so its array file is about twice as big.
set -euo pipefail
OUT=${1:-runs/recipe}
EPISODES=${EVAL_EPISODES:-50}
TASKS=${TASKS:-"reach grasp reach_with_object pick_and_place"}
VIEW=${VIEW:-scene}
TAG=$([ "$VIEW" = scene ] && echo "" || echo "_${VIEW/+/_}")
ARRAYS="$OUT/play_wide${TAG}_64.npz.xz"
mkdir -p "$OUT"

# 1. Robot play logs in the wide scene variations.
vjepa2 collect --task play --variation wide --episodes 1300 --workers 2 --image-size 64 \
    --seed 40000 --view "$VIEW" --out "$OUT/logs/play_wide$TAG"

# 2. One array file: whole episodes at the world model's frame stride (2 env steps per frame).
if [ ! -f "$ARRAYS" ]; then
    python scripts/export_arrays.py --logs "$OUT/logs/play_wide$TAG" --image-size 64 \
        --frame-stride 2 --out "$ARRAYS"
fi

# 3. V-JEPA 2 pretraining of the tiny encoder, then V-JEPA 2-AC fine-tuning (frozen encoder).
if [ ! -f "$OUT/train/summary.json" ]; then
    if [ -n "${TRAIN_ON_CPU:-}" ]; then
        python scripts/train_arrays.py --arrays "$ARRAYS" --out "$OUT/train" \
            --pretrain-steps "${PRETRAIN_STEPS:-4502}" --finetune-steps "${FINETUNE_STEPS:-16701}" \
            --pretrain-batch 128 --finetune-batch 128 --workers 2
    else
        echo "step 3: train on a GPU: ARRAYS=$ARRAYS bash scripts/gpu_train.sh," \
             "unpack its run.tar into $OUT/train and run this script again (or TRAIN_ON_CPU=1)"
        exit 1
    fi
fi

# 4. The planner's stop rule, calibrated on the training logs.
vjepa2 calibrate-stop --model "$OUT/train/world_model" --logs "$OUT/logs/play_wide$TAG"

# 5. Zero-shot evaluation in the held-out scenes, with the baselines in the same harness.
# Each task plans with its `default` preset (its best measured setting; `vjepa2 presets --task
# T`), and grasp and pick-and-place also with `reference_method` (the world model alone).
for task in $TASKS; do
    vjepa2 evaluate --model "$OUT/train/world_model" --task "$task" --variation heldout \
        --episodes "$EPISODES" --out "$OUT/eval/$task/planner"
    case "$task" in
        grasp|pick_and_place)
            vjepa2 evaluate --model "$OUT/train/world_model" --task "$task" --variation heldout \
                --episodes "$EPISODES" --preset reference_method \
                --out "$OUT/eval/$task/planner_reference_method" ;;
    esac
    for policy in random expert; do
        vjepa2 evaluate --policy "$policy" --task "$task" --variation heldout \
            --episodes "$EPISODES" --videos 0 --out "$OUT/eval/$task/$policy"
    done
done
python scripts/results_table.py "$OUT/eval"
