"""Video clips for V-JEPA 2 pretraining: list files, decode with PyAV, sample, augment, batch.

The pipeline is `tf.data.Dataset.range(start_index, ...)` -> parallel, order-preserving map that
decodes one clip per element with PyAV (inside `tf.numpy_function`) -> resize and normalize in
TensorFlow -> `batch(drop_remainder=True)` -> `prefetch`. Element `i` is a pure function of
`(seed, i)` and the files, so a resumed run that starts at `start_index = steps * batch_size`
sees exactly the clips the interrupted run would have seen.

Bad files (missing, empty, unreadable, too short) are skipped, counted and logged once, and the
element is redrawn from another video, so batches stay full and training never stops on a file.

This module builds the tf.data stream; its parts live next to it and are re-exported here:
`video_sources` (listing, CSV files, bad-file accounting), `video_decode` (PyAV decoding, frame
rate resampling) and `video_clips` (per-element sampling and cropping).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from vjepa2.data.video_clips import ClipConfig, ClipSampler
from vjepa2.data.shards import shard_indices
from vjepa2.data.video_decode import resample_offsets
from vjepa2.data.video_sources import (
    CLIP_REASONS,
    FILE_REASONS,
    VIDEO_EXTENSIONS,
    VideoStats,
    list_videos,
    write_video_csv,
)
from vjepa2.errors import UsageError

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "CLIP_REASONS",
    "FILE_REASONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIDEO_EXTENSIONS",
    "ClipConfig",
    "ClipSampler",
    "PipelineGate",
    "VideoStats",
    "list_videos",
    "make_clip_dataset",
    "measure_throughput",
    "resample_offsets",
    "write_video_csv",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INT64_MAX = np.iinfo(np.int64).max


class PipelineGate:
    """Stops a pipeline's Python calls so that its iterator can be destroyed without deadlock.

    One global gate is closed at interpreter exit; a caller that abandons a pipeline mid-run
    (an exception or an interrupt inside `fit`) closes the pipeline's own gate first (pass it as
    `make_clip_dataset(..., gate=...)` and wrap each of its own `numpy_function`s in
    `with gate.call() as open_: ...`).

    A tf.data iterator still alive at exit (a global, or a frame kept by an uncaught exception)
    is destroyed during finalization and waits for its in-flight `numpy_function` calls; those
    threads can no longer take the GIL, and the process hangs. At exit (before finalization)
    this makes every new call return a blank clip at once (nobody reads it; an error would be
    logged by TensorFlow for each call) and waits until running calls are done, leaving the
    pipelines idle with nothing that needs Python.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._closed = False
        self._last_call = time.monotonic()

    def begin(self) -> bool:
        """Registers a running call; returns False (registering nothing) once closed."""
        with self._cond:
            self._last_call = time.monotonic()
            if self._closed:
                return False
            self._running += 1
            return True

    def end(self) -> None:
        """Ends a call for which `begin()` returned True."""
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def call(self):
        """Context for one Python call inside the pipeline; yields False once the gate is closed
        (the call should then return a placeholder at once)."""
        entered = self.begin()
        try:
            yield entered
        finally:
            if entered:
                self.end()

    def close(self, timeout: float = 10.0, quiet: float = 0.2) -> None:
        """Refuses new calls, then waits until none ran for `quiet` seconds (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            while time.monotonic() < deadline:
                idle = time.monotonic() - self._last_call
                if self._running == 0 and idle >= quiet:
                    return
                self._cond.wait(timeout=max(quiet - idle, 0.01))


_DRAIN = PipelineGate()
atexit.register(_DRAIN.close)


def make_clip_dataset(
    source: str | os.PathLike,
    *,
    frames: int = 8,
    fps: float = 4.0,
    resolution: int = 128,
    batch_size: int = 8,
    training: bool = True,
    seed: int = 0,
    start_index: int = 0,
    num_parallel_calls: int | None = None,
    crop_scale: tuple[float, float] = (0.3, 1.0),
    crop_ratio: tuple[float, float] = (0.75, 1.35),
    hflip: bool = True,
    normalize: bool = True,
    repeat: bool = True,
    with_labels: bool = False,
    gate: PipelineGate | None = None,
    shard: tuple[int, int] = (1, 0),
) -> tuple[tf.data.Dataset, VideoStats]:
    """Builds the batched video-clip stream for pretraining or evaluation.

    Element `i` of the stream (counting from 0 at the first clip of the first epoch) is a
    deterministic function of `(seed, i)`: the video (a per-epoch permutation when training),
    the clip start, the crop and the flip. `start_index` skips to element `start_index` without
    decoding the skipped clips, so a run resumed after `steps` steps passes
    `start_index = steps * batch_size` and continues the same stream.

    Frames are resampled to `fps` (see `resample_offsets`). Training clips get one random
    resized crop and flip shared by all their frames; evaluation clips are the middle clip of
    each video, resized on the shorter side and centre-cropped. Bad videos are skipped, counted
    in the returned stats and logged once, and the element is redrawn from the next video in the
    epoch's order; known-bad videos are not decoded again.

    Args:
        source: A folder of videos or a `path[,label]` CSV (see `list_videos`).
        frames: Frames per clip T.
        fps: Target frame rate.
        resolution: Output height and width H = W.
        batch_size: Clips per batch B; a final partial batch is dropped.
        training: Random sampling and augmentation; else deterministic centre clips.
        seed: Seed of every random choice.
        start_index: First stream element (>= 0).
        num_parallel_calls: Parallel decodes; `None` lets tf.data tune it.
        crop_scale: Crop area range as a fraction of the frame.
        crop_ratio: Crop width / height range.
        hflip: Random horizontal flips when training.
        normalize: ImageNet mean/std normalization; else values in [0, 1].
        repeat: Endless epochs; else one pass.
        with_labels: Yield `(video, label)` with int32 labels (-1 where the source has none).
        gate: A `PipelineGate` to close before abandoning the pipeline mid-run.
        shard: `(workers, index)`: this worker's rows of every batch, `batch_size // workers`
            of them (see `vjepa2.data.shards`); the others are not decoded.

    Returns:
        `(dataset, stats)`: a `tf.data.Dataset` of float32 `(B, T, H, W, 3)` batches (or
        `(video, label (B,))` pairs), and the `VideoStats` the pipeline updates.

    Raises:
        UsageError: A bad argument, an empty or missing source, or no usable video in it.

    Example:
    >>> dataset, stats = make_clip_dataset("data/videos", frames=8, fps=4, batch_size=8)
    >>> video = next(iter(dataset))                     # (8, 8, 128, 128, 3) float32
    >>> print(stats.summary())
    """
    import tensorflow as tf

    config = ClipConfig(
        frames=frames, fps=fps, resolution=resolution, batch_size=batch_size, training=training,
        seed=seed, crop_scale=tuple(crop_scale), crop_ratio=tuple(crop_ratio), hflip=hflip,
        normalize=normalize, repeat=repeat,
    )
    sampler = _readable_sampler(source, config, start_index, num_parallel_calls)
    load = _gated_loader(sampler, gate if gate is not None else PipelineGate())
    stop = _INT64_MAX if config.repeat else len(sampler.videos)
    indices, rows = shard_indices(start_index, stop, batch_size, shard)
    dataset = _clip_batches(indices, load, config, num_parallel_calls, with_labels, rows)
    return dataset, sampler.stats


def _readable_sampler(
    source: str | os.PathLike,
    config: ClipConfig,
    start_index: int,
    num_parallel_calls: int | None,
) -> ClipSampler:
    """Checks the stream arguments, lists `source` and returns its sampler.

    One clip is decoded here, so that a source without a usable video fails now with a
    `UsageError` instead of inside the running pipeline.
    """
    if start_index < 0:
        raise UsageError(f"start_index must be >= 0; received {start_index}")
    if num_parallel_calls is not None and num_parallel_calls < 1:
        raise UsageError(f"num_parallel_calls must be >= 1 or None; received {num_parallel_calls}")
    videos = list_videos(source)
    stats = VideoStats(str(source))
    sampler = ClipSampler(videos, config, stats, source=str(source))
    sampler.check_readable()
    return sampler


def _gated_loader(
    sampler: ClipSampler, gate: PipelineGate
) -> Callable[[np.int64], tuple[np.ndarray, np.int32]]:
    """The `numpy_function` body: one `(clip, label)` per index, a blank clip once closed."""

    def load(index: np.int64) -> tuple[np.ndarray, np.int32]:
        with _DRAIN.call() as open_, gate.call() as own_open:
            if not (open_ and own_open):
                return np.zeros((sampler.config.frames, 1, 1, 3), np.uint8), np.int32(-1)
            clip, label = sampler.clip(int(index))
        return clip, np.int32(label)

    return load


def _clip_batches(
    indices: tf.data.Dataset,
    load: Callable[[np.int64], tuple[np.ndarray, np.int32]],
    config: ClipConfig,
    num_parallel_calls: int | None,
    with_labels: bool,
    rows: int,
) -> tf.data.Dataset:
    """Maps stream indices to resized, normalized clips in order, then batches of `rows` and
    prefetches."""
    import tensorflow as tf

    mean = tf.constant(IMAGENET_MEAN, tf.float32)
    std = tf.constant(IMAGENET_STD, tf.float32)

    def to_clip(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        clip, label = tf.numpy_function(load, [index], (tf.uint8, tf.int32), name="decode_clip")
        clip.set_shape([config.frames, None, None, 3])
        # Antialiased resize: crops are often much larger than the output.
        video = tf.image.resize(clip, [config.resolution] * 2, method="bilinear", antialias=True)
        video = video / 255.0
        if config.normalize:
            video = (video - mean) / std
        video = tf.ensure_shape(video, [config.frames, config.resolution, config.resolution, 3])
        label = tf.ensure_shape(label, [])
        return video, label

    dataset = indices.map(
        to_clip,
        num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE,
        deterministic=True,
    )
    if not with_labels:
        dataset = dataset.map(lambda video, label: video)
    dataset = dataset.batch(rows, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def measure_throughput(dataset: tf.data.Dataset, batches: int, warmup: int = 1) -> float:
    """Clips per second delivered by `dataset`, after `warmup` batches.

    Args:
        dataset: A dataset of `(B, ...)` batches, `(video, label)` pairs, or dicts with a
            `video` entry.
        batches: Batches to time (>= 1).
        warmup: Batches drawn first and not timed (pipeline start, autotuning).

    Returns:
        Clips per second over the timed batches.

    Example:
    >>> dataset, _ = make_clip_dataset("data/videos")
    >>> print(f"{measure_throughput(dataset, batches=20):.1f} clips/s")
    """
    if batches < 1:
        raise UsageError(f"batches must be >= 1; received {batches}")
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    clips = 0
    begin = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        video = batch[0] if isinstance(batch, tuple) else batch
        if isinstance(video, dict):
            video = video["video"]
        clips += int(video.shape[0])
    return clips / (time.perf_counter() - begin)
