"""Rollout throughput of the world model: candidate action sequences imagined per second.

Times `WorldModel.rollout` (one step at a time over a key/value cache of the context and the
earlier imagined steps) against `rollout_recompute` (the whole sequence re-run at every step),
compiled the way the planner compiles its CEM iteration (`planning._compile.compile_function`),
at horizons 1, 2 and 4 for a batch of candidates. Weights are random unless `--run` names a
fine-tuning run (speed does not depend on them).

Usage:
    python scripts/bench_world_model.py                        # tiny preset, 64 px, 128 cand.
    python scripts/bench_world_model.py --image-size 128 --context 2 --repeats 10
    python scripts/bench_world_model.py --run runs/ac --out bench_world_model.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def build_model(args):
    from vjepa2.models import ActionConditionedPredictor, VideoEncoder
    from vjepa2.models.world_model import WorldModel, WorldModelConventions, load_world_model

    if args.run:
        return load_world_model(args.run)
    encoder = VideoEncoder.from_preset(args.preset)
    predictor = ActionConditionedPredictor.from_preset(
        args.preset, encoder_dim=encoder.embed_dim, action_dim=4, state_dim=4)
    conventions = WorldModelConventions(
        action_dim=4, state_dim=4, image_size=args.image_size, action_delta_dims=(0, 1, 2),
        state_delta_dims=(0, 1, 2), action_to_state_scale=(0.05,) * 3)
    return WorldModel(encoder, predictor, conventions)


def time_call(fn, inputs, repeats):
    from keras import ops

    t0 = time.perf_counter()
    ops.convert_to_numpy(fn(*inputs))
    first = time.perf_counter() - t0
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ops.convert_to_numpy(fn(*inputs))
        seconds.append(time.perf_counter() - t0)
    return first, statistics.median(seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--run", default=None, help="a finetune-ac run folder (else random)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=128)
    parser.add_argument("--context", type=int, default=2, help="context frames Tc")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--jit", action="store_true", help="TensorFlow: XLA-compile")
    parser.add_argument("--out", default="bench_world_model.json")
    args = parser.parse_args(argv)

    import keras
    from keras import ops

    from planning._compile import compile_function

    keras.utils.set_random_seed(0)
    model = build_model(args)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (1, args.context, model.image_size, model.image_size, 3),
                          dtype=np.uint8)
    z = model.encode(frames)
    tokens, dim = z.shape[2], z.shape[3]
    states = ops.convert_to_tensor(rng.normal(size=(1, args.context, model.state_dim)),
                                   "float32")
    context_actions = None
    if args.context > 1:
        context_actions = ops.convert_to_tensor(
            rng.normal(size=(1, args.context - 1, model.action_dim)), "float32")
    rows = []
    for horizon in args.horizons:
        # One compiled function per horizon, as the planner has (shapes fixed per config).
        cached = compile_function(lambda z, s, a, c: model.rollout(z, s, a, c), args.jit)
        naive = compile_function(lambda z, s, a, c: model.rollout_recompute(z, s, a, c),
                                 args.jit)
        actions = ops.convert_to_tensor(
            rng.uniform(-1, 1, (args.candidates, horizon, model.action_dim)), "float32")
        inputs = (z, states, actions, context_actions)
        diff = float(np.abs(ops.convert_to_numpy(cached(*inputs))
                            - ops.convert_to_numpy(naive(*inputs))).max())
        first_c, med_c = time_call(cached, inputs, args.repeats)
        first_n, med_n = time_call(naive, inputs, args.repeats)
        rows.append({"horizon": horizon, "cached_seconds": med_c, "recompute_seconds": med_n,
                     "cached_candidates_per_second": args.candidates / med_c,
                     "recompute_candidates_per_second": args.candidates / med_n,
                     "speedup": med_n / med_c, "first_call_seconds": first_c,
                     "max_abs_difference": diff})
    print(f"world model rollout, preset {args.preset}, {tokens} tokens x {dim} per frame, "
          f"{args.context} context frame(s), {args.candidates} candidates, backend "
          f"{keras.backend.backend()}, {os.cpu_count()} CPUs, median of {args.repeats}")
    print(f"{'H':>2} {'cached cand/s':>14} {'recompute cand/s':>17} {'speedup':>8} "
          f"{'max |diff|':>11}")
    for r in rows:
        print(f"{r['horizon']:>2} {r['cached_candidates_per_second']:>14.0f} "
              f"{r['recompute_candidates_per_second']:>17.0f} {r['speedup']:>7.2f}x "
              f"{r['max_abs_difference']:>11.2e}")
    result = {"preset": args.preset, "run": args.run, "image_size": model.image_size,
              "tokens_per_frame": int(tokens), "width": int(dim), "context": args.context,
              "candidates": args.candidates, "repeats": args.repeats, "jit": args.jit,
              "backend": keras.backend.backend(), "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "rows": rows}
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
