"""RLDS robot logs: write episodes in the TFDS on-disk format and read them as clip batches.

Layout written by `write_episode_file` + `finalize_dataset` (readable by
`tfds.builder_from_directory(out)`):

```
out/
  episodes/episode-00000012.tfrecord   one serialized episode per file (the source of truth)
  rlds-train.tfrecord-00000-of-00042   TFDS shard names: hard links to the episode files
  dataset_info.json, features.json     written last, each atomically
```

Each episode is an RLDS record: `steps` (a sequence of `observation`, `action`, `reward`,
`discount`, `is_first`, `is_last`, `is_terminal` and, as in Open X-Embodiment datasets, an
optional `language_instruction` text) and `episode_metadata`. Step i holds the observation seen
at time i and the action taken there; the final step (`is_last`) holds the last observation and a
zero action. The reader decodes only the keys its `KeyMap` names: other cameras, texts and
fields are left encoded, and datasets with or without `language_instruction` read alike.

Conventions of the clips `make_clip_dataset` yields (stored with checkpoints as
`CLIP_CONVENTIONS`): frame k of a clip is the observation at env step `start + k * frame_stride`;
`states[k]` is the proprio state at that step; `actions[k]` is the action that leads from frame
k to frame k+1: the sum over the `frame_stride` env actions taken in between for delta
dimensions (Fetch's xyz: metres / 0.05 per unit, so a summed value is the total commanded
displacement in those units), their mean for the others (Fetch's gripper command). The
V-JEPA 2-AC predictor predicts frame k+1 from frame k, state k and action k.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vjepa2.files import disk_full_guard

DATASET_NAME = "rlds"
EPISODES_DIR = "episodes"

CLIP_CONVENTIONS = {
    "frame_k": "observation at env step start + k * frame_stride",
    "action_k": "taken at frame k, leads to frame k+1; delta dims summed over the stride, "
    "other dims averaged",
    "state_k": "proprio state at frame k",
    "frames": "uint8 RGB (B, T, H, W, 3)",
}


@dataclass(frozen=True)
class KeyMap:
    """Where the reader finds images, states and actions in an RLDS step (`/`-separated paths).

    Args:
        image: path of the RGB image in a step (e.g. DROID's
            `"observation/exterior_image_1_left"`).
        state: one path or a sequence of paths concatenated on the last axis (e.g. DROID's
            `("observation/cartesian_position", "observation/gripper_position")`).
        action: one path or a sequence of paths concatenated on the last axis.
        delta_action_dims: action dimensions that are per-step increments, summed across
            skipped steps; `None` means all but the last (a gripper command, averaged).
            Ignored with `action_from_state` (see `summed_action_dims`).
        action_from_state: if True, ignore `action` and use state differences
            `state[t + stride] - state[t]` as actions (as V-JEPA 2-AC does for DROID, whose
            logged actions are absolute).
    """

    image: str = "observation/image"
    state: str | Sequence[str] = "observation/state"
    action: str | Sequence[str] = "action"
    delta_action_dims: tuple[int, ...] | None = None
    action_from_state: bool = False

    def state_keys(self) -> tuple[str, ...]:
        return (self.state,) if isinstance(self.state, str) else tuple(self.state)

    def action_keys(self) -> tuple[str, ...]:
        return (self.action,) if isinstance(self.action, str) else tuple(self.action)

    def read_keys(self) -> tuple[str, ...]:
        """Every step path the reader decodes: the image, the state and (unless derived) action."""
        actions = () if self.action_from_state else self.action_keys()
        return (self.image, *self.state_keys(), *actions)

    def summed_action_dims(self, action_dim: int) -> tuple[int, ...]:
        """The dims of a clip action summed over the frame stride (the others are averaged).

        With `action_from_state` every dim: a state difference across the stride is the sum of
        the per-step differences. Otherwise `delta_action_dims`, or all but the last if None.
        """
        if self.action_from_state:
            return tuple(range(action_dim))
        if self.delta_action_dims is None:
            return tuple(range(action_dim - 1))
        return tuple(self.delta_action_dims)


DROID_KEYMAP = KeyMap(
    image="observation/exterior_image_1_left",
    state=("observation/cartesian_position", "observation/gripper_position"),
    action="action",
)


# ---------------------------------------------------------------------------------- writing


def episode_features(observation: dict, action_dim: int, metadata: dict,
                     language_instruction: bool = False):
    """Returns the `tfds.features.FeaturesDict` of an RLDS episode.

    Args:
        observation: name -> `tfds.features` connector of each step's observation.
        action_dim: length of the float32 action vector.
        metadata: name -> connector of the episode metadata.
        language_instruction: whether each step also holds a `language_instruction` text, as
            Open X-Embodiment datasets do.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    step = {
        "observation": tfds.features.FeaturesDict(observation),
        "action": tfds.features.Tensor(shape=(action_dim,), dtype=tf.float32),
        "reward": tfds.features.Scalar(dtype=tf.float32),
        "discount": tfds.features.Scalar(dtype=tf.float32),
        "is_first": tfds.features.Scalar(dtype=tf.bool),
        "is_last": tfds.features.Scalar(dtype=tf.bool),
        "is_terminal": tfds.features.Scalar(dtype=tf.bool),
    }
    if language_instruction:
        step["language_instruction"] = tfds.features.Text()
    steps = tfds.features.Dataset(step)
    return tfds.features.FeaturesDict(
        {"steps": steps, "episode_metadata": tfds.features.FeaturesDict(metadata)}
    )


