"""Seconds per action when planning with a converted V-JEPA 2-AC world model.

`planning.Planner.from_run(RUN)` on a folder written by `vjepa2.convert` (any size; random
weights from `scripts/make_reference_checkpoint.py` time the same as the released ones), the
reference planner's budget `planning.CEMConfig.reference()` (800 samples x 10 iterations,
horizon 1, xyz in an L1 ball of 0.075), 256 px frames (the run's `image_size`), a fixed goal
image. One plan is what MPC spends per executed action: the current frame is encoded, CEM runs
its iterations (one batched rollout each). The first plan (tracing, compilation, goal encoding)
is reported apart; `--repeats` more give the median. `--samples` / `--iterations` shrink the
budget for a slow machine (the result says which budget ran). Records the machine and its load.

Usage:
    python scripts/bench_converted_plan.py --run /tmp/ac_small_conv --repeats 2 \\
        --out bench_converted_plan.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a converted V-JEPA 2-AC folder")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import keras

    from planning import CEMConfig, Planner

    overrides = {k: v for k, v in (("samples", args.samples), ("iterations", args.iterations))
                 if v is not None}
    config = CEMConfig.reference(**overrides)
    planner = Planner.from_run(args.run, config=config)
    model = planner.world_model
    size = model.image_size
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(args.repeats + 1, size, size, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    state = np.zeros(model.state_dim, "float32")
    times = []
    load_start = list(os.getloadavg())
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        result = planner.plan(frames[i], state, goal)
        times.append(time.perf_counter() - start)
    action = np.asarray(result.first_action)
    report = {
        "run": args.run, "backend": keras.backend.backend(),
        "budget": {"samples": config.samples, "iterations": config.iterations,
                   "horizon": config.horizon, "elites": config.elites,
                   "l1_radius": config.l1_radius},
        "image_size": size, "tokens_per_frame": (size // model.encoder.patch_size) ** 2,
        "predictor": {k: model.predictor.get_config()[k] for k in ("embed_dim", "depth",
                                                                    "num_heads", "mlp_dim")},
        "predictor_params": int(model.predictor.count_params()),
        "encoder_params": int(model.encoder.count_params()),
        "first_plan_seconds": times[0], "plan_seconds": times[1:],
        "median_seconds_per_action": statistics.median(times[1:]) if times[1:] else None,
        "first_action": action.tolist(),
        "first_action_xyz_l1": float(np.abs(action[:3]).sum()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": load_start, "loadavg_end": list(os.getloadavg())},
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        from vjepa2.files import atomic_write

        atomic_write(args.out, text + "\n")


if __name__ == "__main__":
    main()
