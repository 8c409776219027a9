"""Prints the README's results table from evaluation folders.

    python scripts/results_table.py runs/recipe/eval

Reads `EVAL/<task>/<policy>/results.json` (as `scripts/recipe.sh` writes them) and prints one
Markdown row per task: successes / episodes with the Wilson 95% interval for the planner and the
baselines, the planner's median final distance, its stop reasons and seconds per action.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

POLICIES = ("planner", "random", "expert")


def cell(results: dict | None) -> str:
    if results is None:
        return "-"
    lo, hi = results["ci95"]
    return f"{results['successes']}/{results['episodes']} ({lo:.2f}-{hi:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", help="folder with <task>/<policy>/results.json")
    args = parser.parse_args()
    root = Path(args.eval_dir)
    print("| task | planner | random | expert | planner final distance (median) | "
          "stops (rule / budget) | s/action median (p95) |")
    print("|---|---|---|---|---|---|---|")
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        found = {}
        for policy in POLICIES:
            path = task_dir / policy / "results.json"
            found[policy] = json.loads(path.read_text()) if path.is_file() else None
        planner = found["planner"]
        distance = stops = seconds = "-"
        if planner is not None:
            distance = f"{planner['final_distance']['median']:.3f} m"
            reasons = planner["stop_reasons"]
            stops = f"{reasons.get('stop_energy', 0)} / {reasons.get('budget', 0)}"
            sec = planner["plan_seconds_per_action"]
            if sec["median"] is not None:
                seconds = f"{sec['median']:.2f} ({sec['p95']:.2f})"
        print(f"| {task_dir.name} | {cell(planner)} | {cell(found['random'])} | "
              f"{cell(found['expert'])} | {distance} | {stops} | {seconds} |")


if __name__ == "__main__":
    main()