def episode_path(out_dir: str | os.PathLike, episode_id: int) -> Path:
    return Path(out_dir) / EPISODES_DIR / f"episode-{episode_id:08d}.tfrecord"


def write_episode_file(path: str | os.PathLike, features, episode: dict) -> Path:
    """Serializes one episode into its own TFRecord file, atomically (temp file + rename).

    Args:
        path: the final file path.
        features: the `episode_features(...)` it must conform to.
        episode: `{"steps": [step dicts], "episode_metadata": {...}}` of numpy values.
    """
    import tensorflow as tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = features.serialize_example(episode)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with disk_full_guard(path, len(record)):
        try:
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                writer.write(record)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


def finalize_dataset(
    out_dir: str | os.PathLike,
    features,
    description: str = "",
    metadata: dict | None = None,
    version: str = "1.0.0",
) -> int:
    """Makes the episode files under `out_dir/episodes` a TFDS dataset with one split, `train`.

    Safe to call repeatedly (after each resumed run): stale shard links are replaced, and
    `features.json` / `dataset_info.json` are replaced atomically, last.

    Returns:
        The number of episodes in the dataset.
    """
    import tensorflow_datasets as tfds

    out_dir = Path(out_dir)
    episodes = sorted((out_dir / EPISODES_DIR).glob("episode-*.tfrecord"))
    num = len(episodes)
    for stale in out_dir.glob(f"{DATASET_NAME}-train.tfrecord-*"):
        stale.unlink()
    num_bytes = 0
    for index, episode in enumerate(episodes):
        shard = out_dir / f"{DATASET_NAME}-train.tfrecord-{index:05d}-of-{num:05d}"
        try:
            os.link(episode, shard)  # no copy: the shard is the episode file under a TFDS name
        except OSError:
            import shutil

            shutil.copyfile(episode, shard)
        num_bytes += episode.stat().st_size
    identity = tfds.core.DatasetIdentity(
        name=DATASET_NAME, version=tfds.core.Version(version), data_dir=str(out_dir),
        module_name=__name__,
    )
    info = tfds.core.DatasetInfo(
        builder=identity, description=description, features=features,
        metadata=tfds.core.MetadataDict(metadata or {}),
    )
    template = tfds.core.ShardedFileTemplate(
        data_dir=str(out_dir), dataset_name=DATASET_NAME, split="train", filetype_suffix="tfrecord"
    )
    info.set_splits(
        tfds.core.SplitDict(
            [tfds.core.SplitInfo(name="train", shard_lengths=[1] * num, num_bytes=num_bytes,
                                 filename_template=template)]
        )
    )
    # DatasetInfo writes its JSON files in place; write to a scratch folder, then rename each.
    scratch = out_dir / f".finalize.tmp{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    try:
        info.write_to_directory(str(scratch))
        for name in sorted(os.listdir(scratch), key=lambda n: n == "dataset_info.json"):
            os.replace(scratch / name, out_dir / name)
    finally:
        for leftover in scratch.glob("*"):
            leftover.unlink()
        scratch.rmdir()
    return num


# ---------------------------------------------------------------------------------- reading


