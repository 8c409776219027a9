"""3D rotary position embedding (RoPE) over (time, height, width) token coordinates.

Each head's features are split into three equal, even-sized groups, one per axis; whatever does
not divide evenly is left unrotated (head dim 64 -> 20 + 20 + 20 rotated, 4 unrotated). Rotated
features come in pairs `(j, j + R/2)` with `R = 3 * segment`: pair `j` belongs to axis
`j // (segment/2)` and turns by `position[axis] * 10000 ** (-i / (segment/2))` with
`i = j % (segment/2)`. Both elements of a pair share one frequency, so the map is a true
rotation and a query-key score depends only on the offset between the two positions. (Which
features form a pair is a fixed convention; the learned projections adapt to any of them.
Keeping the pair halves contiguous makes the rotation four multiplies and one concat.)
"""
from __future__ import annotations

from keras import ops


def rope_segment_size(head_dim: int) -> int:
    """Features per axis: the largest even number <= head_dim / 3."""
    return 2 * ((head_dim // 3) // 2)


def rope_frequencies(segment: int, theta: float = 10000.0):
    """Angular frequencies `theta ** (-i / (segment/2))` for i in [0, segment/2), (segment/2,)."""
    half = segment // 2
    exponent = ops.arange(half, dtype="float32") / float(half)
    return ops.power(theta, -exponent)


def rope_angles(positions, head_dim: int, axis_mask=None, theta: float = 10000.0):
    """Rotation (cos, sin) per token, computed once per model call and shared by all blocks.

    Args:
        positions: (..., N, 3) token coordinates (t, h, w), integer or float.
        head_dim: features per attention head.
        axis_mask: optional (..., N, 3) 0/1 values; a 0 leaves that axis unrotated for that
            token (the action and state tokens of the action-conditioned predictor rotate in
            time only).
        theta: RoPE base.

    Returns:
        (cos, sin), each (..., N, 3 * segment/2).
    """
    segment = rope_segment_size(head_dim)
    freqs = rope_frequencies(segment, theta)
    positions = ops.cast(positions, "float32")
    if axis_mask is not None:
        positions = positions * ops.cast(axis_mask, "float32")
    angles = ops.expand_dims(positions, -1) * freqs  # (..., N, 3, half)
    shape = ops.shape(angles)
    angles = ops.reshape(angles, tuple(shape[:-2]) + (3 * (segment // 2),))
    return ops.cos(angles), ops.sin(angles)


def apply_rope(x, cos, sin):
    """Rotates the features of `x` (B, N, heads, head_dim) by per-token angles.

    Args:
        x: (B, N, heads, head_dim) queries or keys.
        cos, sin: (B, N, R/2) or (N, R/2) from `rope_angles`.

    Returns:
        The rotated tensor, same shape and dtype as `x`.
    """
    head_dim = x.shape[-1]
    half = 3 * (rope_segment_size(head_dim) // 2)
    cos = ops.cast(ops.expand_dims(cos, -2), x.dtype)  # broadcast over heads
    sin = ops.cast(ops.expand_dims(sin, -2), x.dtype)
    first, second = x[..., :half], x[..., half:2 * half]
    pieces = [first * cos - second * sin, first * sin + second * cos]
    if 2 * half < head_dim:
        pieces.append(x[..., 2 * half:])
    return ops.concatenate(pieces, axis=-1)
