"""Replays stop rules offline on planner episodes that ran without one (`--stop-energy 0`).

A stop rule only decides *when* an episode ends: the planner's actions up to that moment do not
depend on it, so on episodes recorded to their full budget every rule "stop at the first
re-plan where the last `k` observed latent distances to the goal are all <= T" can be replayed
exactly: success is the simulator's distance at that moment (read from the record, never by
the planner). The script prints, for each `k`, the success rate over a grid of thresholds, and
the threshold that maximizes it (ties: the largest).

    vjepa2 evaluate --task reach --variation wide --seed 3000 --episodes 20 --stop-energy 0 \
        --out runs/eval/reach_wide_nostop
    python scripts/stop_rule_analysis.py runs/eval/reach_wide_nostop --consecutive 1 2 3
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SUCCESS_THRESHOLD = 0.05


def load_episodes(folder: Path) -> list[dict]:
    path = folder / "episodes.jsonl"
    if not path.is_file():
        raise SystemExit(f"stop_rule_analysis: error: no episodes.jsonl in {folder}")
    episodes = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    stopped = [e["seed"] for e in episodes if e["stop_reason"] == "stop_energy"]
    if stopped:
        raise SystemExit(f"stop_rule_analysis: error: episodes {stopped[:5]} in {folder} ended "
                         "on a stop rule; replay needs episodes run to their budget "
                         "(--stop-energy 0)")
    return episodes


def trajectory(episode: dict) -> tuple[np.ndarray, np.ndarray]:
    """Observed energies and simulator distances at each re-plan, plus the final frame."""
    energies = np.array(episode["energies"]["observed"] + [episode["energies"]["final"]])
    stride = episode["env_steps"] // max(episode["steps"], 1)
    distances = np.asarray(episode["distance"])[::stride][:len(energies)]
    return energies, distances


def replay(episodes, threshold: float, consecutive: int) -> float:
    """Success rate of the rule over the episodes."""
    wins = 0
    for episode in episodes:
        energies, distances = trajectory(episode)
        stop = len(energies) - 1  # no stop: the end of the budget
        for t in range(consecutive - 1, len(energies)):
            if np.all(energies[t - consecutive + 1:t + 1] <= threshold):
                stop = t
                break
        wins += bool(distances[stop] < SUCCESS_THRESHOLD)
    return wins / len(episodes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="evaluation folders (episodes.jsonl)")
    p.add_argument("--consecutive", type=int, nargs="+", default=[1, 2])
    p.add_argument("--thresholds", type=float, nargs="+", default=None,
                   help="thresholds to try (default: 40 quantiles of the observed energies)")
    p.add_argument("--json", default=None, help="write the table here")
    args = p.parse_args(argv)
    episodes = [e for folder in args.folders for e in load_episodes(Path(folder))]
    if args.thresholds:
        grid = sorted(args.thresholds)
    else:
        every = np.concatenate([trajectory(e)[0] for e in episodes])
        grid = sorted(set(np.round(np.quantile(every, np.linspace(0.0, 0.6, 40)), 4)))
    no_rule = np.mean([trajectory(e)[1][-1] < SUCCESS_THRESHOLD for e in episodes])
    print(f"{len(episodes)} episodes; no stop rule: {no_rule:.2f}")
    table = {"episodes": len(episodes), "no_rule": float(no_rule), "rules": []}
    for k in args.consecutive:
        rates = [replay(episodes, t, k) for t in grid]
        best = max(range(len(grid)), key=lambda i: (rates[i], grid[i]))
        print(f"k={k}: best T={grid[best]:.4f} -> {rates[best]:.2f}   " + "  ".join(
            f"{t:.3f}:{r:.2f}" for t, r in zip(grid, rates)))
        table["rules"].append({"consecutive": k, "best_threshold": float(grid[best]),
                               "best_success": rates[best],
                               "grid": [[float(t), r] for t, r in zip(grid, rates)]})
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