def _skip_unread(feature, read: set, prefix: str = ""):
    """TFDS decoders that leave every leaf of `feature` not in `read` encoded (or None).

    An unread camera then costs no image decode; an unread text or tensor stays as stored.
    """
    import tensorflow_datasets as tfds

    if not isinstance(feature, tfds.features.FeaturesDict):
        return None if prefix.rstrip("/") in read else tfds.decode.SkipDecoding()
    decoders = {}
    for name in feature.keys():
        decoder = _skip_unread(feature[name], read, f"{prefix}{name}/")
        if decoder is not None:
            decoders[name] = decoder
    return decoders or None


def _get(step: dict, path: str):
    value = step
    for part in path.split("/"):
        if part not in value:
            raise KeyError(f"RLDS step has no key {path!r} (missing {part!r}; has {sorted(value)})")
        value = value[part]
    return value


def _resize_views(image_size: int):
    """A clip map resizing each frame's camera views to `image_size` squares (a frame of `V`
    views side by side, `W = V * H`, becomes `image_size x V * image_size`)."""
    import tensorflow as tf

    def resize(c):
        views = tf.shape(c["frames"])[2] // tf.shape(c["frames"])[1]
        frames = tf.image.resize(c["frames"], tf.stack([image_size, image_size * views]))
        return dict(c, frames=tf.cast(tf.clip_by_value(tf.round(frames), 0, 255), tf.uint8))

    return resize


