"""Pretrains the encoder and fine-tunes the AC predictor from an exported array file, on any
Keras backend and within a wall-clock budget (for a rented GPU: JAX, no TensorFlow needed).

Input: the `.npz` (or `.npz.xz`) written by `scripts/export_arrays.py`: whole episodes at the
world model's frame stride, with the conventions the model will carry. The two phases are the
same objectives as `vjepa2 pretrain` and `vjepa2 finetune-ac`, built by the same functions:

1. V-JEPA 2 pretraining of the encoder on clips of `--frames` consecutive frames (multi-block
   masks, EMA teacher, warmup-stable-decay).
2. V-JEPA 2-AC fine-tuning with the encoder frozen (teacher forcing + 2-step rollout L1) on
   clips of `--clip-length` frames.

Each phase first runs `--probe-steps` steps, measures its step rate, then sets its step count so
that it ends inside its time budget, with its learning-rate schedule (10% warmup, 20% decay)
fitted to that count; `--pretrain-steps` / `--finetune-steps` fix the counts instead (to repeat
a run's schedule on another machine: its summary.json records the counts). No checkpoints are written in between (use the CLI commands for resumable
runs); each phase's result is written when it ends: `OUT/pretrain/{encoder,predictor,config.json,
metrics.jsonl}` and `OUT/world_model/` (loadable by `Planner.from_run` / `load_world_model`).

    KERAS_BACKEND=jax python scripts/train_arrays.py --arrays play_wide_64.npz.xz --out runs/gpu \
        --pretrain-seconds 200 --finetune-seconds 200 --steps-per-call 50

`--steps-per-call K` (JAX) trains with the device-resident loop (`vjepa2.train.device_loop`):
the arrays are uploaded to the device once, every step draws its clips and masks there from
`fold_in(key(seed), step)`, and K optimizer steps run per compiled call; without it, batches
are assembled on the host and fed through `keras.Model.fit`.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import lzma
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load_arrays(path: str) -> dict:
    raw = Path(path).read_bytes()
    if path.endswith(".xz"):
        raw = lzma.decompress(raw)
    with np.load(io.BytesIO(raw)) as data:
        out = {k: data[k] for k in ("frames", "states", "actions")}
        out["conventions"] = json.loads(str(data["conventions"]))
    return out


# Mask batches are made in worker processes (the sampler is pure NumPy and Python-bound).
_SAMPLER = None


def _init_masks(grid, seed, counts="quantile"):
    global _SAMPLER
    from vjepa2.masks import MultiBlockMaskSampler

    _SAMPLER = MultiBlockMaskSampler(grid, seed=seed, counts=counts)


def _mask_batch(args):
    batch_size, step = args
    out = []
    for m in _SAMPLER.sample_batch(batch_size, step):
        out += [m["context_ids"], m["target_ids"]]
    return out


def make_deadline(until):
    """A callback that stops `fit` at wall-clock time `until` and records batch end times."""
    import keras

    class Deadline(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.until = until
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.time())
            if time.time() > self.until:
                self.model.stop_training = True

    return Deadline()


def refit_schedule(trainer, steps, callbacks):
    """Sets the learning-rate schedule (10% warmup, 20% decay), the EMA ramp and the progress
    count to `steps` (the trace must be rebuilt afterwards: they are constants in it)."""
    from vjepa2.train.schedules import WarmupStableDecay

    schedule = trainer.optimizer._learning_rate  # the schedule object (not its current value)
    if not isinstance(schedule, WarmupStableDecay):
        raise TypeError(f"expected a WarmupStableDecay schedule; found {type(schedule)}")
    schedule.total_steps = steps
    schedule.warmup_steps = max(int(0.1 * steps), 1)
    schedule.decay_steps = int(0.2 * steps)
    if hasattr(trainer, "total_steps"):  # the EMA momentum ramp
        trainer.total_steps = steps
    for callback in callbacks:
        if hasattr(callback, "total"):  # the progress printer's step count
            callback.total = steps


def fit_within(trainer, batches, budget, probe_steps, max_steps, callbacks, label,
               fixed_steps=None):
    """Probe, fit the schedule to the budget, train; returns (steps, seconds, steps/s).

    `budget` counts the whole phase: the first compile, the probe, the retrace after the
    schedule change (assumed to cost what the first compile cost) and the training. With
    `fixed_steps` (the trainer built for that many) there is no probe and no budget.
    """
    started = time.time()
    deadline = make_deadline(float("inf"))
    if fixed_steps:
        trainer.fit(batches, epochs=1, steps_per_epoch=fixed_steps, verbose=0, shuffle=False,
                    callbacks=[deadline, *callbacks])
        times = deadline.times
        rate = (len(times) - 1) / max(times[-1] - times[0], 1e-6)
        return len(times), time.time() - started, rate
    trainer.fit(batches, epochs=1, steps_per_epoch=probe_steps, verbose=0, shuffle=False,
                callbacks=[deadline, *callbacks])
    times = deadline.times
    compile_seconds = times[0] - started
    warm = times[max(len(times) // 4, 1):]
    rate = (len(warm) - 1) / max(warm[-1] - warm[0], 1e-6)
    left = budget - (time.time() - started) - compile_seconds
    steps = int(min(max_steps, probe_steps + max(rate * left * 0.9, 0)))
    refit_schedule(trainer, steps, callbacks)
    print(f"{label}: first step (compile) {compile_seconds:.1f} s, then {rate:.1f} steps/s; "
          f"{steps} steps in all", flush=True)
    remaining = steps - probe_steps
    if remaining > 0:
        import keras

        if keras.backend.backend() == "jax":
            import jax

            jax.clear_caches()  # else jit reuses the trace holding the old schedule constants
        trainer.make_train_function(force=True)
        deadline.until = started + 1.15 * budget  # a safety stop, not the plan
        trainer.fit(batches, epochs=1, steps_per_epoch=remaining, verbose=0, shuffle=False,
                    callbacks=[deadline, *callbacks])
    return len(deadline.times), time.time() - started, rate


def fit_on_device(trainer, device, budget, probe_steps, max_steps, callbacks, label, seed,
                  fixed_steps=None):
    """`fit_within` with the device-resident loop (JAX): `device` is (batch_fn, arrays,
    steps_per_call); each compiled call runs that many steps, its batches and masks drawn on
    the device. Returns (steps, seconds, steps/s)."""
    from vjepa2.train.device_loop import DeviceLoop

    batch_fn, arrays, per_call = device
    started = time.time()
    for callback in callbacks:
        callback.on_train_begin()

    def on_call(logs):
        for entry in logs:
            values = {k: v for k, v in entry.items() if k != "step"}
            for callback in callbacks:
                callback.on_train_batch_end(entry["step"] - 1, values)

    loop = DeviceLoop(trainer, batch_fn, arrays, steps_per_call=per_call, seed=seed)
    if fixed_steps:
        result = loop.run(fixed_steps, on_call=on_call)
    else:
        # At least three calls: the first compiles, the others give the rate.
        probe = loop.run(max(probe_steps, 3 * per_call), on_call=on_call)
        rate = probe["steps_per_second"]
        compile_seconds = probe["seconds"] - (loop.step - per_call) / rate
        left = budget - (time.time() - started) - compile_seconds
        steps = int(min(max_steps, loop.step + max(rate * left * 0.9, 0)))
        refit_schedule(trainer, steps, callbacks)
        print(f"{label}: first call (compile) {compile_seconds:.1f} s, then {rate:.1f} "
              f"steps/s; {steps} steps in all", flush=True)
        for callback in callbacks:  # as fit_within's second fit: the progress restarts
            callback.on_train_end()
            callback.on_train_begin()
        loop.recompile()  # the schedule's constants are in the trace
        result = loop.run(steps, until=started + 1.15 * budget, on_call=on_call)
        result["steps_per_second"] = rate
    loop.sync()
    for callback in callbacks:
        callback.on_train_end()
    return loop.step, time.time() - started, result["steps_per_second"]


def train_and_record(trainer, batches, config, out: Path, budget, fixed_steps, args, label,
                     overrides_record: dict) -> dict:
    """Runs `fit_within` with metrics and progress, then writes the run's `config.json` with
    the step count actually trained; returns the phase summary."""
    from vjepa2.train.callbacks import MetricsLogger, ProgressPrinter
    from vjepa2.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    callbacks = [MetricsLogger(out / "metrics.jsonl"),
                 ProgressPrinter(config.steps, seconds=30, desc=label)]
    if isinstance(batches, tuple):  # (batch_fn, arrays, steps per call): the device loop
        steps, seconds, rate = fit_on_device(trainer, batches, budget, args.probe_steps,
                                             args.max_steps, callbacks, label, args.seed,
                                             fixed_steps)
    else:
        steps, seconds, rate = fit_within(trainer, batches, budget, args.probe_steps,
                                          args.max_steps, callbacks, label, fixed_steps)
    final = dataclasses.replace(config, steps=steps)
    atomic_write(out / "config.json", json.dumps(
        {**final.to_json(), **overrides_record, "trained_by": "scripts/train_arrays.py",
         "steps_per_second": rate, "seconds": seconds}, indent=2))
    return {"steps": steps, "seconds": round(seconds, 1),
            "steps_per_second": round(rate, 2) if rate == rate else None}  # NaN: one call


def camera_clips(frames: np.ndarray) -> np.ndarray:
    """Episodes `(E, F, S, V * S, 3)` of V camera views side by side -> `(E * V, F, S, S, 3)`:
    the encoder is pretrained on each camera's square clips, as `vjepa2 pretrain` reads the
    per-camera videos of `vjepa2 collect --videos`."""
    e, f, s, w, c = frames.shape
    if w == s:
        return frames
    views = w // s
    return frames.reshape(e, f, s, views, s, c).transpose(0, 3, 1, 2, 4, 5).reshape(
        e * views, f, s, s, c)


def pretrain_phase(args, data, pool, out: Path):
    import keras

    from vjepa2.train.pretrain import PretrainConfig, build_trainer

    frames = camera_clips(data["frames"])
    E, F = frames.shape[:2]
    step_seconds = data["conventions"]["env_step_seconds"] * data["conventions"]["frame_stride"]
    config = PretrainConfig(videos=args.arrays, out=str(out),
                            steps=args.pretrain_steps or args.max_steps,
                            preset=args.preset, batch_size=args.pretrain_batch,
                            frames=args.frames, resolution=frames.shape[2],
                            fps=round(1.0 / step_seconds, 3), seed=args.seed,
                            precision=args.precision)
    keras.utils.set_random_seed(args.seed)
    encoder_overrides = {k: v for k, v in args.overrides.items() if k in ("encoder", "predictor")}
    trainer = build_trainer(config, encoder_overrides)
    grid = (args.frames // trainer.encoder.tubelet_size,
            frames.shape[2] // trainer.encoder.patch_size,
            frames.shape[2] // trainer.encoder.patch_size)
    B = args.pretrain_batch
    if args.steps_per_call:
        from vjepa2.train.device_loop import pretrain_batch_fn
        from vjepa2.train.device_masks import DeviceMaskSampler

        sampler = (DeviceMaskSampler.reference(grid, B) if args.mask_counts == "reference"
                   else DeviceMaskSampler(grid))
        device = (pretrain_batch_fn(B, args.frames, sampler), {"frames": frames},
                  args.steps_per_call)
        summary = train_and_record(trainer, device, config, out, args.pretrain_seconds,
                                   args.pretrain_steps, args, "pretrain",
                                   {"preset_overrides": encoder_overrides,
                                    "steps_per_call": args.steps_per_call,
                                    "mask_counts": args.mask_counts})
        trainer.teacher.save_to_preset(out / "encoder")
        trainer.predictor.save_to_preset(out / "predictor")
        return summary
    rng = np.random.default_rng(args.seed)
    requests = ((B, k) for k in range(10**9))
    masks = (pool.imap(_mask_batch, requests, chunksize=4) if pool is not None
             else map(_mask_batch, requests))
    from vjepa2.data.video import IMAGENET_MEAN, IMAGENET_STD  # no TensorFlow import

    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    scale, offset = 1.0 / (255.0 * std), -mean / std
    # Normalized once (ImageNet mean/std, as the video pipeline does): a batch is then one gather.
    normalized = np.empty(frames.shape, np.float32)
    for e in range(E):
        normalized[e] = frames[e].astype(np.float32) * scale + offset

    def batches():
        while True:
            e = rng.integers(E, size=B)
            s = rng.integers(F - args.frames + 1, size=B)
            idx = s[:, None] + np.arange(args.frames)
            batch = {"video": normalized[e[:, None], idx]}
            m = next(masks)
            for i in range(len(m) // 2):
                batch[f"context_ids_{i}"] = m[2 * i]
                batch[f"target_ids_{i}"] = m[2 * i + 1]
            yield (batch,)

    if grid != args.mask_grid:  # the mask workers were started before the model existed
        raise ValueError(f"mask grid {args.mask_grid} does not match the encoder's {grid}")
    summary = train_and_record(trainer, batches(), config, out, args.pretrain_seconds,
                               args.pretrain_steps, args, "pretrain",
                               {"preset_overrides": encoder_overrides,
                                "mask_counts": args.mask_counts})
    trainer.teacher.save_to_preset(out / "encoder")
    trainer.predictor.save_to_preset(out / "predictor")
    return summary


def finetune_phase(args, data, encoder_run: Path, out: Path):
    import keras

    from vjepa2.models.world_model import WorldModelConventions, save_world_model
    from vjepa2.train.finetune_ac import FinetuneACConfig, build_trainer

    frames, states, actions = data["frames"], data["states"], data["actions"]
    E, F = frames.shape[:2]
    conventions = WorldModelConventions.from_json(data["conventions"])
    config = FinetuneACConfig(encoder=str(encoder_run), logs=args.arrays, out=str(out),
                              steps=args.finetune_steps or args.max_steps, preset=args.preset,
                              batch_size=args.finetune_batch, clip_length=args.clip_length,
                              frame_stride=conventions.frame_stride,
                              image_size=conventions.image_size, seed=args.seed,
                              precision=args.precision)
    keras.utils.set_random_seed(args.seed + 1)
    trainer = build_trainer(config, actions.shape[-1], states.shape[-1],
                            args.overrides.get("ac_predictor"))
    if keras.backend.backend() == "jax":  # no jit would run op by op
        trainer.compile(optimizer=trainer.optimizer, jit_compile=True)
    rng = np.random.default_rng(args.seed + 1)
    B, T = args.finetune_batch, args.clip_length

    def batches():
        while True:
            e = rng.integers(E, size=B)
            s = rng.integers(F - T + 1, size=B)
            idx = (e[:, None], s[:, None] + np.arange(T))
            yield ({"frames": frames[idx], "actions": actions[idx], "states": states[idx]},)

    if args.steps_per_call:
        from vjepa2.train.device_loop import finetune_batch_fn

        source = (finetune_batch_fn(B, T), {"frames": frames, "actions": actions,
                                            "states": states}, args.steps_per_call)
    else:
        source = batches()
    summary = train_and_record(trainer, source, config, out, args.finetune_seconds,
                               args.finetune_steps, args, "finetune",
                               {"predictor_overrides": args.overrides.get("ac_predictor", {}),
                                "steps_per_call": args.steps_per_call})
    save_world_model(out, trainer.encoder, trainer.predictor, conventions)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arrays", required=True, help=".npz or .npz.xz from export_arrays.py")
    p.add_argument("--out", required=True, help="output folder (pretrain/ and world_model/)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--overrides", type=json.loads, default={},
                   help='preset overrides as JSON: {"encoder": {...}, "predictor": {...}, '
                        '"ac_predictor": {...}}')
    p.add_argument("--encoder", default=None,
                   help="skip pretraining: fine-tune on this pretraining run's encoder")
    p.add_argument("--pretrain-seconds", type=float, default=200.0)
    p.add_argument("--finetune-seconds", type=float, default=200.0)
    p.add_argument("--pretrain-batch", type=int, default=64)
    p.add_argument("--finetune-batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=8, help="pretraining clip frames")
    p.add_argument("--clip-length", type=int, default=4, help="fine-tuning clip frames")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="a fixed step count instead of --pretrain-seconds (no probe)")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="a fixed step count instead of --finetune-seconds (no probe)")
    p.add_argument("--probe-steps", type=int, default=40)
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=8,
                   help="mask-sampling processes (0: in this process)")
    p.add_argument("--steps-per-call", type=int, default=0,
                   help="JAX: the device-resident loop, this many steps per compiled call "
                        "(data on the device, batches and masks drawn there); 0: keras fit")
    p.add_argument("--mask-counts", default="quantile", choices=["quantile", "reference"],
                   help="context/target token counts: one fixed low quantile, or the reference "
                        "collator's per-batch minima in a few static shapes (as vjepa2 pretrain)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("pretrain_seconds", "finetune_seconds", "pretrain_batch", "finetune_batch",
                 "probe_steps", "max_steps", "workers", "pretrain_steps", "finetune_steps",
                 "steps_per_call"):
        value = getattr(args, name)
        nonnegative = name in ("workers", "steps_per_call")
        if value is not None and (value < 0 if nonnegative else value <= 0):
            bound = ">= 0" if nonnegative else "> 0"
            print(f"train_arrays: error: --{name.replace('_', '-')} must be {bound}; received "
                  f"{value}", file=sys.stderr)
            return 2
    if not Path(args.arrays).is_file():
        print(f"train_arrays: error: no array file {args.arrays}", file=sys.stderr)
        return 2
    out = Path(args.out)
    taken = [p for p in (out / "summary.json", out / "pretrain", out / "world_model")
             if p.exists()]
    if taken:
        print(f"train_arrays: error: --out {out} already holds a run ({taken[0].name}); choose "
              "another folder", file=sys.stderr)
        return 2
    t0 = time.time()
    data = load_arrays(args.arrays)
    E, F = data["frames"].shape[:2]
    for name, need in (("--frames", args.frames), ("--clip-length", args.clip_length)):
        if need > F:
            print(f"train_arrays: error: {name} {need} > {F} frames per episode",
                  file=sys.stderr)
            return 2
    print(f"{E} episodes x {F} frames of {data['frames'].shape[2]} px loaded in "
          f"{time.time() - t0:.1f} s", flush=True)
    import keras

    unknown = sorted(set(args.overrides) - {"encoder", "predictor", "ac_predictor"})
    if not isinstance(args.overrides, dict) or unknown:
        print(f"train_arrays: error: --overrides takes encoder, predictor and ac_predictor; "
              f"received {unknown or args.overrides!r}", file=sys.stderr)
        return 2
    patch = args.overrides.get("encoder", {}).get("patch_size", 16)
    tubelet = args.overrides.get("encoder", {}).get("tubelet_size", 2)
    size = data["frames"].shape[2]
    grid = (args.frames // tubelet, size // patch, size // patch)
    # Fork the mask workers before the backend starts its threads.
    args.mask_grid = grid
    print(f"backend {keras.backend.backend()}", flush=True)
    if args.steps_per_call and keras.backend.backend() != "jax":
        print("train_arrays: error: --steps-per-call needs KERAS_BACKEND=jax; the backend is "
              f"{keras.backend.backend()}", file=sys.stderr)
        return 2
    summary = {}
    if args.encoder is None and (args.workers == 0 or args.steps_per_call):
        _init_masks(grid, args.seed, args.mask_counts)
        summary["pretrain"] = pretrain_phase(args, data, None, out / "pretrain")
    elif args.encoder is None:
        ctx = mp.get_context("fork")
        with ctx.Pool(args.workers, initializer=_init_masks,
                      initargs=(grid, args.seed, args.mask_counts)) as pool:
            summary["pretrain"] = pretrain_phase(args, data, pool, out / "pretrain")
    encoder_run = Path(args.encoder) if args.encoder else out / "pretrain"
    summary["finetune"] = finetune_phase(args, data, encoder_run, out / "world_model")
    summary["episodes"], summary["frames_per_episode"] = int(E), int(F)
    from vjepa2.files import atomic_write

    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
