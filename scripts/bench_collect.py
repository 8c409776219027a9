"""Environment steps per second with rendering, at several image sizes and worker counts.

    python scripts/bench_collect.py --sizes 64 128 256 --workers 1 2 --steps 200 --out bench_collect.json

Each worker is a spawned process with its own env stepping random actions (every step renders
one frame); the table reports the total steps/s across workers.
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import multiprocessing
import platform
import time


def _worker(task: str, size: int, steps: int) -> float:
    import gymnasium as gym
    import numpy as np

    import envs

    env = gym.make(envs.TASKS[task].env_id, image_size=size)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="pick_and_place")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=200, help="steps per worker")
    parser.add_argument("--out", default="bench_collect.json")
    args = parser.parse_args()

    rows = []
    context = multiprocessing.get_context("spawn")
    for workers in args.workers:
        with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            for size in args.sizes:
                # Timed inside each worker (env built and reset outside the timing).
                times = list(pool.map(_worker, [args.task] * workers, [size] * workers,
                                      [args.steps] * workers))
                total = workers * args.steps / max(times)
                rows.append({"image_size": size, "workers": workers, "steps_per_s": total})
                print(f"{size:>6} px  {workers} worker(s)  {total:8.1f} steps/s", flush=True)
    report = {"task": args.task, "steps_per_worker": args.steps, "rows": rows,
              "cpu_count": multiprocessing.cpu_count(), "machine": platform.processor() or
              platform.machine()}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
