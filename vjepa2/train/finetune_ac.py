"""`vjepa2 finetune-ac`: train the action-conditioned predictor on RLDS robot logs.

The encoder of a pretraining run (its EMA target `encoder/`) or an encoder preset folder is
frozen; the predictor learns with teacher-forcing + 2-step rollout L1 (`vjepa2.train.ac`).

A run folder holds:
    config.json        the FinetuneACConfig and the predictor overrides
    metrics.jsonl      one line per step: loss, loss_tf, loss_rollout, latent_std, lr
    checkpoints/       atomic checkpoints for exact resume (weights, optimizer, data position)
    logs/              TensorBoard event files (TensorFlow backend)
    encoder/           the frozen encoder (bit-identical to the one given)
    ac_predictor/      the trained predictor
    conventions.json   units, deltas, frame stride, frame size/normalization, key mapping
The last three are what `vjepa2.models.world_model.load_world_model(RUN)` loads.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from vjepa2.errors import UsageError
from vjepa2.train.config import (DIVERGENCE_FACTOR_HELP, DIVERGENCE_STEPS_HELP,
                                 TrainingConfigMixin, check, opt)
from vjepa2.train.distribute import (COORDINATOR_HELP, DISTRIBUTE_CHOICES, DISTRIBUTE_HELP,
                                     NUM_PROCESSES_HELP, PROCESS_ID_HELP,
                                     check_distribution_fields, start_distribution)
from vjepa2.train.run_folder import (CONFIG_FILE, check_run_folder, record_settings,
                                     resolve_precision)

KEYMAPS = ("default", "droid")
# This project's Fetch logs (envs.collect.ACTION_CONVENTION): xyz actions are end-effector
# target deltas in units of 0.05 m; the gripper command is not a state increment.
_FETCH_CONVENTIONS = dict(
    action_delta_dims=(0, 1, 2), state_delta_dims=(0, 1, 2),
    action_to_state_scale=(0.05, 0.05, 0.05), env_step_seconds=0.04)


@dataclasses.dataclass(frozen=True)
class FinetuneACConfig(TrainingConfigMixin):
    """Everything a fine-tuning run depends on; stored in the run folder.

    `warmup_steps` and `decay_steps` of None default to 10% and 20% of `steps`.
    """

    encoder: str = opt(help="a pretraining run folder (its encoder/ is used) or an encoder "
                       "preset folder")
    logs: str = opt(help="RLDS dataset folder (TFDS on-disk format)")
    out: str = opt(help="run folder")
    steps: int = opt(help="optimizer steps")
    preset: str = opt("tiny", "action-conditioned predictor preset (tiny, small, large)")
    keymap: str = opt("default", "RLDS key mapping: 'default' (this project's logs), 'droid', "
                      "or a JSON file with image/state/action keys")
    batch_size: int = opt(8, "clips per step")
    clip_length: int = opt(4, "frames per training clip")
    frame_stride: int = opt(1, "environment steps between frames (actions summed across them)")
    image_size: int | None = opt(None, "resize frames to this size (default: as logged)")
    lr: float = opt(4.25e-4, "peak learning rate")
    start_lr: float = opt(7.5e-5, "learning rate at step 0")
    final_lr: float = opt(0.0, "learning rate after decay")
    warmup_steps: int | None = opt(None, "linear warmup steps (default: 10% of --steps)")
    decay_steps: int | None = opt(None, "final linear decay steps (default: 20% of --steps)")
    weight_decay: float = opt(0.04, "AdamW weight decay")
    clip_grad: float | None = opt(None, "global gradient-norm clip (default: none)")
    checkpoint_every: int = opt(100, "steps between checkpoints")
    divergence_factor: float = opt(10.0, DIVERGENCE_FACTOR_HELP)
    divergence_steps: int = opt(5, DIVERGENCE_STEPS_HELP)
    seed: int = opt(0, "random seed")
    precision: str = opt("auto", "auto: mixed_bfloat16 where a GPU is present, else float32",
                         choices=("auto", "float32", "mixed_bfloat16"))
    augment: bool = opt(False, "per-clip colour and viewpoint augmentation "
                        "(vjepa2.data.augment), for logs from few scene settings")
    data_shards: int | None = opt(None, "split the logs' episode files into this many shards, "
                                  "each giving batch-size/N clips of every batch; workers read "
                                  "only their own shards (default: the number of workers; on "
                                  "--resume, the run's own)")
    distribute: str = opt("none", DISTRIBUTE_HELP, choices=DISTRIBUTE_CHOICES)
    coordinator: str | None = opt(None, COORDINATOR_HELP)
    num_processes: int | None = opt(None, NUM_PROCESSES_HELP)
    process_id: int | None = opt(None, PROCESS_ID_HELP)

    def __post_init__(self):
        self.check_training_fields()
        check(self.clip_length >= 3,
              f"clip length must be >= 3 (the 2-step rollout loss needs 3 frames); received "
              f"{self.clip_length}")
        check(self.frame_stride >= 1, f"frame stride must be >= 1; received {self.frame_stride}")
        check(self.image_size is None or (self.image_size >= 16 and self.image_size % 16 == 0),
              f"image size must be a multiple of 16; received {self.image_size}")
        check(self.keymap in KEYMAPS or self.keymap.endswith(".json"),
              f"keymap must be 'default', 'droid' or a .json file; received {self.keymap!r}")
        check(self.data_shards is None or self.data_shards >= 1,
              f"data_shards must be >= 1; received {self.data_shards}")
        check(self.data_shards is None or self.batch_size % self.data_shards == 0,
              f"batch size {self.batch_size} must split evenly over {self.data_shards} data "
              "shards")
        check_distribution_fields(self)


# ----------------------------------------------------------------------------------- inputs


def resolve_encoder_dir(encoder: str) -> Path:
    """A pretraining run folder (its `encoder/`) or an encoder preset folder."""
    path = Path(encoder)
    if (path / "encoder" / "config.json").is_file():
        return path / "encoder"
    if (path / "config.json").is_file() and (path / "model.weights.h5").is_file():
        return path
    raise UsageError(f"--encoder {encoder} is neither a pretraining run folder (with encoder/) "
                     "nor an encoder preset folder (config.json + model.weights.h5)")


def resolve_keymap(keymap: str):
    """Returns `(KeyMap, conventions overrides dict)` for 'default', 'droid' or a JSON file.

    A JSON file holds the `KeyMap` fields (`image`, `state`, `action`, `delta_action_dims`,
    `action_from_state`) and optionally `conventions` (fields of `WorldModelConventions`:
    `action`, `state`, `action_delta_dims`, `state_delta_dims`, `action_to_state_scale`,
    `action_low`, `action_high`, `env_step_seconds`).
    """
    from vjepa2.data.rlds import DROID_KEYMAP, KeyMap

    if keymap == "default":
        return KeyMap(), dict(_FETCH_CONVENTIONS)
    if keymap == "droid":
        # V-JEPA 2-AC trains on DROID with state differences as actions (its logged actions
        # are absolute), so every action dim increments its state dim one for one.
        return dataclasses.replace(DROID_KEYMAP, action_from_state=True), {"state_deltas": 1.0}
    path = Path(keymap)
    if not path.is_file():
        raise UsageError(f"--keymap file not found: {keymap}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"--keymap {keymap} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--keymap {keymap} must hold a JSON object")
    conventions = data.pop("conventions", {})
    fields = {f.name for f in dataclasses.fields(KeyMap)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise UsageError(f"--keymap {keymap} has unknown keys {unknown}; known: "
                         f"{sorted(fields)} and 'conventions'")
    for key in ("state", "action"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    if data.get("delta_action_dims") is not None:
        data["delta_action_dims"] = tuple(data["delta_action_dims"])
    key_map = KeyMap(**data)
    if key_map.action_from_state and "action_delta_dims" not in conventions:
        conventions = dict(conventions, state_deltas=1.0)
    return key_map, conventions


def dataset_description(logs: str) -> dict:
    """The RLDS dataset's own metadata (our collector stores its action/state conventions)."""
    path = Path(logs) / "metadata.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def make_conventions(config: FinetuneACConfig, keymap, overrides: dict, action_dim: int,
                     state_dim: int, image_size: int):
    """The `WorldModelConventions` of a run, from the key mapping, the logs and the config."""
    from vjepa2.models.world_model import WorldModelConventions

    overrides = dict(overrides)
    described = dataset_description(config.logs).get("conventions", {})
    if overrides.pop("state_deltas", None) is not None:
        dims = tuple(range(min(action_dim, state_dim)))
        overrides.update(action_delta_dims=dims, state_delta_dims=dims,
                         action_to_state_scale=(1.0,) * len(dims))
    action_text = overrides.pop("action", described.get("action", "as logged"))
    state_text = overrides.pop("state", described.get("state", "as logged"))
    for key in ("env_step_seconds", "view", "frame_views"):  # what the logs' collector said
        if key in described:
            overrides.setdefault(key, described[key])
    if config.keymap == "default" and "action_low" not in overrides:
        # Fetch actions are in [-1, 1] per env step; delta dims add up over the stride.
        stride = float(config.frame_stride)
        delta = set(overrides.get("action_delta_dims", ()))
        overrides["action_high"] = tuple(stride if d in delta else 1.0
                                         for d in range(action_dim))
        overrides["action_low"] = tuple(-v for v in overrides["action_high"])
    keymap_json = {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(keymap).items()}
    summed = str(list(keymap.summed_action_dims(action_dim)))
    return WorldModelConventions(
        action_dim=action_dim, state_dim=state_dim, image_size=image_size,
        frame_stride=config.frame_stride,
        action=f"{action_text}; summed over {config.frame_stride} env step(s) on the delta dims "
        f"({summed}), averaged on the others; unnormalized",
        state=state_text, keymap=keymap_json, **overrides)


