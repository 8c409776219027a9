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
from vjepa2.train.family import CONTENT, IMAGE_MASKS
from vjepa2.train.distribute import (COORDINATOR_HELP, DISTRIBUTE_CHOICES, DISTRIBUTE_HELP,
                                     NUM_PROCESSES_HELP, PROCESS_ID_HELP,
                                     check_distribution_fields, start_distribution)
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
    distribute: str = opt("none", DISTRIBUTE_HELP, choices=DISTRIBUTE_CHOICES)
    coordinator: str | None = opt(None, COORDINATOR_HELP)
    num_processes: int | None = opt(None, NUM_PROCESSES_HELP)
    process_id: int | None = opt(None, PROCESS_ID_HELP)
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
    motion_pairs: int | None = opt(None, "MC-JEPA: frame pairs per step that the flow loss "
                                   "sees, the batch's first (default: all)")
    mask_counts: str = opt("quantile", "V-JEPA 2 context/target tokens per clip: quantile (one "
                           "fixed low count per mask set) or reference (the reference "
                           "collator's per-batch minimum, in up to 3 shapes per mask set)",
                           choices=("quantile", "reference"))
    content: str = opt("all", "with --videos and --images: what the content (JEPA) loss reads: "
                       "all (clips and images, averaged, as V-JEPA 2 mixes them) or images (as "
                       "MC-JEPA's paper: the clips then feed only the flow loss of "
                       "--motion-weight)", choices=CONTENT)
    image_masks: str = opt("multiblock", "with --videos and --images: the images' masks: "
                           "multiblock (V-JEPA 2's two sets on one tubelet) or ijepa (I-JEPA's "
                           "4 target blocks and one context block)",
                           choices=IMAGE_MASKS)
    jit: str = opt("auto", "XLA-compile the training step: auto (JAX always; TensorFlow on one "
                   "device, where it measured 1.6x faster on the CPU), on or off",
                   choices=("auto", "on", "off"))
    init_encoder: str | None = opt(None, "warm start: the encoder weights of a preset folder, "
                                   "a pretraining run or a world model (its encoder/); the "
                                   "predictor starts fresh from --preset")

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
        check_distribution_fields(self)


def warm_start(encoder, folder: str) -> None:
    """Copies the weights of the encoder in `folder` (a preset folder, or a run or world model
    folder holding `encoder/`) into `encoder`; raises `UsageError` if they do not fit."""
    from pathlib import Path

    path = Path(folder)
    if (path / "encoder").is_dir():
        path = path / "encoder"
    if not path.is_dir():
        raise UsageError(f"--init-encoder {folder} is not a folder")
    source = type(encoder).from_preset(str(path))
    shapes = [tuple(w.shape) for w in source.weights]
    if shapes != [tuple(w.shape) for w in encoder.weights]:
        raise UsageError(f"--init-encoder {folder} holds an encoder of another size than "
                         f"--preset's ({source.embed_dim} wide, {len(source.blocks)} blocks)")
    encoder.set_weights(source.get_weights())


def build_trainer(config: PretrainConfig, preset_overrides: dict | None = None):
    """Builds the compiled `JEPAPretrainer` (encoder, predictor, EMA teacher, AdamW).

    Must be called inside a `tf.distribute` strategy scope or after
    `keras.distribution.set_distribution` when training is distributed.
    """
    from vjepa2.models import MaskedPredictor
    from vjepa2.train.family import build_encoder, make_sampler, member_of
    from vjepa2.train.jepa import JEPAPretrainer
    from vjepa2.train.optim import make_adamw
    from vjepa2.train.schedules import WarmupStableDecay

    overrides = preset_overrides or {}
    try:
        encoder = build_encoder(config, overrides.get("encoder", {}))
        if config.init_encoder:
            warm_start(encoder, config.init_encoder)
        predictor = MaskedPredictor.from_preset(
            config.preset, encoder_dim=encoder.embed_dim, **overrides.get("predictor", {}))
    except ValueError as error:
        raise UsageError(str(error)) from None
    sampler = make_sampler(config, encoder.patch_size, encoder.tubelet_size)
    kwargs = dict(num_mask_sets=len(sampler.mask_sets),
                  ema_start=config.ema[0], ema_end=config.ema[1], total_steps=config.steps,
                  clip_grad=config.clip_grad, content=config.content)
    if member_of(config) == "motion":
        from vjepa2.train.mc_jepa import MCJEPAPretrainer

        trainer = MCJEPAPretrainer(encoder, predictor, motion_weight=config.motion_weight,
                                   motion_pairs=config.motion_pairs,
                                   flow_config=overrides.get("flow_head", {}), **kwargs)
    else:
        trainer = JEPAPretrainer(encoder, predictor, **kwargs)
    trainer.build()
    warmup, decay = config.resolved_schedule()
    schedule = WarmupStableDecay(config.start_lr, config.lr, config.final_lr, warmup, decay,
                                 config.steps)
    optimizer = make_adamw(trainer, schedule, weight_decay=config.weight_decay)
    trainer.compile(optimizer=optimizer, jit_compile=use_xla(config))
    return trainer


def use_xla(config: PretrainConfig) -> bool:
    """Whether the training step is XLA-compiled. JAX: always (without jit it would run op by
    op). TensorFlow: on one device by default (2-core CPU, tiny preset, 128 px, batch 8: 0.35
    against 0.55 s/step, docs/benchmarks.md); not under a `tf.distribute` strategy, whose
    multi-worker path the jitted step was not tested with."""
    import keras

    if config.jit != "auto":
        return config.jit == "on"
    if keras.backend.backend() == "jax":
        return True
    import tensorflow as tf

    return config.distribute == "none" and not tf.distribute.has_strategy()


