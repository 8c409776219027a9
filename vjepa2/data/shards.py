"""A worker's share of a batched stream under multi-worker training.

A shard is `(workers, index)`. The streams of this package whose element `i` is a pure function
of `(seed, i)` (videos, images, audio, masks) cut their elements into global batches of
`batch_size` and give worker `index` the rows `[index * b, (index + 1) * b)` of each, with
`b = batch_size // workers`: every element is loaded by exactly one worker, and the workers'
rows put side by side in worker order are the single-process batch. `(1, 0)` is the whole
stream.
"""
from __future__ import annotations

from vjepa2.errors import UsageError

WHOLE = (1, 0)


def local_batch(batch_size: int, shard: tuple[int, int]) -> int:
    """The rows `b` of a global batch that worker `shard[1]` of `shard[0]` reads.

    Raises:
        UsageError: a bad shard, or a batch that does not split evenly.
    """
    workers, index = (int(v) for v in shard)
    if workers < 1 or not 0 <= index < workers:
        raise UsageError(f"shard must be (workers >= 1, 0 <= index < workers); received "
                         f"{tuple(shard)}")
    if batch_size % workers:
        raise UsageError(f"batch size {batch_size} must split evenly over {workers} workers")
    return batch_size // workers


def shard_indices(start_index: int, stop: int, batch_size: int, shard: tuple[int, int]):
    """The element indices of `[start_index, stop)` that this worker reads, in stream order.

    Returns:
        `(tf.data.Dataset of int64 indices, rows per batch)`.
    """
    import tensorflow as tf

    b = local_batch(batch_size, shard)
    workers, index = shard
    if workers == 1:
        return tf.data.Dataset.range(start_index, max(stop, start_index)), b
    count = max(stop - start_index, 0) // batch_size * b  # whole global batches only
    offset = start_index + index * b

    def element(m):
        return offset + m // b * batch_size + m % b

    return tf.data.Dataset.range(count).map(element), b


def shard_rows(array, batch_size: int, shard: tuple[int, int]):
    """This worker's rows of a global batch (a NumPy array or a tensor of `batch_size` rows)."""
    b = local_batch(batch_size, shard)
    return array[shard[1] * b:(shard[1] + 1) * b]
