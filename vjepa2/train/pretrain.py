"""`vjepa2 pretrain`: V-JEPA 2 self-supervised pretraining on a folder (or CSV) of videos.

The other members of the JEPA family run through the same command, trainer and run folder
(`vjepa2.train.family`): I-JEPA on images (`--images`), A-JEPA on audio (`--audio`), MC-JEPA
(`--videos` with `--motion-weight`).

A run folder holds:
    config.json        the PretrainConfig and the model configs
    metrics.jsonl      one line per step: loss, per-mask-set losses, lr, ema, teacher_std
    checkpoints/       atomic checkpoints for exact resume (see checkpoint.py)
    logs/              TensorBoard event files (TensorFlow installed)
    encoder/           the EMA target encoder as a preset folder (what fine-tuning loads)
    predictor/         the masked predictor as a preset folder
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from vjepa2.errors import UsageError
from vjepa2.train.config import (DIVERGENCE_FACTOR_HELP, DIVERGENCE_STEPS_HELP,
                                 TrainingConfigMixin, check, opt)
from vjepa2.train.run_folder import (CONFIG_FILE, check_run_folder, record_settings,
                                     resolve_precision)

__all__ = ["PretrainConfig", "build_trainer", "make_mask_sampler", "make_pretrain_dataset",
           "pretrain", "resolve_precision"]


@dataclasses.dataclass(frozen=True)
class PretrainConfig(TrainingConfigMixin):
    """Everything a pretraining run depends on; stored in the run folder.

    `warmup_steps` and `decay_steps` of None default to 10% and 20% of `steps`
    (`resolved_schedule()`).
    """

    out: str = opt(help="run folder (checkpoints, metrics, logs)")
    steps: int = opt(help="optimizer steps")
    videos: str | None = opt(None, "folder of .mp4/.webm/.mkv/.avi files, or a CSV of "
                             "path[,label]")
    preset: str = opt("tiny", "model preset name (tiny, small, large, huge, giant) or a preset "
                      "folder")
    batch_size: int = opt(8, "clips per step")
    frames: int = opt(8, "frames per clip")
    resolution: int = opt(128, "frame size in px")
    fps: float = opt(4.0, "clip sampling rate (frames/s)")
    lr: float = opt(5.25e-4, "peak learning rate")
    start_lr: float = opt(1e-4, "learning rate at step 0")
    final_lr: float = opt(1e-6, "learning rate after decay")
    warmup_steps: int | None = opt(None, "linear warmup steps (default: 10% of --steps)")
    decay_steps: int | None = opt(None, "final linear decay steps (default: 20% of --steps)")
    weight_decay: float = opt(0.04, "AdamW weight decay")
    ema: tuple[float, float] = opt((0.99925, 0.99925), "EMA teacher momentum, linearly "
                                   "scheduled from START to END", metavar=("START", "END"))
    clip_grad: float | None = opt(None, "global gradient-norm clip (default: none)")
    checkpoint_every: int = opt(100, "steps between checkpoints")
    divergence_factor: float = opt(10.0, DIVERGENCE_FACTOR_HELP)
    divergence_steps: int = opt(5, DIVERGENCE_STEPS_HELP)
    seed: int = opt(0, "random seed")
    workers: int | None = opt(None, "parallel video decoders (default: CPU count)")
    distribute: str = opt(
        "none", "multi-device training: tf.distribute.MirroredStrategy (TensorFlow, one host), "
        "MultiWorkerMirroredStrategy (TensorFlow, hosts from TF_CONFIG) or "
        "keras.distribution.DataParallel (JAX, all devices of all processes)",
        choices=("none", "mirrored", "multi_worker", "data_parallel"))
    precision: str = opt("auto", "auto: mixed_bfloat16 where a GPU is present, else float32",
                         choices=("auto", "float32", "mixed_bfloat16"))
    images: str | None = opt(None, "I-JEPA: folder of PNG/JPEG images (recursive) or a CSV of "
                             "path[,label]; trains an image encoder at --resolution (with "
                             "--videos: --batch-size images per step mixed into the clips)")
    audio: str | None = opt(None, "A-JEPA: folder of wav/flac/mp3/ogg files (recursive) or a "
                            "CSV of path[,label]; trains on 128-bin log-mel spectrograms")
    audio_frames: int = opt(128, "A-JEPA: spectrogram frames per clip (10 ms hop; a multiple "
                            "of 16)")
    mask_curriculum: int | None = opt(None, "A-JEPA: steps over which time-frequency masks "
                                      "replace random blocks (default: half of --steps)")
    motion_weight: float = opt(0.0, "MC-JEPA: weight of the self-supervised optical-flow loss "
                               "on consecutive frames (0: off)")
    mask_counts: str = opt("quantile", "V-JEPA 2 context/target tokens per clip: quantile (one "
                           "fixed low count per mask set) or reference (the reference "
                           "collator's per-batch minimum, in up to 3 shapes per mask set)",
                           choices=("quantile", "reference"))

    def __post_init__(self):
        from vjepa2.train.family import check_family_fields

        self.check_training_fields()
        check_family_fields(self)
        check(self.frames >= 2 and self.frames % 2 == 0,
              f"frames must be an even number >= 2 (tubelets of 2); received {self.frames}")
        check(self.resolution >= 16 and self.resolution % 16 == 0,
              f"resolution must be a multiple of 16; received {self.resolution}")
        check(self.fps > 0, f"fps must be > 0; received {self.fps}")
        check(all(0.0 <= m <= 1.0 for m in self.ema),
              f"ema momentum must be in [0, 1]; received {tuple(self.ema)}")
        check(self.mask_counts in ("quantile", "reference"),
              f"mask_counts must be quantile or reference; received {self.mask_counts!r}")
        check(self.distribute in ("none", "mirrored", "multi_worker", "data_parallel"),
              f"distribute must be none, mirrored, multi_worker or data_parallel; received "
              f"{self.distribute!r}")


def build_trainer(config: PretrainConfig, preset_overrides: dict | None = None):
    """Builds the compiled `JEPAPretrainer` (encoder, predictor, EMA teacher, AdamW).

    Must be called inside a `tf.distribute` strategy scope or after
    `keras.distribution.set_distribution` when training is distributed.
    """
    import keras

    from vjepa2.models import MaskedPredictor
    from vjepa2.train.family import build_encoder, make_sampler, member_of
    from vjepa2.train.jepa import JEPAPretrainer
    from vjepa2.train.optim import make_adamw
    from vjepa2.train.schedules import WarmupStableDecay

    overrides = preset_overrides or {}
    try:
        encoder = build_encoder(config, overrides.get("encoder", {}))
        predictor = MaskedPredictor.from_preset(
            config.preset, encoder_dim=encoder.embed_dim, **overrides.get("predictor", {}))
    except ValueError as error:
        raise UsageError(str(error)) from None
    sampler = make_sampler(config, encoder.patch_size, encoder.tubelet_size)
    kwargs = dict(num_mask_sets=len(sampler.mask_sets),
                  ema_start=config.ema[0], ema_end=config.ema[1], total_steps=config.steps,
                  clip_grad=config.clip_grad)
    if member_of(config) == "motion":
        from vjepa2.train.mc_jepa import MCJEPAPretrainer

        trainer = MCJEPAPretrainer(encoder, predictor, motion_weight=config.motion_weight,
                                   flow_config=overrides.get("flow_head", {}), **kwargs)
    else:
        trainer = JEPAPretrainer(encoder, predictor, **kwargs)
    trainer.build()
    warmup, decay = config.resolved_schedule()
    schedule = WarmupStableDecay(config.start_lr, config.lr, config.final_lr, warmup, decay,
                                 config.steps)
    optimizer = make_adamw(trainer, schedule, weight_decay=config.weight_decay)
    # XLA on JAX (no jit would run op by op); on TensorFlow, XLA measured slower to compile
    # and no faster to run on CPU.
    trainer.compile(optimizer=optimizer, jit_compile=keras.backend.backend() == "jax")
    return trainer


def make_mask_sampler(config: PretrainConfig, patch_size=16, tubelet_size=2):
    """The mask sampler of the config's family member (see `vjepa2.train.family`)."""
    from vjepa2.train.family import make_sampler

    return make_sampler(config, patch_size, tubelet_size)


