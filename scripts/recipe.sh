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
