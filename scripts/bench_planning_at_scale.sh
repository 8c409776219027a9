#!/usr/bin/env bash
# Planning at scale, measured in one run (run it on an idle machine): Meta's reference CEM
# iteration (../shared/bench/torch_ref.py), scripts/bench_plan.py (default, grasp-preset and
# notebook budgets), 16 reach episodes sequential and with --parallel 8, and the planner
# service (scripts/bench_serve.py). Figures: docs/planning_at_scale.md.
#   VJEPA2_REF=<reference tree> TORCH_PYTHON=<torch venv python> bash scripts/bench_planning_at_scale.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_planning_at_scale}; mkdir -p $OUT
uptime > $OUT/uptime_start.txt
VJEPA2_REF=${VJEPA2_REF:?the reference tree (../shared/bench/README.md)} BENCH_ITERS=5 BENCH_WARMUP=2 ${TORCH_PYTHON:-.torchref/bin/python} ../shared/bench/torch_ref.py > $OUT/torch_ref.jsonl 2> $OUT/torch_ref.err
python scripts/bench_plan.py --run vjepa2/assets/world_model --samples 64 --horizons 1 --budgets 64,4,1,paired --repeats 9 --comparison-repeats 3 --out $OUT/bench_plan.json > $OUT/bench_plan.log 2>&1
rm -rf $OUT/seq $OUT/par
python -m vjepa2 evaluate --task reach --episodes 16 --videos 0 --out $OUT/seq > $OUT/seq.log 2>&1
python -m vjepa2 evaluate --task reach --episodes 16 --videos 0 --parallel 8 --out $OUT/par > $OUT/par.log 2>&1
python scripts/bench_serve.py --clients 8 --plans 6 --bad 60 --out $OUT/bench_serve.json > $OUT/bench_serve.log 2>&1
uptime > $OUT/uptime_end.txt
echo DONE > $OUT/done
