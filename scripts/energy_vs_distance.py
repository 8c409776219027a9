"""Failure analysis: does the latent energy measure the distance to the goal?

    python scripts/energy_vs_distance.py runs/eval/reach/planner [more evaluation folders]

For every planner episode of an evaluation folder (`episodes.jsonl`), correlates the observed
latent energy (the encoded frame's distance to the goal image, before each re-plan) with the
true distance of the achieved goal to the goal (read from the simulator after the episode) over
the steps of the episode (Spearman), and prints the median and mean over episodes. A planner can
only succeed where this is clearly positive: otherwise the energy it minimises does not point at
the goal, whatever the predictor and the search do.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--min-steps", type=int, default=6)
    args = parser.parse_args()
    for folder in args.folders:
        records = [json.loads(line) for line in
                   (Path(folder) / "episodes.jsonl").read_text().splitlines() if line]
        values = []
        for r in records:
            energy = r["energies"]["observed"]
            stride = max(1, (len(r["distance"]) - 1) // max(1, r["steps"])) if r["steps"] else 1
            distance = [r["distance"][stride * t] for t in range(len(energy))]
            if len(energy) >= args.min_steps:
                values.append(spearman(energy, distance))
        values = np.asarray(values)
        values = values[np.isfinite(values)]
        print(f"{folder}: {len(values)} episodes, within-episode Spearman(energy, distance) "
              f"median {np.median(values):.2f}, mean {values.mean():.2f}")


if __name__ == "__main__":
    main()