def make_mask_sampler(config: PretrainConfig, patch_size=16, tubelet_size=2):
    """The mask sampler of the config's family member (see `vjepa2.train.family`)."""
    from vjepa2.train.family import make_sampler

    return make_sampler(config, patch_size, tubelet_size)


def make_pretrain_dataset(config: PretrainConfig, sampler, start_step: int = 0, gate=None,
                          shard: tuple[int, int] = (1, 0)):
    """The member's inputs (clips, images or spectrograms) + mask sets per batch; batch k
    depends only on (seed, k). With `shard = (workers, index)`, this worker's rows of each
    batch only (`vjepa2.data.shards`).

    Returns (dataset of dicts, stats of the files read). Close `gate` (a `PipelineGate`) before
    abandoning the dataset mid-run.
    """
    from vjepa2.data.video import PipelineGate
    from vjepa2.train.family import make_inputs, mix_images, with_mask_ids

    gate = gate if gate is not None else PipelineGate()
    inputs, stats = make_inputs(config, start_step, gate, shard)
    dataset = with_mask_ids(inputs, sampler, config.batch_size, start_step, gate, shard)
    if config.images and config.videos:
        dataset = mix_images(dataset, config, sampler, start_step, gate, shard)
    return dataset, stats


def _open_run_folder(config: PretrainConfig, resume: bool, preset_overrides, chief=True):
    """Checks the run folder; the chief records the run's settings; returns (manager, state,
    overrides). Other workers of a multi-worker run only read it."""
    manager, state = check_run_folder(
        config.out, config.to_json(), resume,
        ("preset", "batch_size", "frames", "resolution", "fps", "seed", "images", "audio",
         "audio_frames", "mask_curriculum", "motion_weight"), clean=chief)
    out = Path(config.out)
    if state is not None and preset_overrides is None:
        preset_overrides = json.loads((out / CONFIG_FILE).read_text()).get("preset_overrides")
    if chief:
        out.mkdir(parents=True, exist_ok=True)
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

    Under several workers (`--distribute multi_worker`, or JAX processes) every worker calls
    this; only the chief writes into `config.out` (see `vjepa2.train.distribute`).

    Raises:
        UsageError: bad input (paths, values, a run folder in the way).
        RuntimeError: the loss became NaN/inf or diverged (the last good checkpoint is kept).
    """
    import keras

    from vjepa2.train.family import check_sources

    distribution = start_distribution(config)  # first: before anything runs on the backend
    check_sources(config)  # a missing or empty source fails before anything is built
    distribution.check_batch(config.batch_size)
    manager, state, preset_overrides = _open_run_folder(config, resume, preset_overrides,
                                                        distribution.chief)
    precision = resolve_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(config.seed)

    with distribution.scope():
        trainer = build_trainer(config, preset_overrides)
    start_step = 0
    if state is not None:
        state = manager.restore(trainer, trainer.optimizer)
        start_step = int(state["step"])
    with distribution.output_folder(config.out) as out:
        if start_step >= config.steps:
            if verbose:
                print(f"run in {config.out} is already at step {start_step} >= --steps "
                      f"{config.steps}")
            # A run stopped between its last checkpoint and the final save still gets its
            # models.
            _save_models(trainer, out)
            return {"step": start_step, "stopped": "complete"}
        return _train(config, trainer, distribution, out, start_step,
                      verbose if distribution.chief else 0, extra_callbacks, precision)


def _train(config: PretrainConfig, trainer, distribution, out: Path, start_step: int,
           verbose: int, extra_callbacks, precision: str) -> dict:
    """Fits from `start_step`, writing run files into `out` (this worker's output folder)."""
    import keras

    from vjepa2.data.video import PipelineGate
    from vjepa2.train.callbacks import make_guard, stopped_message, training_callbacks
    from vjepa2.train.checkpoint import CheckpointManager

    sampler = make_mask_sampler(config, trainer.encoder.patch_size, trainer.encoder.tubelet_size)
    gate = PipelineGate()
    dataset, stats = make_pretrain_dataset(config, sampler, start_step, gate, distribution.shard)
    manager = CheckpointManager(out / "checkpoints")

    def save(model, step):
        manager.save(model, model.optimizer, step,
                     {"data_index": step * config.batch_size, "bad_videos": stats.counts})

    # The guard reads the run's own metrics on every worker, so all stop at the same step.
    guard = make_guard(Path(config.out), config, start_step)
    callbacks = training_callbacks(out, config, start_step, save, guard, verbose,
                                   "pretrain") + list(extra_callbacks)
    if verbose:
        from vjepa2.train.family import input_shape, member_of

        source = config.videos or config.images or config.audio
        print(f"pretraining {config.preset} ({member_of(config)}) on {source}: steps "
              f"{start_step} -> {config.steps}, batch {config.batch_size} x "
              f"{input_shape(config)}, precision {precision}, backend "
              f"{keras.backend.backend()}, {distribution.describe()}", flush=True)
    preview = next(iter(dataset)) if hasattr(trainer, "flow_head") else None
    started = time.time()
    try:
        trainer.fit(distribution.dataset(dataset, config.batch_size), epochs=1,
                    steps_per_epoch=config.steps - start_step, callbacks=callbacks,
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
    return {"step": final["step"], "seconds": seconds, "run": str(config.out)}
