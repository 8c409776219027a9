"""Saves, per task and variation set, the first observation beside the goal image(s) as PNG.

    python scripts/make_task_pictures.py --out docs/images --seed 0
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()

    import gymnasium as gym
    from PIL import Image

    import envs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task, spec in envs.TASKS.items():
        for variation in ("train", "heldout"):
            env = gym.make(spec.env_id, variation=variation, image_size=args.image_size)
            obs, info = env.reset(seed=args.seed)
            gap = np.full((args.image_size, 4, 3), 255, np.uint8)
            tiles = [obs["image"]]
            for image in info["goal_images"].values():
                tiles += [gap, image]
            path = out / f"{task}_{variation}.png"
            Image.fromarray(np.concatenate(tiles, axis=1)).save(path)
            print(path, "frames: observation,", ", ".join(info["goal_images"]))
            env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
