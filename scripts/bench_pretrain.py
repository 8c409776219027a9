"""Benchmark V-JEPA 2 pretraining on this machine.

Measures, in one run: the float32 matmul peak of this machine (TensorFlow / the active backend's
best large matmul), training clips/s on in-memory batches (compute only), FLOPs per step
(analytic) and achieved GFLOP/s as a fraction of that peak, the input pipeline's clips/s on
its own (decode + augment + masks) against what training consumes, end-to-end clips/s through
`fit` with the real pipeline, and peak resident memory.

    python scripts/bench_pretrain.py                # tiny, 128 px, 8 frames, batch 8
    python scripts/bench_pretrain.py --json out.json

Beside Meta's PyTorch reference (`../shared/bench/torch_ref.py`, run first in the same
session), at its exact mask token counts and with the ratio of clips/s:

    python scripts/bench_pretrain.py --reference torch_ref.jsonl --compute-only \
        --precision mixed_bfloat16

`--masks reference` (default) draws the reference collator's per-batch minimum counts
(`MultiBlockMaskSampler(counts="reference")`), `--masks quantile` the older fixed counts; with
`--reference` every step uses the counts of the reference's fixed-mask measurement. Any Keras
backend (`KERAS_BACKEND=jax` runs the step jitted by XLA). Timings are medians over repeated
steps after warm-up.
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
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"],
                        help="XLA-compile the step (auto: as vjepa2 pretrain does)")
    parser.add_argument("--masks", default="reference", choices=["reference", "quantile"],
                        help="mask token counts: the reference collator's per-batch minimum "
                        "or the older fixed quantile")
    parser.add_argument("--reference", default=None,
                        help="torch_ref.py's JSON lines: use its fixed-mask token counts and "
                        "report the ratio to its clips/s")
    parser.add_argument("--compute-only", action="store_true",
                        help="skip the input pipeline and end-to-end measurements")
    args = parser.parse_args(argv)

    import keras

    from vjepa2.data.synthetic import generate_videos
    from vjepa2.data.video import measure_throughput
    from vjepa2.flops import matmul_peak_flops, pretrain_step_flops
    from vjepa2.masks import MultiBlockMaskSampler
    from vjepa2.presets import get_preset
    from vjepa2.train.pretrain import (PretrainConfig, build_trainer, make_mask_sampler,
                                       make_pretrain_dataset, use_xla)

    keras.mixed_precision.set_global_policy(args.precision)
    videos = "unused" if args.compute_only else args.videos
    if videos is None:
        videos = tempfile.mkdtemp(prefix="bench_videos_")
        generate_videos(videos, 40, frames=48, size=args.resolution, fps=8, seed=0)
    config = PretrainConfig(videos=videos, out=tempfile.mkdtemp(prefix="bench_run_"),
                            steps=1000, preset=args.preset, batch_size=args.batch_size,
                            frames=args.frames, resolution=args.resolution,
                            precision=args.precision, jit=args.jit)
    compute_dtype = "bfloat16" if args.precision == "mixed_bfloat16" else "float32"
    peak = matmul_peak_flops(2048, "float32") / 1e9
    peak_compute = peak if compute_dtype == "float32" else \
        matmul_peak_flops(2048, compute_dtype) / 1e9

    reference = _read_reference(args.reference) if args.reference else None
    results = {}
    if args.masks == "quantile":
        sampler = make_mask_sampler(config)
    else:
        grid = (args.frames // 2, args.resolution // 16, args.resolution // 16)
        sampler = MultiBlockMaskSampler(grid, seed=config.seed, counts="reference",
                                        buckets=None)
    counts = reference["counts"] if reference else None
    arrays = _step_batches(sampler, args.batch_size, args.frames, args.resolution, counts,
                           steps=args.steps + 2)
    if not args.compute_only:
        quantile_sampler = make_mask_sampler(config)
        dataset, _ = make_pretrain_dataset(config, quantile_sampler)
        results["pipeline_clips_per_s"] = round(measure_throughput(
            dataset, args.pipeline_batches, warmup=2), 2)

    trainer = build_trainer(config)
    timing = _time_steps(trainer, arrays, args.batch_size)
    step_seconds = statistics.median(timing["times"])

    preset = get_preset(args.preset)
    tokens = (args.frames // 2) * (args.resolution // 16) ** 2
    step_counts = _counts(arrays)
    flops = pretrain_step_flops(dict(preset["encoder"]), dict(preset["predictor"]),
                                args.batch_size, tokens, [c for c, _ in step_counts],
                                [t for _, t in step_counts])
    achieved = flops / step_seconds / 1e9
    train_cps = args.batch_size / step_seconds

    if not args.compute_only:
        # End to end through fit with the real pipeline (fixed-count masks: one shape).
        e2e_dataset, _ = make_pretrain_dataset(config, quantile_sampler, start_step=100)
        fit_steps = max(args.steps, 5)
        start = time.perf_counter()
        trainer.fit(e2e_dataset, epochs=1, steps_per_epoch=fit_steps, verbose=0,
                    shuffle=False)
        results["end_to_end_fit_clips_per_s"] = round(
            fit_steps * args.batch_size / (time.perf_counter() - start), 2)
        results["pipeline_over_training"] = round(results["pipeline_clips_per_s"] / train_cps, 2)

    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    results = {
        "backend": keras.backend.backend(), "precision": args.precision, "jit": use_xla(config),
        "preset": args.preset, "resolution": args.resolution, "frames": args.frames,
        "batch_size": args.batch_size, "tokens_per_clip": tokens, "masks": args.masks,
        "context_target_tokens": step_counts,
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
        "matmul_peak_gflops": round(peak, 1),
        "matmul_peak_gflops_compute_dtype": round(peak_compute, 1),
        "step_seconds_median": round(step_seconds, 4),
        "step_seconds_all": [round(t, 4) for t in timing["times"]],
        "first_step_seconds_incl_trace": round(timing["first"], 1),
        "train_clips_per_s": round(train_cps, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(achieved, 1),
        "fraction_of_matmul_peak": round(achieved / peak, 3),
        "fraction_of_compute_dtype_peak": round(achieved / peak_compute, 3),
        "loss_first_last": timing["losses"],
        **results,
        "peak_rss_gib": round(peak_rss_gib, 2),
    }
    if reference:
        results["reference"] = {k: v for k, v in reference.items() if k != "counts"}
        results["clips_per_s_over_reference_fixed"] = round(
            train_cps / reference["fixed_clips_per_s"], 2)
        results["clips_per_s_over_reference_fresh"] = round(
            train_cps / reference["fresh_clips_per_s"], 2)
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


def _read_reference(path):
    """The figures of torch_ref.py's JSON lines this benchmark compares with."""
    lines = {}
    with open(path) as handle:
        for line in handle:
            if line.strip().startswith("{"):
                record = json.loads(line)
                lines[record.get("measure")] = record
    fixed, fresh = lines["pretrain_step_fixed"], lines["pretrain_step"]
    return {
        "counts": [tuple(c) for c in fixed["tokens_per_sample_ctx_tgt"]],
        "fixed_seconds_per_step": fixed["seconds_per_step"],
        "fixed_clips_per_s": fixed["clips_per_second"],
        "fixed_gflops": fixed["gflops_per_s"],
        "fixed_fraction_of_matmul_peak": fixed["fraction_of_matmul_peak"],
        "fixed_tokens_ctx_tgt": fixed["tokens_per_sample_ctx_tgt"],
        "fresh_clips_per_s": fresh["clips_per_second"],
        "fresh_gflops": fresh["gflops_per_s_aggregate"],
        "fresh_tokens_ctx_mean": fresh["tokens_ctx_mean"],
        "fresh_tokens_tgt_mean": fresh["tokens_tgt_mean"],
        "matmul_peak_gflops": lines["matmul_peak"]["gflops_2048_median"],
        "matmul_peak_end_gflops": lines.get("matmul_peak_end", {}).get("gflops_2048_median"),
    }


