"""3D rotary position embedding (RoPE) over (time, height, width) token coordinates.

Each head's features are split into three equal, even-sized groups, one per axis; whatever does
not divide evenly is left unrotated (head dim 64 -> 20 + 20 + 20 rotated, 4 unrotated). Rotated
features come in pairs `(j, j + R/2)` with `R = 3 * segment`: pair `j` belongs to axis
`j // (segment/2)` and turns by `position[axis] * 10000 ** (-i / (segment/2))` with
`i = j % (segment/2)`. Both elements of a pair share one frequency, so the map is a true
rotation and a query-key score depends only on the offset between the two positions. (Which
features form a pair is a fixed convention; the learned projections adapt to any of them.
Keeping the pair halves contiguous makes the rotation four multiplies and one concat.)

`layout="reference"` reproduces the released V-JEPA 2 models instead: each axis owns a
contiguous `segment` of features (time, then height, then width, then the unrotated rest), its
pairs are neighbours `(2j, 2j + 1)`, and the per-feature angles are the `segment/2` frequencies
tiled twice (`[f_0 .. f_{s/2-1}, f_0 .. f_{s/2-1}]`), so the two elements of a pair generally
turn at different frequencies. That is not a rotation (a score no longer depends only on the
offset), but it is what the reference's weights were trained with; converted checkpoints must
use it.
"""
from __future__ import annotations

from keras import ops

ROPE_LAYOUTS = ("rotation", "reference")


def check_rope_layout(layout) -> str:
    """Returns `layout` if it is one of `ROPE_LAYOUTS`; raises naming the value otherwise."""
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}; received {layout!r}")
    return layout


def rope_segment_size(head_dim: int) -> int:
    """Features per axis: the largest even number <= head_dim / 3."""
    return 2 * ((head_dim // 3) // 2)


def rope_frequencies(segment: int, theta: float = 10000.0):
    """Angular frequencies `theta ** (-i / (segment/2))` for i in [0, segment/2), (segment/2,)."""
    half = segment // 2
    exponent = ops.arange(half, dtype="float32") / float(half)
    return ops.power(theta, -exponent)


def rope_angles(positions, head_dim: int, axis_mask=None, theta: float = 10000.0,
                layout: str = "rotation"):
    """Rotation (cos, sin) per token, computed once per model call and shared by all blocks.

    Args:
        positions: (..., N, 3) token coordinates (t, h, w), integer or float.
        head_dim: features per attention head.
        axis_mask: optional (..., N, 3) 0/1 values; a 0 leaves that axis unrotated for that
            token (the action and state tokens of the action-conditioned predictor rotate in
            time only).
        theta: RoPE base.
        layout: `"rotation"` (true rotation, pairs `(j, j + R/2)`) or `"reference"` (the
            released V-JEPA 2 layout, see the module docstring).

    Returns:
        (cos, sin), each (..., N, 3 * segment/2) for `"rotation"`, (..., N, 3 * segment) for
        `"reference"`.
    """
    check_rope_layout(layout)
    segment = rope_segment_size(head_dim)
    freqs = rope_frequencies(segment, theta)
    positions = ops.cast(positions, "float32")
    if axis_mask is not None:
        positions = positions * ops.cast(axis_mask, "float32")
    angles = ops.expand_dims(positions, -1) * freqs  # (..., N, 3, half)
    width = 3 * (segment // 2)
    if layout == "reference":
        angles = ops.concatenate([angles, angles], axis=-1)  # (..., N, 3, segment): tiled
        width = 3 * segment
    shape = ops.shape(angles)
    angles = ops.reshape(angles, tuple(shape[:-2]) + (width,))
    return ops.cos(angles), ops.sin(angles)


def apply_rope(x, cos, sin, layout: str = "rotation"):
    """Rotates the features of `x` (B, N, heads, head_dim) by per-token angles.

    Args:
        x: (B, N, heads, head_dim) queries or keys.
        cos, sin: from `rope_angles` with the same `layout`: (B, N, R/2) or (N, R/2) for
            `"rotation"`, (B, N, R) or (N, R) for `"reference"`.
        layout: `"rotation"` or `"reference"`.

    Returns:
        The rotated tensor, same shape and dtype as `x`.
    """
    if layout == "reference":
        return _apply_reference_rope(x, cos, sin)
    check_rope_layout(layout)
    head_dim = x.shape[-1]
    half = 3 * (rope_segment_size(head_dim) // 2)
    cos = ops.cast(ops.expand_dims(cos, -2), x.dtype)  # broadcast over heads
    sin = ops.cast(ops.expand_dims(sin, -2), x.dtype)
    first, second = x[..., :half], x[..., half:2 * half]
    pieces = [first * cos - second * sin, first * sin + second * cos]
    if 2 * half < head_dim:
        pieces.append(x[..., 2 * half:])
    return ops.concatenate(pieces, axis=-1)


def _apply_reference_rope(x, cos, sin):
    """`out[2j] = x[2j] c[2j] - x[2j+1] s[2j]`, `out[2j+1] = x[2j+1] c[2j+1] + x[2j] s[2j+1]`
    over the first `R = 3 * segment` features, per-feature angles as `rope_angles` tiles them."""
    head_dim = x.shape[-1]
    rotated = 3 * rope_segment_size(head_dim)
    cos = ops.cast(ops.expand_dims(cos, -2), x.dtype)  # broadcast over heads
    sin = ops.cast(ops.expand_dims(sin, -2), x.dtype)
    even, odd = x[..., 0:rotated:2], x[..., 1:rotated:2]
    out_even = even * cos[..., 0::2] - odd * sin[..., 0::2]
    out_odd = odd * cos[..., 1::2] + even * sin[..., 1::2]
    pairs = ops.stack([out_even, out_odd], axis=-1)  # (..., R/2, 2)
    shape = ops.shape(x)
    pieces = [ops.reshape(pairs, tuple(shape[:-1]) + (rotated,))]
    if rotated < head_dim:
        pieces.append(x[..., rotated:])
    return ops.concatenate(pieces, axis=-1)
