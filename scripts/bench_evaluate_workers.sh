#!/usr/bin/env bash
# An evaluation spread over worker processes, measured (run it on an idle machine): the same
# reach episodes (held out, shipped model, default preset) in one process, in 2 child-process
# workers and in 2 Ray workers (a local Ray started for the run; needs the ray extra). Prints
# each command's wall time (model load, Ray start and worker start-up included) and its
# successes; results.json files go to $OUT. Figures: docs/planning_at_scale.md.
#   EPISODES=16 bash scripts/bench_evaluate_workers.sh
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_evaluate_workers}
EPISODES=${EPISODES:-16}
mkdir -p "$OUT"
echo "start: $(uptime)" | tee "$OUT/uptime.txt"
for row in "sequential:" "processes2:--workers 2" "ray2:--workers 2 --engine ray"; do
    name=${row%%:*}
    rm -rf "${OUT:?}/$name"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086  # the flags are meant to split
    python -m vjepa2 evaluate --task reach --episodes "$EPISODES" --videos 0 \
        --out "$OUT/$name" ${row#*:} > "$OUT/$name.log" 2>&1
    t1=$(date +%s.%N)
    python - "$OUT/$name/results.json" "$name" "$t0" "$t1" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
wall = float(sys.argv[4]) - float(sys.argv[3])
print(f"{sys.argv[2]:>11}: command {wall:6.1f} s, in-run {results['wall_seconds_this_run']:6.1f} s, "
      f"{results['successes']}/{results['episodes']} successes, plan s/action median "
      f"{results['plan_seconds_per_action']['median']:.3f}")
EOF
done | tee "$OUT/summary.txt"
echo "end: $(uptime)" | tee -a "$OUT/uptime.txt"
