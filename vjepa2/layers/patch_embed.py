"""Tubelet patch embedding: a Conv3D whose kernel equals its stride."""
from __future__ import annotations

import keras
from keras import ops


def grid_positions(grid):
    """Integer (t, h, w) coordinates of every token of a (T', H', W') grid, row-major, (N, 3)."""
    t, h, w = grid
    tt = ops.repeat(ops.arange(t, dtype="int32"), h * w)
    hh = ops.tile(ops.repeat(ops.arange(h, dtype="int32"), w), [t])
    ww = ops.tile(ops.arange(w, dtype="int32"), [t * h])
    return ops.stack([tt, hh, ww], axis=-1)


def ids_to_positions(ids, grid):
    """Flat token ids (..., K) of a (T', H', W') grid -> (..., K, 3) int32 coordinates."""
    _, h, w = grid
    ids = ops.cast(ids, "int32")
    return ops.stack([ids // (h * w), (ids // w) % h, ids % w], axis=-1)


@keras.saving.register_keras_serializable(package="vjepa2")
class TubeletEmbedding(keras.layers.Layer):
    """Splits a video into tubelets and projects each to `dim` features.

    Equivalent to a Conv3D whose kernel equals its stride (the kernel is stored in that layout,
    (tubelet, patch, patch, C, dim)), computed as patchify + matmul so that a caller that keeps
    only some tokens (the visible context) projects only those.

    Args:
        dim: output width.
        tubelet_size: frames per tubelet.
        patch_size: pixels per patch side.
        in_channels: input channels.

    Call arguments:
        video: (B, T, H, W, C) with T divisible by `tubelet_size` and H, W by `patch_size`.
        token_ids: optional int (B, K): keep only these tokens (flat, row-major over t, h, w).

    Returns:
        (B, T/tubelet * H/patch * W/patch, dim) tokens, row-major over (t, h, w), or (B, K, dim).
    """

    def __init__(self, dim, tubelet_size=2, patch_size=16, in_channels=3, **kwargs):
        super().__init__(**kwargs)
        if tubelet_size < 1 or patch_size < 1:
            raise ValueError(
                f"tubelet_size and patch_size must be >= 1; received tubelet_size="
                f"{tubelet_size}, patch_size={patch_size}")
        self.dim = dim
        self.tubelet_size = tubelet_size
        self.patch_size = patch_size
        self.in_channels = in_channels

    def build(self, input_shape=None):
        t, p = self.tubelet_size, self.patch_size
        self.kernel = self.add_weight(
            shape=(t, p, p, self.in_channels, self.dim), name="kernel",
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.bias = self.add_weight(shape=(self.dim,), name="bias", initializer="zeros")
        self.built = True

    def grid_size(self, video_shape):
        """The (T', H', W') token grid of a video of shape (B, T, H, W, C); checks divisibility."""
        if len(video_shape) != 5 or video_shape[-1] != self.in_channels:
            raise ValueError(f"video must have shape (B, T, H, W, {self.in_channels}); "
                             f"received {tuple(video_shape)}")
        t, h, w = video_shape[1], video_shape[2], video_shape[3]
        for name, size, div in (("frames", t, self.tubelet_size), ("height", h, self.patch_size),
                                ("width", w, self.patch_size)):
            if size is None:
                raise ValueError(f"video {name} must be known when the model is called")
            if size % div:
                raise ValueError(
                    f"video {name} must be divisible by {div}; received shape {tuple(video_shape)}")
        return (t // self.tubelet_size, h // self.patch_size, w // self.patch_size)

    def call(self, video, token_ids=None):
        gt, gh, gw = self.grid_size(video.shape)
        t, p, c = self.tubelet_size, self.patch_size, self.in_channels
        x = ops.reshape(video, (-1, gt, t, gh, p, gw, p, c))
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
        x = ops.reshape(x, (-1, gt * gh * gw, t * p * p * c))
        if token_ids is not None:
            x = ops.take_along_axis(x, ops.expand_dims(ops.cast(token_ids, "int32"), -1), axis=1)
        kernel = ops.reshape(ops.cast(self.kernel, x.dtype), (t * p * p * c, self.dim))
        return ops.matmul(x, kernel) + ops.cast(self.bias, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, tubelet_size=self.tubelet_size, patch_size=self.patch_size,
                      in_channels=self.in_channels)
        return config
