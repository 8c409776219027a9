"""Benchmark V-JEPA 2 pretraining on this machine.

Measures, in one run: the float32 matmul peak of this machine (TensorFlow / the active backend's
best large matmul), training clips/s on in-memory batches (compute only), FLOPs per step
(analytic) and achieved GFLOP/s as a fraction of that peak, the input pipeline's clips/s on
its own (decode + augment + masks) against what training consumes, end-to-end clips/s through
`fit` with the real pipeline, and peak resident memory.

    python scripts/bench_pretrain.py                # tiny, 128 px, 8 frames, batch 8
    python scripts/bench_pretrain.py --json out.json

Timings are medians over repeated steps after warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--pipeline-batches", type=int, default=20)
    parser.add_argument("--videos", default=None, help="video folder (default: generated)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from vjepa2.data.synthetic import generate_videos
    from vjepa2.data.video import measure_throughput
    from vjepa2.flops import matmul_peak_flops, pretrain_step_flops
    from vjepa2.presets import get_preset
    from vjepa2.train.pretrain import (PretrainConfig, build_trainer, make_mask_sampler,
                                       make_pretrain_dataset)

    videos = args.videos
    if videos is None:
        videos = tempfile.mkdtemp(prefix="bench_videos_")
        generate_videos(videos, 40, frames=48, size=args.resolution, fps=8, seed=0)
    config = PretrainConfig(videos=videos, out=tempfile.mkdtemp(prefix="bench_run_"),
                            steps=1000, preset=args.preset, batch_size=args.batch_size,
                            frames=args.frames, resolution=args.resolution, precision="float32")
    peak = matmul_peak_flops(2048, "float32") / 1e9

    sampler = make_mask_sampler(config)
    dataset, _ = make_pretrain_dataset(config, sampler)
    pipeline_cps = measure_throughput(dataset, args.pipeline_batches, warmup=2)

    trainer = build_trainer(config)
    batch = next(iter(dataset.take(1)))
    trainer.make_train_function()
    step_fn = trainer.train_function
    import tensorflow as tf

    single = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(single)
    compile_start = time.perf_counter()
    logs = step_fn(iterator)
    float(np.asarray(logs["loss"]))
    compile_seconds = time.perf_counter() - compile_start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        logs = step_fn(iterator)
        float(np.asarray(logs["loss"]))
        times.append(time.perf_counter() - start)
    step_seconds = statistics.median(times)

    preset = get_preset(args.preset)
    encoder_cfg = dict(preset["encoder"])
    predictor_cfg = dict(preset["predictor"])
    tokens = (args.frames // 2) * (args.resolution // 16) ** 2
    flops = pretrain_step_flops(encoder_cfg, predictor_cfg, args.batch_size, tokens,
                                sampler.num_context, sampler.num_target)
    achieved = flops / step_seconds / 1e9
    train_cps = args.batch_size / step_seconds

    # End to end through fit with the real pipeline.
    e2e_dataset, _ = make_pretrain_dataset(config, sampler, start_step=100)
    fit_steps = max(args.steps, 5)
    start = time.perf_counter()
    trainer.fit(e2e_dataset, epochs=1, steps_per_epoch=fit_steps, verbose=0, shuffle=False)
    e2e_cps = fit_steps * args.batch_size / (time.perf_counter() - start)

    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    results = {
        "backend": keras.backend.backend(),
        "preset": args.preset, "resolution": args.resolution, "frames": args.frames,
        "batch_size": args.batch_size, "tokens_per_clip": tokens,
        "context_tokens": sampler.num_context, "target_tokens": sampler.num_target,
        "cpu_count": os.cpu_count(),
        "matmul_peak_gflops": round(peak, 1),
        "step_seconds_median": round(step_seconds, 4),
        "step_seconds_all": [round(t, 4) for t in times],
        "first_step_seconds_incl_trace": round(compile_seconds, 1),
        "train_clips_per_s": round(train_cps, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(achieved, 1),
        "fraction_of_matmul_peak": round(achieved / peak, 3),
        "pipeline_clips_per_s": round(pipeline_cps, 2),
        "pipeline_over_training": round(pipeline_cps / train_cps, 2),
        "end_to_end_fit_clips_per_s": round(e2e_cps, 2),
        "peak_rss_gib": round(peak_rss_gib, 2),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