def _step_batches(sampler, batch_size, frames, resolution, counts, steps):
    """In-memory arrays for `steps` batches (random clips) with one mask draw's token counts
    in every step: `counts` [(ctx, tgt) per mask set] if given (the first draw with at least
    that many tokens, cut to them), else the draw of step 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    step = 0
    while True:
        masks = sampler.sample_batch(batch_size, step)
        step += 1
        if counts is None:
            counts = [(m["context_ids"].shape[1], m["target_ids"].shape[1]) for m in masks]
        if all(m["context_ids"].shape[1] >= c and m["target_ids"].shape[1] >= t
               for m, (c, t) in zip(masks, counts)):
            break
    arrays = {"video": rng.normal(size=(batch_size * steps, frames, resolution, resolution,
                                        3)).astype("float32")}
    for i, (m, (c, t)) in enumerate(zip(masks, counts)):
        arrays[f"context_ids_{i}"] = np.tile(_cut(rng, m["context_ids"], c), (steps, 1))
        arrays[f"target_ids_{i}"] = np.tile(_cut(rng, m["target_ids"], t), (steps, 1))
    return arrays


def _cut(rng, ids, n):
    import numpy as np

    return np.stack([np.sort(rng.choice(row, n, replace=False)) for row in ids]).astype("int32")


def _counts(arrays):
    sets = sum(1 for key in arrays if key.startswith("context_ids_"))
    return [(int(arrays[f"context_ids_{i}"].shape[1]), int(arrays[f"target_ids_{i}"].shape[1]))
            for i in range(sets)]


def _time_steps(trainer, arrays, batch_size, warmup=2):
    """Times each train step of one `fit` over the arrays (any backend); the first `warmup`
    steps (the first traces or compiles) are not counted."""
    import keras
    import numpy as np

    times, losses = [], []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(np.asarray(logs["loss"])))  # waits for the step
            times.append(time.perf_counter() - self.start)

    trainer.fit(arrays, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
                callbacks=[Timer()])
    return {"times": times[warmup:], "first": times[0],
            "losses": [round(losses[0], 4), round(losses[-1], 4)]}


if __name__ == "__main__":
    sys.exit(main())
