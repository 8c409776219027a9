#!/usr/bin/env bash
# The full recipe: reproduces the shipped world model (vjepa2/assets/world_model) and the
# README's results table from nothing. Every step resumes when the script is run again.
#
#   bash scripts/recipe.sh [OUT]        (default OUT: runs/recipe)
#
# Wall time on the 2-core development CPU: logs ~6 min, pretraining ~11 min, fine-tuning
# ~30 min, stop-rule calibration ~1 min, evaluation ~1 h 20 min for the four tasks (planner,
# 50 episodes each) plus ~4 min of baselines. EVAL_EPISODES=10 makes a quicker check.
set -euo pipefail
OUT=${1:-runs/recipe}
EPISODES=${EVAL_EPISODES:-50}
TASKS=${TASKS:-"reach grasp reach_with_object pick_and_place"}
mkdir -p "$OUT"

# 1. Robot play logs in the train scenes (520 episodes of 50 steps, 128 px, with videos).
vjepa2 collect --task play --variation train --episodes 120 --workers 2 --videos --seed 0 \
    --out "$OUT/logs/play_a"
vjepa2 collect --task play --variation train --episodes 400 --workers 2 --videos --seed 20000 \
    --out "$OUT/logs/play_b"

# 2. Generic generated videos (textured moving shapes) for variety in pretraining.
[ -d "$OUT/videos/synthetic" ] || vjepa2 make-videos --out "$OUT/videos/synthetic" --count 300 \
    --frames 48 --size 64 --seed 0
{
    echo path
    find "$OUT/logs/play_b/videos" "$OUT/logs/play_a/videos" "$OUT/videos/synthetic" \
        -name '*.mp4' | sort
} > "$OUT/pretrain_videos.csv"

# 3. V-JEPA 2 pretraining of the tiny encoder (64 px, 8 frames at 8 fps).
vjepa2 pretrain --preset tiny --videos "$OUT/pretrain_videos.csv" --steps 1500 --frames 8 \
    --fps 8 --resolution 64 --batch-size 8 --checkpoint-every 250 --out "$OUT/pretrain" --resume

# 4. V-JEPA 2-AC fine-tuning (frozen encoder; one frame step = 2 env steps; per-clip colour and
#    viewpoint augmentation).
vjepa2 finetune-ac --encoder "$OUT/pretrain" --logs "$OUT/logs/play_b" --image-size 64 \
    --frame-stride 2 --steps 3000 --batch-size 16 --augment --checkpoint-every 250 \
    --out "$OUT/world_model" --resume

# 5. The planner's stop rule, calibrated on the training logs.
vjepa2 calibrate-stop --model "$OUT/world_model" --logs "$OUT/logs/play_b"

# 6. Zero-shot evaluation in the held-out scenes, with the baselines in the same harness.
for task in $TASKS; do
    vjepa2 evaluate --model "$OUT/world_model" --task "$task" --variation heldout \
        --episodes "$EPISODES" --out "$OUT/eval/$task/planner"
    for policy in random expert; do
        vjepa2 evaluate --policy "$policy" --task "$task" --variation heldout \
            --episodes "$EPISODES" --videos 0 --out "$OUT/eval/$task/$policy"
    done
done
python scripts/results_table.py "$OUT/eval"
