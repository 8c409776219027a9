"""Per-clip appearance and viewpoint augmentation of robot-log clips (tf.data).

The action-conditioned predictor learns how the *scene* changes under an action; with a few
hundred play episodes of a handful of scene settings it also learns the settings themselves, and
fails on new colours, light or camera poses. `ClipAugment` draws, per clip, one random colour
transform (hue rotation, saturation, brightness, contrast, sometimes grayscale) and one random
camera-like affine warp (rotation, zoom, shift), and applies the same draw to every frame of the
clip, so the motion between frames (what the actions explain) is unchanged while the look of the
scene varies from clip to clip. This is domain randomization in the input pipeline; the
reference (V-JEPA 2-AC on DROID) gets this variety from its data instead.

Randomness is stateless: batch `k` of a run with seed `s` is augmented by draws from
`(s, k)` only, so a resumed run sees the same augmented batches as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math

from vjepa2.errors import UsageError


@dataclasses.dataclass(frozen=True)
class ClipAugment:
    """Ranges of the per-clip augmentation (all uniform).

    Args:
        hue: maximum hue rotation, as a fraction of the colour circle (0.5 = any hue).
        saturation: range of the saturation factor.
        brightness: range of the brightness (value) factor.
        contrast: range of the contrast factor (around each clip's mean grey level).
        grayscale: probability of turning a clip grey.
        rotation_deg: maximum in-plane rotation, degrees.
        zoom: range of the zoom factor (> 1 magnifies).
        shift: maximum shift along each axis, as a fraction of the frame size.
    """

    hue: float = 0.5
    saturation: tuple[float, float] = (0.6, 1.4)
    brightness: tuple[float, float] = (0.7, 1.2)
    contrast: tuple[float, float] = (0.7, 1.3)
    grayscale: float = 0.05
    rotation_deg: float = 6.0
    zoom: tuple[float, float] = (0.9, 1.15)
    shift: float = 0.06

    def __post_init__(self):
        if not 0.0 <= self.hue <= 0.5:
            raise UsageError(f"hue must be in [0, 0.5]; received {self.hue}")
        for name in ("saturation", "brightness", "contrast", "zoom"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise UsageError(f"{name} must be a range 0 < lo <= hi; received {(lo, hi)}")
        if not 0.0 <= self.grayscale <= 1.0:
            raise UsageError(f"grayscale must be a probability; received {self.grayscale}")
        if not 0.0 <= self.rotation_deg <= 45.0:
            raise UsageError(f"rotation_deg must be in [0, 45]; received {self.rotation_deg}")
        if not 0.0 <= self.shift <= 0.5:
            raise UsageError(f"shift must be in [0, 0.5]; received {self.shift}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> "ClipAugment":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - fields
        if unknown:
            raise UsageError(f"unknown augmentation keys {sorted(unknown)}; expected {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload.items()})


def _uniform(tf, seed, shape, lo, hi, salt):
    return tf.random.stateless_uniform(shape, seed=seed + tf.constant([0, salt], tf.int64),
                                       minval=lo, maxval=hi, dtype=tf.float32)


def augment_clips(frames, seed, config: ClipAugment):
    """Augments a batch of clips; every frame of a clip gets the same draw.

    Args:
        frames: `(B, T, H, W, 3)` uint8 tensor.
        seed: int64 tensor of shape `(2,)` (e.g. `[run seed, batch index]`).
        config: the `ClipAugment` ranges.

    Returns:
        `(B, T, H, W, 3)` uint8, same shape.
    """
    import tensorflow as tf

    seed = tf.cast(seed, tf.int64)
    shape = tf.shape(frames)
    b, t, h, w = shape[0], shape[1], shape[2], shape[3]
    x = tf.cast(frames, tf.float32) / 255.0
    per_clip = tf.stack([b])

    # Colour, in HSV: rotate hue, scale saturation and value.
    hsv = tf.image.rgb_to_hsv(x)
    d_hue = _uniform(tf, seed, per_clip, -config.hue, config.hue, 1)
    f_sat = _uniform(tf, seed, per_clip, *config.saturation, 2)
    f_val = _uniform(tf, seed, per_clip, *config.brightness, 3)

    def clip_axes(v):
        return tf.reshape(v, [-1, 1, 1, 1])

    hue = tf.math.floormod(hsv[..., 0] + clip_axes(d_hue), 1.0)
    sat = tf.clip_by_value(hsv[..., 1] * clip_axes(f_sat), 0.0, 1.0)
    val = tf.clip_by_value(hsv[..., 2] * clip_axes(f_val), 0.0, 1.0)
    x = tf.image.hsv_to_rgb(tf.stack([hue, sat, val], axis=-1))
    # Contrast around the clip's mean grey level, then sometimes grayscale.
    f_con = tf.reshape(_uniform(tf, seed, per_clip, *config.contrast, 4), [-1, 1, 1, 1, 1])
    mean = tf.reduce_mean(x, axis=[1, 2, 3, 4], keepdims=True)
    x = tf.clip_by_value((x - mean) * f_con + mean, 0.0, 1.0)
    grey = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
    to_grey = _uniform(tf, seed, per_clip, 0.0, 1.0, 5) < config.grayscale
    x = tf.where(tf.reshape(to_grey, [-1, 1, 1, 1, 1]), tf.broadcast_to(grey, tf.shape(x)), x)

    # Viewpoint: one affine warp per clip (rotation and zoom about the centre, then a shift),
    # applied to each camera view of frames of V square views side by side (W = V * H).
    views = tf.where(tf.equal(w % h, 0), w // h, 1)
    vw = w // views
    angle = _uniform(tf, seed, per_clip, -1.0, 1.0, 6) * (config.rotation_deg * math.pi / 180.0)
    zoom = _uniform(tf, seed, per_clip, *config.zoom, 7)
    hf, wf = tf.cast(h, tf.float32), tf.cast(vw, tf.float32)
    dx = _uniform(tf, seed, per_clip, -config.shift, config.shift, 8) * wf
    dy = _uniform(tf, seed, per_clip, -config.shift, config.shift, 9) * hf
    cx, cy = (wf - 1.0) / 2.0, (hf - 1.0) / 2.0
    # The transform maps output pixel (x, y) to the input pixel it samples:
    # in = R(-angle) (out - c - shift) / zoom + c.
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    ox, oy = cx + dx, cy + dy
    a0, a1 = cos, sin
    b0, b1 = -sin, cos
    a2 = cx - a0 * ox - a1 * oy
    b2 = cy - b0 * ox - b1 * oy
    zeros = tf.zeros_like(cos)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)  # (B, 8)
    transform = tf.reshape(tf.repeat(transform[:, None], t * views, axis=1), [-1, 8])
    flat = tf.reshape(tf.transpose(tf.reshape(x, tf.stack([b, t, h, views, vw, 3])),
                                   [0, 1, 3, 2, 4, 5]), tf.stack([b * t * views, h, vw, 3]))
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=flat, transforms=transform, output_shape=tf.stack([h, vw]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    out = tf.reshape(tf.transpose(tf.reshape(warped, tf.stack([b, t, views, h, vw, 3])),
                                  [0, 1, 3, 2, 4, 5]), shape)
    return tf.cast(tf.clip_by_value(tf.round(out * 255.0), 0.0, 255.0), tf.uint8)