def make_clip_dataset(
    data_dir: str | os.PathLike,
    keymap: KeyMap = KeyMap(),
    clip_length: int = 8,
    frame_stride: int = 1,
    batch_size: int = 8,
    shuffle: bool = True,
    seed: int = 0,
    split: str = "train",
    image_size: int | None = None,
    clip_shift: int = 1,
    shuffle_buffer: int = 1000,
    repeat: bool = False,
    drop_remainder: bool = True,
    start_index: int = 0,
    episode_shard: tuple[int, int] = (1, 0),
):
    """Reads an RLDS dataset as batches of clips `{"frames", "states", "actions"}`.

    Args:
        data_dir: folder readable by `tfds.builder_from_directory` (holds dataset_info.json).
        keymap: where to find image, state and action in a step (see `KeyMap`).
        clip_length: frames per clip, T.
        frame_stride: env steps between consecutive clip frames (frameskip).
        batch_size: clips per batch, B.
        shuffle: shuffle episode files and clips (seeded by `seed`).
        seed: shuffle seed.
        split: TFDS split name.
        image_size: if set, frames are resized (bilinear) to `(image_size, image_size)` (each
            camera view of a frame of views side by side).
        clip_shift: env steps between the starts of consecutive clips of an episode.
        shuffle_buffer: clips held in the shuffle buffer.
        repeat: repeat the dataset forever.
        drop_remainder: drop a last, smaller batch.
        start_index: skip this many clips of the (shuffled, repeated) clip stream first, so
            that a resumed run continues from the same data position: with the same seed, the
            stream from `start_index` equals the tail of the stream from 0.
        episode_shard: `(shards, index)`: read only shard `index` of the data files (episodes,
            in this project's logs) split into `shards` (TFDS's file sharding): one worker's
            share of the logs.

    Returns:
        A `tf.data.Dataset` of dicts: `frames` `(B, T, H, W, 3)` uint8, `states` `(B, T, S)`
        float32, `actions` `(B, T, A)` float32, `episode` `(B,)` int64 index, `start` `(B,)`
        int64 first env step. See the module docstring for the action conventions.
    """
    import tensorflow as tf

    _check_clip_arguments(clip_length=clip_length, frame_stride=frame_stride,
                          batch_size=batch_size, clip_shift=clip_shift, start_index=start_index)
    episodes, widths = _read_episodes(data_dir, keymap, split, shuffle, seed, episode_shard)
    clips = episodes.flat_map(_episode_to_clips(keymap, widths, clip_length, frame_stride,
                                                clip_shift))
    if image_size is not None:
        # Resized before the shuffle buffer, which then holds small frames.
        clips = clips.map(_resize_views(image_size), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    if shuffle:
        clips = clips.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        clips = clips.repeat()
    if start_index:
        clips = clips.skip(start_index)
    return clips.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _read_episodes(data_dir, keymap: KeyMap, split: str, shuffle: bool, seed: int,
                   episode_shard: tuple[int, int]):
    """The enumerated episodes of one shard of the data files, and the step features' widths
    (`{path: flat size}`) of the keys the clips read."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from vjepa2.errors import UsageError

    if not (Path(data_dir) / "dataset_info.json").exists():
        raise UsageError(f"no RLDS dataset (dataset_info.json) in {data_dir}")
    builder = tfds.builder_from_directory(str(data_dir))
    shards, shard_index = episode_shard
    files = builder.info.splits[split].num_shards
    if not 0 <= shard_index < shards <= files:
        raise UsageError(f"{data_dir} holds {files} data files; cannot split them into "
                         f"{shards} shards (one file per shard at least) and read shard "
                         f"{shard_index}")
    step_features = builder.info.features["steps"].feature
    actions = () if keymap.action_from_state else keymap.action_keys()
    widths = {path: _feature_width(step_features, path, data_dir)
              for path in (*keymap.state_keys(), *actions, keymap.image)}
    step_decoders = _skip_unread(step_features, set(keymap.read_keys()))
    episodes = builder.as_dataset(
        split=split, shuffle_files=shuffle,
        read_config=tfds.ReadConfig(
            shuffle_seed=seed if shuffle else None,
            input_context=None if shards == 1 else tf.distribute.InputContext(
                num_input_pipelines=shards, input_pipeline_id=shard_index)),
        decoders={"steps": step_decoders} if step_decoders else None,
    ).enumerate()
    return episodes, widths


def _check_clip_arguments(start_index: int, **positive: int) -> None:
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; received {value!r}")
    if not isinstance(start_index, int) or start_index < 0:
        raise ValueError(f"start_index must be an integer >= 0; received {start_index!r}")


def _feature_width(step_features, path: str, data_dir) -> int:
    """Static size of a step feature, so concatenations have known shapes."""
    import numpy as np

    from vjepa2.errors import UsageError

    feature = step_features
    for part in path.split("/"):
        if part not in feature.keys():
            raise UsageError(
                f"RLDS steps in {data_dir} have no key {path!r} (at {part!r}; "
                f"has {sorted(feature.keys())})"
            )
        feature = feature[part]
    return int(np.prod(feature.shape))


def _episode_to_clips(keymap: KeyMap, widths: dict, T: int, k: int, clip_shift: int):
    """The `flat_map` function from `(index, episode)` to the dataset of that episode's clips.

    Args:
        keymap: where image, state and action are.
        widths: step path -> flat size of that feature.
        T: frames per clip.
        k: env steps between clip frames.
        clip_shift: env steps between the starts of consecutive clips.
    """
    import tensorflow as tf

    def to_clips(index, episode):
        steps = episode["steps"].batch(1_000_000).get_single_element()
        image = _get(steps, keymap.image)
        state = tf.concat(
            [tf.cast(tf.reshape(_get(steps, p), [tf.shape(image)[0], widths[p]]), tf.float32)
             for p in keymap.state_keys()], axis=-1)
        length = tf.shape(image)[0]
        # The last step's action is a placeholder (RLDS), so actions exist for steps < length-1
        # and a clip's last frame needs its `k` actions after it.
        last_start = length - 1 - T * k
        starts = tf.range(0, tf.maximum(last_start + 1, 0), clip_shift)
        frame_idx = starts[:, None] + tf.range(T)[None, :] * k  # (N, T)
        if keymap.action_from_state:
            actions = tf.gather(state, frame_idx + k) - tf.gather(state, frame_idx)
        else:
            action = tf.concat(
                [tf.cast(tf.reshape(_get(steps, p), [length, widths[p]]), tf.float32)
                 for p in keymap.action_keys()], axis=-1)
            window = tf.gather(action, frame_idx[..., None] + tf.range(k))  # (N, T, k, A)
            dims = action.shape[-1]
            delta = keymap.summed_action_dims(dims)
            mask = tf.constant([d in delta for d in range(dims)])
            actions = tf.where(mask, tf.reduce_sum(window, 2), tf.reduce_mean(window, 2))
        n = tf.shape(starts)[0]
        return tf.data.Dataset.from_tensor_slices(
            {
                "frames": tf.gather(image, frame_idx),
                "states": tf.gather(state, frame_idx),
                "actions": actions,
                "episode": tf.fill([n], tf.cast(index, tf.int64)),
                "start": tf.cast(starts, tf.int64),
            }
        )

    return to_clips