def make_pretrain_dataset(config: PretrainConfig, sampler, start_step: int = 0, gate=None):
    """The member's inputs (clips, images or spectrograms) + mask sets per batch; batch k
    depends only on (seed, k).

    Returns (dataset of dicts, stats of the files read). Close `gate` (a `PipelineGate`) before
    abandoning the dataset mid-run.
    """
    from vjepa2.data.video import PipelineGate
    from vjepa2.train.family import make_inputs, mix_images, with_mask_ids

    gate = gate if gate is not None else PipelineGate()
    inputs, stats = make_inputs(config, start_step, gate)
    dataset = with_mask_ids(inputs, sampler, config.batch_size, start_step, gate)
    if config.images and config.videos:
        dataset = mix_images(dataset, config, sampler, start_step, gate)
    return dataset, stats


def _strategy_scope(distribute: str):
    import contextlib

    import keras

    if distribute == "none":
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if distribute in ("mirrored", "multi_worker"):
        if backend != "tensorflow":
            raise UsageError(f"--distribute {distribute} needs the tensorflow backend; the "
                             f"active backend is {backend} (use data_parallel with jax)")
        import tensorflow as tf

        if distribute == "multi_worker":
            # Hosts and this worker's index come from the TF_CONFIG environment variable.
            return tf.distribute.MultiWorkerMirroredStrategy().scope()
        return tf.distribute.MirroredStrategy().scope()
    if backend != "jax":
        raise UsageError(f"--distribute data_parallel needs the jax backend; the active backend "
                         f"is {backend} (use mirrored with tensorflow)")
    # Multi-host JAX: every process calls keras.distribution.initialize() (or
    # jax.distributed.initialize) first; list_devices() then spans all hosts.
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
    return contextlib.nullcontext()


