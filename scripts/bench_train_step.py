"""Benchmark one V-JEPA 2 pretraining step on any backend (no TensorFlow needed), e.g. a GPU
with `KERAS_BACKEND=jax`:

    KERAS_BACKEND=jax python scripts/bench_train_step.py --preset large --resolution 256 \
        --frames 16 --batch-size 8 --precision mixed_bfloat16 [--remat]

`--remat` rematerializes every encoder and predictor block in the backward pass (gradient
checkpointing): raise `--batch-size` until the step runs out of memory to find the largest batch
that fits with and without it.

Builds the trainer, feeds one fixed random batch (with real multi-block masks) through `fit`,
and reports the median step time after warm-up, clips/s, the analytic FLOPs per step, the
achieved TFLOP/s and its fraction of the best dense matmul rate measured in the same run (in the
step's compute dtype).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--remat", action="store_true",
                        help="rematerialize every transformer block (gradient checkpointing)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from vjepa2.flops import matmul_peak_flops, pretrain_step_flops
    from vjepa2.presets import get_preset
    from vjepa2.train.pretrain import PretrainConfig, build_trainer, make_mask_sampler

    keras.mixed_precision.set_global_policy(args.precision)
    compute_dtype = "bfloat16" if args.precision == "mixed_bfloat16" else "float32"
    peak = matmul_peak_flops(args.matmul_size, compute_dtype) / 1e12
    config = PretrainConfig(videos="unused", out="unused", steps=1000, preset=args.preset,
                            batch_size=args.batch_size, frames=args.frames,
                            resolution=args.resolution, precision=args.precision)
    sampler = make_mask_sampler(config)
    remat = {"remat": True} if args.remat else {}
    trainer = build_trainer(config, {"encoder": remat, "predictor": remat})
    rng = np.random.default_rng(0)
    steps = args.steps + 2
    batch = {"video": rng.normal(size=(args.batch_size * steps, args.frames, args.resolution,
                                       args.resolution, 3)).astype("float32")}
    for i, masks in enumerate(sampler.sample_batch(args.batch_size * steps, 0)):
        batch[f"context_ids_{i}"] = masks["context_ids"]
        batch[f"target_ids_{i}"] = masks["target_ids"]

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(np.asarray(logs["loss"]))  # wait for the step
            times.append(time.perf_counter() - self.start)

    trainer.fit(batch, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False,
                callbacks=[Timer()])
    compile_seconds = times[0]
    step = statistics.median(times[2:])
    preset = get_preset(args.preset)
    tokens = (args.frames // 2) * (args.resolution // 16) ** 2
    flops = pretrain_step_flops(dict(preset["encoder"]), dict(preset["predictor"]),
                                args.batch_size, tokens, sampler.num_context,
                                sampler.num_target)
    result = {
        "backend": keras.backend.backend(), "preset": args.preset,
        "precision": args.precision, "remat": args.remat, "resolution": args.resolution,
        "frames": args.frames,
        "batch_size": args.batch_size, "tokens_per_clip": tokens,
        "encoder_params_m": round(trainer.encoder.count_params() / 1e6, 1),
        "first_step_seconds_incl_compile": round(compile_seconds, 1),
        "step_seconds_median": round(step, 4),
        "clips_per_s": round(args.batch_size / step, 1),
        "tflop_per_step": round(flops / 1e12, 3),
        "achieved_tflops": round(flops / step / 1e12, 1),
        "matmul_peak_tflops": round(peak, 1),
        "fraction_of_matmul_peak": round(flops / step / 1e12 / peak, 3),
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