def make_finetune_dataset(config: FinetuneACConfig, keymap, start_step: int = 0,
                          shards: range | None = None):
    """Shuffled, repeated clip batches; batch k depends only on (seed, k).

    The logs' episode files are split into `config.data_shards` shards (S, default 1), each a
    clip stream of its own giving `batch_size // S` clips of every batch, side by side in
    shard order. `shards` (default: all) picks those this worker reads: a worker of a
    multi-worker run reads only its own episodes, and its rows together with the other
    workers' are the batch one process reads with the same S.
    """
    import tensorflow as tf

    count = config.data_shards or 1
    parts = [_shard_stream(config, keymap, start_step, (count, i))
             for i in (range(count) if shards is None else shards)]
    if len(parts) == 1:
        return parts[0]
    return tf.data.Dataset.zip(tuple(parts)).map(
        lambda *batches: {k: tf.concat([b[k] for b in batches], 0) for k in batches[0]})


def _shard_stream(config: FinetuneACConfig, keymap, start_step: int, shard: tuple[int, int]):
    """Batches of one episode shard: `batch_size // shards` clips a step."""
    from vjepa2.data.rlds import make_clip_dataset

    count, index = shard
    rows = config.batch_size // count
    dataset = make_clip_dataset(
        config.logs, keymap, clip_length=config.clip_length, frame_stride=config.frame_stride,
        batch_size=rows, shuffle=True, seed=config.seed, image_size=config.image_size,
        repeat=True, drop_remainder=True, start_index=start_step * rows, episode_shard=shard)
    keys = ("frames", "actions", "states")
    dataset = dataset.map(lambda batch: {k: batch[k] for k in keys})
    if config.augment:
        import tensorflow as tf

        from vjepa2.data.augment import ClipAugment, augment_clips

        ranges = ClipAugment()
        # Shard i of batch k draws from (seed, k * shards + i): (seed, k) with one shard.
        dataset = dataset.enumerate(start=start_step).map(
            lambda k, batch: dict(batch, frames=augment_clips(
                batch["frames"], tf.stack([tf.constant(config.seed, tf.int64),
                                           k * count + index]), ranges)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset


def _peek(config: FinetuneACConfig, keymap):
    """Frame size, action and state dims from one clip; an empty dataset fails here."""
    from vjepa2.data.rlds import make_clip_dataset

    clips = make_clip_dataset(config.logs, keymap, clip_length=config.clip_length,
                              frame_stride=config.frame_stride, batch_size=1, shuffle=False,
                              image_size=config.image_size)
    for batch in clips.take(1):
        return (int(batch["frames"].shape[2]), int(batch["frames"].shape[3]),
                int(batch["actions"].shape[-1]), int(batch["states"].shape[-1]))
    raise UsageError(f"no clip of {config.clip_length} frames at stride {config.frame_stride} "
                     f"in {config.logs}: episodes too short or the dataset is empty")


def build_trainer(config: FinetuneACConfig, action_dim: int, state_dim: int,
                  predictor_overrides: dict | None = None):
    """Builds the compiled `ACTrainer`: the frozen encoder from `config.encoder`, a fresh
    predictor from the preset, AdamW over the predictor only with the WSD schedule."""
    from vjepa2.models import ActionConditionedPredictor, VideoEncoder
    from vjepa2.train.ac import ACTrainer
    from vjepa2.train.optim import make_adamw
    from vjepa2.train.schedules import WarmupStableDecay

    try:
        encoder = VideoEncoder.from_preset(resolve_encoder_dir(config.encoder))
        predictor = ActionConditionedPredictor.from_preset(
            config.preset, **{**(predictor_overrides or {}), "encoder_dim": encoder.embed_dim,
                              "action_dim": action_dim, "state_dim": state_dim})
    except ValueError as error:
        raise UsageError(str(error)) from None
    trainer = ACTrainer(encoder, predictor, clip_grad=config.clip_grad)
    trainer.build()
    warmup, decay = config.resolved_schedule()
    schedule = WarmupStableDecay(config.start_lr, config.lr, config.final_lr, warmup, decay,
                                 config.steps)
    optimizer = make_adamw(trainer, schedule, weight_decay=config.weight_decay)
    trainer.compile(optimizer=optimizer, jit_compile=False)
    return trainer


# ----------------------------------------------------------------------------------- the run

_RESUME_KEYS = ("encoder", "logs", "preset", "keymap", "batch_size", "clip_length",
                "frame_stride", "image_size", "seed", "augment")


def _resolve_data_shards(config: FinetuneACConfig, workers: int, saved: dict | None):
    """The config with its data shards set: as given, else the resumed run's own (1 for runs
    that predate the setting), else one per worker."""
    recorded = None if saved is None else (saved.get("data_shards") or 1)
    shards = config.data_shards or recorded or workers
    if recorded is not None and shards != recorded:
        raise UsageError(f"{config.out} holds a run with data_shards={recorded}; received "
                         f"data_shards={shards} (--resume needs the same value)")
    if shards % workers:
        raise UsageError(f"data shards ({shards}) must be a multiple of the workers ({workers}) "
                         "so that each reads whole shards; pass --data-shards")
    return dataclasses.replace(config, data_shards=shards)


def finetune_ac(config: FinetuneACConfig, resume: bool = False, verbose: int = 1,
                predictor_overrides: dict | None = None, extra_callbacks=()):
    """Runs (or resumes) fine-tuning; returns a summary dict.

    Under several workers (`--distribute multi_worker`, or JAX processes) every worker calls
    this; each reads its own episode shards and only the chief writes into `config.out` (see
    `vjepa2.train.distribute`).

    Raises:
        UsageError: bad input (paths, values, a run folder in the way, an empty dataset).
        RuntimeError: the loss became NaN/inf or diverged (the last good checkpoint is kept).
    """
    import keras

    from vjepa2.models.world_model import save_world_model

    distribution = start_distribution(config)  # first: before anything runs on the backend
    resolve_encoder_dir(config.encoder)  # bad paths fail before anything is built
    keymap, convention_overrides = resolve_keymap(config.keymap)
    distribution.check_batch(config.batch_size)
    manager, state = check_run_folder(config.out, config.to_json(), resume, _RESUME_KEYS,
                                      clean=distribution.chief)
    out = Path(config.out)
    saved = None if state is None else json.loads((out / CONFIG_FILE).read_text())
    config = _resolve_data_shards(config, distribution.workers, saved)
    if saved is not None and predictor_overrides is None:
        predictor_overrides = saved.get("predictor_overrides")
    height, width, action_dim, state_dim = _peek(config, keymap)
    if width % height:  # square camera images, one or several side by side
        raise UsageError(f"frames must be square camera images side by side (or pass "
                         f"--image-size); the logs hold {height}x{width}")
    conventions = make_conventions(config, keymap,
                                   {**convention_overrides, "frame_views": width // height},
                                   action_dim, state_dim, height)
    if distribution.chief:
        out.mkdir(parents=True, exist_ok=True)
        record_settings(out, {**config.to_json(),
                              "predictor_overrides": predictor_overrides or {}},
                        None if state is None else state["step"])
    precision = resolve_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(config.seed)
    with distribution.scope():
        trainer = build_trainer(config, action_dim, state_dim, predictor_overrides)
    if height % trainer.encoder.patch_size:
        raise UsageError(f"frame size {height} is not a multiple of the encoder's patch size "
                         f"{trainer.encoder.patch_size}; pass --image-size")
    start_step = 0 if state is None else int(manager.restore(trainer, trainer.optimizer)["step"])
    verbose = verbose if distribution.chief else 0
    if verbose and start_step < config.steps:
        print(f"fine-tuning a {config.preset} action-conditioned predictor on {config.logs}: "
              f"steps {start_step} -> {config.steps}, batch {config.batch_size} from "
              f"{config.data_shards} episode shard(s), {config.clip_length} frames of "
              f"{height}px at stride {config.frame_stride}, actions {action_dim}-D, states "
              f"{state_dim}-D, precision {precision}, backend {keras.backend.backend()}, "
              f"{distribution.describe()}")
    with distribution.output_folder(out) as folder:
        if start_step >= config.steps:
            if verbose:
                print(f"run in {out} is already at step {start_step} >= --steps {config.steps}")
            save_world_model(folder, trainer.encoder, trainer.predictor, conventions)
            return {"step": start_step, "stopped": "complete", "run": str(out)}
        summary = _train(config, keymap, trainer, distribution, folder, start_step, verbose,
                         extra_callbacks)
        save_world_model(folder, trainer.encoder, trainer.predictor, conventions)
    return summary


def _train(config: FinetuneACConfig, keymap, trainer, distribution, folder: Path,
           start_step: int, verbose: int, extra_callbacks) -> dict:
    """Fits from `start_step`, writing run files into `folder` (this worker's output folder)."""
    from vjepa2.train.callbacks import make_guard, stopped_message, training_callbacks
    from vjepa2.train.checkpoint import CheckpointManager

    per_worker = config.data_shards // distribution.workers
    shards = range(distribution.index * per_worker, (distribution.index + 1) * per_worker)
    dataset = make_finetune_dataset(config, keymap, start_step, shards)
    manager = CheckpointManager(folder / "checkpoints")

    def save(model, step):
        manager.save(model, model.optimizer, step, {"data_index": step * config.batch_size})

    # The guard reads the run's own metrics on every worker, so all stop at the same step.
    guard = make_guard(Path(config.out), config, start_step)
    callbacks = training_callbacks(folder, config, start_step, save, guard, verbose,
                                   "finetune-ac") + list(extra_callbacks)
    started = time.time()
    trainer.fit(distribution.dataset(dataset, config.batch_size), epochs=1,
                steps_per_epoch=config.steps - start_step, callbacks=callbacks, verbose=0,
                shuffle=False)
    seconds = time.time() - started
    if guard.bad_step is not None:
        raise RuntimeError(stopped_message(guard, manager, "Try a lower --lr, then --resume."))
    final = manager.latest_state()
    return {"step": final["step"], "seconds": seconds, "run": config.out}
