"""Training speed of the device-resident JAX loop (`vjepa2.train.device_loop`), both phases.

The #15 GPU bars in one script: V-JEPA 2 pretraining steps/s (tiny preset, batch 128, 64 px;
bar 400 steps/s), V-JEPA 2-AC fine-tuning steps/s (bar 1000 steps/s), and, with `--preset
large`, the pretraining step's share of the bf16 matmul peak measured in the same process (bar
50%). Data is a synthetic uint8 episode array uploaded once (the loop gathers clips and draws
masks on the device); `--compare-fit` also times the same trainer through `keras.Model.fit` on
host batches (masks from the host sampler), so the gain of the loop is one ratio of one run.

    KERAS_BACKEND=jax python scripts/bench_device_loop.py --json out/device_loop.json
    KERAS_BACKEND=jax python scripts/bench_device_loop.py --preset large --resolution 256 \
        --frames 16 --pretrain-batch 8 --phases pretrain --steps-per-call 5 --calls 3

Runs on any JAX device; on the CPU (the test) with small settings.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BARS = {"pretrain_steps_per_s": 400.0, "finetune_steps_per_s": 1000.0,
        "large_fraction_of_peak": 0.5}


def _timed_calls(loop, calls):
    """Median seconds of one compiled call after the first (compilation), and the first."""
    started = time.perf_counter()
    loop.run_call()
    first = time.perf_counter() - started
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        loop.run_call()  # returns host floats: the call has finished
        times.append(time.perf_counter() - started)
    return statistics.median(times), first


def _fit_step_seconds(trainer, batches, steps):
    """Median seconds of a `fit` step on host batches (masks drawn on the host)."""
    import keras

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(np.asarray(logs["loss"]))
            times.append(time.perf_counter() - self.start)

    trainer.fit(batches, epochs=1, steps_per_epoch=steps + 2, verbose=0, shuffle=False,
                callbacks=[Timer()])
    return statistics.median(times[2:])


def bench_pretrain(args, frames):
    from vjepa2.flops import pretrain_step_flops
    from vjepa2.masks import MultiBlockMaskSampler
    from vjepa2.presets import get_preset
    from vjepa2.train.device_loop import DeviceLoop, pretrain_batch_fn
    from vjepa2.train.device_masks import DeviceMaskSampler
    from vjepa2.train.pretrain import PretrainConfig, build_trainer

    config = PretrainConfig(videos="unused", out="unused", steps=10**6, preset=args.preset,
                            batch_size=args.pretrain_batch, frames=args.frames,
                            resolution=args.resolution, precision=args.precision)
    trainer = build_trainer(config, {k: v for k, v in args.overrides.items()
                                     if k in ("encoder", "predictor")})
    enc = trainer.encoder
    grid = (args.frames // enc.tubelet_size, args.resolution // enc.patch_size,
            args.resolution // enc.patch_size)
    sampler = DeviceMaskSampler(grid)
    loop = DeviceLoop(trainer, pretrain_batch_fn(args.pretrain_batch, args.frames, sampler,
                                                 crop=args.crop),
                      {"frames": frames}, steps_per_call=args.steps_per_call)
    call, first = _timed_calls(loop, args.calls)
    step = call / args.steps_per_call
    preset = get_preset(args.preset)
    flops = pretrain_step_flops({**preset["encoder"], **args.overrides.get("encoder", {})},
                                {**preset["predictor"], **args.overrides.get("predictor", {})},
                                args.pretrain_batch, int(np.prod(grid)), sampler.num_context,
                                sampler.num_target)
    out = {"batch_size": args.pretrain_batch, "resolution": args.resolution,
           "frames": args.frames, "mask_counts": [list(sampler.num_context),
                                                  list(sampler.num_target)],
           "first_call_seconds_incl_compile": round(first, 2),
           "step_seconds": step, "steps_per_s": round(1.0 / step, 2),
           "clips_per_s": round(args.pretrain_batch / step, 1),
           "tflop_per_step": flops / 1e12, "achieved_tflops": flops / step / 1e12}
    if args.compare_fit:
        host = MultiBlockMaskSampler(grid)
        rng = np.random.default_rng(0)
        from vjepa2.train.device_loop import IMAGENET_MEAN, IMAGENET_STD

        def batches():
            for k in range(10**9):
                e = rng.integers(len(frames), size=args.pretrain_batch)
                s = rng.integers(frames.shape[1] - args.frames + 1, size=args.pretrain_batch)
                clip = frames[e[:, None], s[:, None] + np.arange(args.frames)]
                batch = {"video": ((clip / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)
                         .astype("float32")}
                for i, m in enumerate(host.sample_batch(args.pretrain_batch, k)):
                    batch[f"context_ids_{i}"] = m["context_ids"]
                    batch[f"target_ids_{i}"] = m["target_ids"]
                yield (batch,)

        fit_step = _fit_step_seconds(trainer, batches(), args.calls * 2)
        out.update(fit_step_seconds=fit_step, fit_steps_per_s=round(1.0 / fit_step, 2),
                   loop_over_fit=round(fit_step / step, 2))
    return out


def bench_finetune(args, frames):
    import keras

    from vjepa2.models import ActionConditionedPredictor, VideoEncoder
    from vjepa2.train.ac import ACTrainer
    from vjepa2.train.device_loop import DeviceLoop, finetune_batch_fn
    from vjepa2.train.optim import make_adamw
    from vjepa2.train.schedules import WarmupStableDecay

    encoder = VideoEncoder.from_preset(args.preset, **args.overrides.get("encoder", {}))
    predictor = ActionConditionedPredictor.from_preset(
        args.preset, **{**args.overrides.get("ac_predictor", {}),
                        "encoder_dim": encoder.embed_dim, "action_dim": 4, "state_dim": 7})
    trainer = ACTrainer(encoder, predictor)
    trainer.build()
    schedule = WarmupStableDecay(7.5e-5, 4.25e-4, 1e-6, 100, 200, 10**6)
    trainer.compile(optimizer=make_adamw(trainer, schedule, weight_decay=0.04),
                    jit_compile=keras.backend.backend() == "jax")
    rng = np.random.default_rng(1)
    data = {"frames": frames, "actions": rng.normal(size=frames.shape[:2] + (4,)).astype("f4"),
            "states": rng.normal(size=frames.shape[:2] + (7,)).astype("f4")}
    loop = DeviceLoop(trainer, finetune_batch_fn(args.finetune_batch, args.clip_length), data,
                      steps_per_call=args.steps_per_call)
    call, first = _timed_calls(loop, args.calls)
    step = call / args.steps_per_call
    out = {"batch_size": args.finetune_batch, "clip_length": args.clip_length,
           "first_call_seconds_incl_compile": round(first, 2), "step_seconds": step,
           "steps_per_s": round(1.0 / step, 2)}
    if args.compare_fit:
        def batches():
            while True:
                e = rng.integers(len(frames), size=args.finetune_batch)
                s = rng.integers(frames.shape[1] - args.clip_length + 1, size=args.finetune_batch)
                idx = (e[:, None], s[:, None] + np.arange(args.clip_length))
                yield ({k: v[idx] for k, v in data.items()},)

        fit_step = _fit_step_seconds(trainer, batches(), args.calls * 2)
        out.update(fit_step_seconds=fit_step, fit_steps_per_s=round(1.0 / fit_step, 2),
                   loop_over_fit=round(fit_step / step, 2))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--overrides", type=json.loads, default={},
                   help='preset overrides as JSON: {"encoder": ..., "predictor": ..., '
                        '"ac_predictor": ...}')
    p.add_argument("--phases", default="pretrain,finetune")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--frames", type=int, default=8, help="pretraining clip frames")
    p.add_argument("--clip-length", type=int, default=4, help="fine-tuning clip frames")
    p.add_argument("--pretrain-batch", type=int, default=128)
    p.add_argument("--finetune-batch", type=int, default=128)
    p.add_argument("--episodes", type=int, default=64, help="synthetic episodes on the device")
    p.add_argument("--episode-frames", type=int, default=32)
    p.add_argument("--steps-per-call", type=int, default=50)
    p.add_argument("--calls", type=int, default=5, help="timed calls after the first")
    p.add_argument("--crop", action="store_true", help="random resized crops on the device")
    p.add_argument("--precision", default="auto",
                   choices=["auto", "float32", "mixed_bfloat16"])
    p.add_argument("--matmul-size", type=int, default=4096)
    p.add_argument("--compare-fit", action="store_true",
                   help="also time keras fit on host batches (the ratio of one run)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    phases = [x for x in args.phases.split(",") if x]
    if not phases or set(phases) - {"pretrain", "finetune"}:
        print(f"bench_device_loop: error: --phases takes pretrain and finetune; received "
              f"{args.phases!r}", file=sys.stderr)
        return 2
    if max(args.frames, args.clip_length) > args.episode_frames:
        print(f"bench_device_loop: error: --episode-frames {args.episode_frames} is shorter "
              "than a clip", file=sys.stderr)
        return 2

    import jax
    import keras

    if keras.backend.backend() != "jax":
        print("bench_device_loop: error: needs KERAS_BACKEND=jax; the backend is "
              f"{keras.backend.backend()}", file=sys.stderr)
        return 2
    from vjepa2.flops import matmul_peak_flops
    from vjepa2.train.run_folder import resolve_precision

    precision = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(precision)
    dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    peak = matmul_peak_flops(args.matmul_size, dtype) / 1e12
    frames = np.random.default_rng(0).integers(
        0, 256, size=(args.episodes, args.episode_frames, args.resolution, args.resolution, 3),
        dtype=np.uint8)
    result = {"backend": "jax", "device": str(jax.devices()[0].device_kind),
              "jax": jax.__version__, "preset": args.preset, "overrides": args.overrides,
              "precision": precision, "steps_per_call": args.steps_per_call,
              "timed_calls": args.calls, "matmul_peak_tflops": round(peak, 3), "bars": BARS}
    keras.utils.set_random_seed(0)
    if "pretrain" in phases:
        result["pretrain"] = bench_pretrain(args, frames)
        result["pretrain"]["fraction_of_matmul_peak"] = round(
            result["pretrain"]["achieved_tflops"] / peak, 4)
    if "finetune" in phases:
        result["finetune"] = bench_finetune(args, frames)
    print(json.dumps(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