def _check_run_folder(config: PretrainConfig, resume: bool):
    return check_run_folder(config.out, config.to_json(), resume,
                            ("preset", "batch_size", "frames", "resolution", "fps", "seed",
                             "images", "audio", "audio_frames", "mask_curriculum",
                             "motion_weight"))


def _open_run_folder(config: PretrainConfig, resume: bool, preset_overrides):
    """Checks the run folder; records the run's settings; returns (manager, state, overrides)."""
    manager, state = _check_run_folder(config, resume)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if state is not None and preset_overrides is None:
        preset_overrides = json.loads((out / CONFIG_FILE).read_text()).get("preset_overrides")
    record_settings(out, {**config.to_json(), "preset_overrides": preset_overrides or {}},
                    None if state is None else state["step"])
    return manager, state, preset_overrides


def _save_models(trainer, out: Path, preview=None) -> None:
    """The EMA teacher (what fine-tuning loads) and the predictor as preset folders; for
    MC-JEPA also the flow head, the student encoder it reads and `flow.png` of `preview`."""
    trainer.teacher.save_to_preset(out / "encoder")
    trainer.predictor.save_to_preset(out / "predictor")
    if hasattr(trainer, "flow_head"):  # MC-JEPA: the flow head reads the student's tokens
        from vjepa2.train.mc_jepa import write_flow_picture

        trainer.flow_head.save_to_preset(out / "flow_head")
        trainer.encoder.save_to_preset(out / "student_encoder")
        if preview is not None:
            write_flow_picture(trainer, preview["video"], out / "flow.png")


def pretrain(config: PretrainConfig, resume: bool = False, verbose: int = 1,
             preset_overrides: dict | None = None, extra_callbacks=()):
    """Runs (or resumes) pretraining; returns a summary dict.

    Raises:
        UsageError: bad input (paths, values, a run folder in the way).
        RuntimeError: the loss became NaN/inf or diverged (the last good checkpoint is kept).
    """
    import keras

    from vjepa2.train.callbacks import make_guard, stopped_message, training_callbacks
    from vjepa2.train.family import check_sources

    check_sources(config)  # a missing or empty source fails before anything is built
    manager, state, preset_overrides = _open_run_folder(config, resume, preset_overrides)
    out = Path(config.out)
    precision = resolve_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(config.seed)

    with _strategy_scope(config.distribute):
        trainer = build_trainer(config, preset_overrides)
    start_step = 0
    if state is not None:
        state = manager.restore(trainer, trainer.optimizer)
        start_step = int(state["step"])
    if start_step >= config.steps:
        if verbose:
            print(f"run in {out} is already at step {start_step} >= --steps {config.steps}")
        # A run stopped between its last checkpoint and the final save still gets its models.
        _save_models(trainer, out)
        return {"step": start_step, "stopped": "complete"}

    from vjepa2.data.video import PipelineGate

    sampler = make_mask_sampler(config, trainer.encoder.patch_size, trainer.encoder.tubelet_size)
    gate = PipelineGate()
    dataset, stats = make_pretrain_dataset(config, sampler, start_step, gate)

    def save(model, step):
        manager.save(model, model.optimizer, step,
                     {"data_index": step * config.batch_size, "bad_videos": stats.counts})

    guard = make_guard(out, config, start_step)
    callbacks = training_callbacks(out, config, start_step, save, guard, verbose,
                                   "pretrain") + list(extra_callbacks)
    if verbose:
        from vjepa2.train.family import input_shape, member_of

        source = config.videos or config.images or config.audio
        print(f"pretraining {config.preset} ({member_of(config)}) on {source}: steps "
              f"{start_step} -> {config.steps}, batch {config.batch_size} x "
              f"{input_shape(config)}, precision {precision}, backend "
              f"{keras.backend.backend()}", flush=True)
    preview = next(iter(dataset)) if hasattr(trainer, "flow_head") else None
    started = time.time()
    try:
        trainer.fit(dataset, epochs=1, steps_per_epoch=config.steps - start_step,
                    callbacks=callbacks,
                    verbose=0, shuffle=False)
    finally:
        # Python calls in flight inside tf.data would deadlock the iterator's destructor.
        gate.close()
    seconds = time.time() - started
    if verbose:
        print(stats.summary())
    if guard.bad_step is not None:
        raise RuntimeError(stopped_message(guard, manager, "Try a lower --lr or --clip-grad, "
                                           "then --resume."))
    _save_models(trainer, out, preview)
    final = manager.latest_state()
    return {"step": final["step"], "seconds": seconds, "run": str(out)}

