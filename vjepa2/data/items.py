"""A deterministic tf.data stream of fixed-shape items (images, spectrograms) from files.

The image and audio members of the JEPA family share the video pipeline's rules: element `i` is
a pure function of `(seed, i)` and the files (a per-epoch permutation when training, the random
choices seeded by `(seed, i, k)`), so a run resumed at `start_index` continues the same stream;
bad files are skipped, counted in a `VideoStats` and logged once, and the element is redrawn
from the next file. Only the loader differs: `load(path, rng, training) -> float32 array` that
raises `BadVideo(reason, detail)` for an unusable file.
"""
from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from vjepa2.data.shards import shard_indices
from vjepa2.data.video import PipelineGate
from vjepa2.data.video_sources import BadVideo, VideoStats, list_videos
from vjepa2.errors import UsageError

_INT64_MAX = np.iinfo(np.int64).max
_DRAIN = PipelineGate()
atexit.register(_DRAIN.close)

Loader = Callable[[str, np.random.Generator, bool], np.ndarray]


def list_files(source: str | os.PathLike, extensions: tuple[str, ...],
               what: str) -> list[tuple[str, int | None]]:
    """`(path, label)` pairs of a folder (searched recursively for `extensions`, any case,
    sorted, no labels), a `path[,label]` CSV (as `list_videos` reads it) or one file.

    Raises:
        UsageError: a missing source, a folder without such files, another file type.
    """
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{what} source does not exist: {source}")
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*")
                       if p.suffix.lower() in extensions and p.is_file())
        if not found:
            raise UsageError(f"no {what} files ({', '.join(extensions)}) under folder: {source}")
        return [(p, None) for p in found]
    if path.suffix.lower() == ".csv":
        return list_videos(path)
    if path.suffix.lower() in extensions:
        return [(str(path), None)]
    raise UsageError(f"{what} source must be a folder, a .csv file or a {what} file "
                     f"({', '.join(extensions)}); received {source}")


class ItemSampler:
    """Maps a stream index to `(item, label)`, redrawing from the next file when one is bad.

    Args:
        files: `(path, label)` pairs.
        load: the loader (see the module docstring).
        seed: seeds the order and every random choice.
        training: shuffled order per epoch and random choices; else files in order.
        stats: where bad files and loaded items are counted.
        source: named in errors.
    """

    def __init__(self, files, load: Loader, seed=0, training=True, stats=None, source=""):
        if not files:
            raise UsageError(f"no files in source: {source}")
        self.files = list(files)
        self.load = load
        self.seed = int(seed)
        self.training = bool(training)
        self.stats = stats if stats is not None else VideoStats(source)
        self.source = source
        self._lock = threading.Lock()
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if not self.training:
            return np.arange(len(self.files))
        with self._lock:
            if epoch not in self._orders:
                self._orders = {k: v for k, v in self._orders.items() if k >= epoch - 3}
                rng = np.random.default_rng([self.seed, 0, epoch])
                self._orders[epoch] = rng.permutation(len(self.files))
            return self._orders[epoch]

    def item(self, index: int) -> tuple[np.ndarray, int]:
        """`(item, label or -1)` of stream element `index`."""
        n = len(self.files)
        epoch, position = divmod(int(index), n)
        order = self.order(epoch)
        for k in range(n):
            path, label = self.files[int(order[(position + k) % n])]
            if self.stats.is_bad(path):
                continue
            try:
                item = self.load(path, np.random.default_rng([self.seed, 1, index, k]),
                                 self.training)
            except BadVideo as bad:
                self.stats.record_bad(path, bad.reason, bad.detail)
                continue
            self.stats.record_clip(redrawn=k > 0)
            return item, -1 if label is None else int(label)
        raise UsageError(f"no usable file in {self.source}: {self.stats.summary()}")


def make_item_dataset(sampler: ItemSampler, shape, batch_size: int, start_index: int = 0,
                      repeat: bool = True, with_labels: bool = False,
                      gate: PipelineGate | None = None, num_parallel_calls: int | None = None,
                      shard: tuple[int, int] = (1, 0)):
    """Batches of float32 items of `shape` (and int32 labels with `with_labels`); with `shard
    = (workers, index)` this worker's rows of each batch only (see `vjepa2.data.shards`).

    One item is loaded first, so that a source without a usable file fails now with a
    `UsageError` instead of inside the running pipeline. Close `gate` before abandoning the
    dataset mid-run.
    """
    import tensorflow as tf

    if start_index < 0:
        raise UsageError(f"start_index must be >= 0; received {start_index}")
    first, _ = sampler.item(0)
    if tuple(first.shape) != tuple(shape):
        raise ValueError(f"loader returned shape {first.shape}; expected {tuple(shape)}")
    gate = gate if gate is not None else PipelineGate()

    def load(index):
        with _DRAIN.call() as open_, gate.call() as own_open:
            if not (open_ and own_open):
                return np.zeros(shape, np.float32), np.int32(-1)
            item, label = sampler.item(int(index))
        return item.astype(np.float32), np.int32(label)

    def to_item(index):
        item, label = tf.numpy_function(load, [index], (tf.float32, tf.int32), name="load_item")
        return tf.ensure_shape(item, shape), tf.ensure_shape(label, [])

    stop = _INT64_MAX if repeat else len(sampler.files)
    indices, rows = shard_indices(start_index, stop, batch_size, shard)
    dataset = indices.map(
        to_item, num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE, deterministic=True)
    if not with_labels:
        dataset = dataset.map(lambda item, label: item)
    return dataset.batch(rows, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
