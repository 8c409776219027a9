"""MC-JEPA's flow head: coarse-to-fine optical flow from the shared encoder's tokens."""
from __future__ import annotations

import keras
from keras import ops

from vjepa2.models.preset_io import PresetMixin


def warp(image, flow):
    """Backward warp: `out[y, x] = image[y + flow_y, x + flow_x]`, bilinear, zero outside.

    Args:
        image: (B, H, W, C).
        flow: (B, H, W, 2) as (dx, dy) in pixels of this resolution.

    Returns:
        (B, H, W, C), differentiable in `image` and `flow`.
    """
    shape = ops.shape(image)
    batch, h, w, c = shape[0], image.shape[1], image.shape[2], image.shape[3]
    gy, gx = ops.meshgrid(ops.arange(h, dtype="float32"), ops.arange(w, dtype="float32"),
                          indexing="ij")
    x = gx[None] + ops.cast(flow[..., 0], "float32")
    y = gy[None] + ops.cast(flow[..., 1], "float32")
    x0, y0 = ops.floor(x), ops.floor(y)
    flat = ops.reshape(image, (batch, h * w, c))
    out = 0.0
    fx, fy = x - x0, y - y0
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        # Written without abs(): its zero gradient at 0 would drop the (x0, y0) corner's share
        # of d out / d flow at whole-pixel flows (zero flow included).
        weight = (fx if dx else 1.0 - fx) * (fy if dy else 1.0 - fy)
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        weight = weight * ops.cast(inside, "float32")
        index = ops.cast(ops.clip(yi, 0, h - 1) * w + ops.clip(xi, 0, w - 1), "int32")
        index = ops.reshape(index, (batch, h * w, 1))
        values = ops.take_along_axis(flat, ops.broadcast_to(index, (batch, h * w, c)), axis=1)
        out = out + ops.reshape(values, (batch, h, w, c)) * ops.cast(weight[..., None],
                                                                      image.dtype)
    return out


def local_correlation(first, second, radius):
    """Mean feature product of `first` with `second` shifted by each offset in a
    (2 * radius + 1)^2 window: (B, H, W, (2 * radius + 1) ** 2)."""
    h, w = first.shape[1], first.shape[2]
    padded = ops.pad(second, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
    costs = []
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            shifted = padded[:, dy:dy + h, dx:dx + w]
            costs.append(ops.mean(first * shifted, axis=-1))
    return ops.stack(costs, axis=-1)


def upsample(x, factor):
    """Bilinear resize of (B, H, W, C) by an integer factor."""
    return ops.image.resize(x, (x.shape[1] * factor, x.shape[2] * factor),
                            interpolation="bilinear")


@keras.saving.register_keras_serializable(package="vjepa2")
class FlowHead(PresetMixin, keras.Model):
    """Optical flow between two frames, coarse to fine, from the encoder's tokens of the pair.

    The encoder sees the pair as one two-frame tubelet; its tokens (stride `patch_size`) give
    the coarsest flow. Each finer level (strides patch/2, patch/4, patch/8) upsamples the flow,
    warps the second frame's features by it, correlates them with the first frame's features
    in a small window and predicts a residual, as PWC-Net-style estimators do (MC-JEPA's flow
    head on the encoder's feature pyramid; a ViT has one scale, so a light convolutional
    pyramid of the frames supplies the finer ones). The final flow is upsampled to the frames.

    Args:
        token_dim: width of the encoder tokens.
        patch_size: the encoder's patch size (the tokens' stride); a power of two >= 8.
        widths: channels of the pyramid at strides 2, 4 and 8.
        radius: correlation window radius (in pyramid cells).
        hidden: channels of each level's estimator.

    Call arguments:
        first, second: (B, H, W, 3) frames.
        tokens: (B, H/patch * W/patch, token_dim) encoder tokens of the pair.

    Returns:
        (B, H, W, 2) flow (dx, dy) in pixels, from `first` to `second`.

    Reference:
        Bardes et al., MC-JEPA (arXiv:2307.12698); Sun et al., PWC-Net (arXiv:1709.02371).
    """

    preset_key = "flow_head"

    def __init__(self, token_dim, patch_size=16, widths=(16, 24, 32), radius=2, hidden=32,
                 **kwargs):
        super().__init__(**kwargs)
        if patch_size < 8 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two >= 8; received {patch_size}")
        if len(widths) != 3:
            raise ValueError(f"widths must give strides 2, 4 and 8; received {widths}")
        self.token_dim = token_dim
        self.patch_size = patch_size
        self.widths = tuple(int(w) for w in widths)
        self.radius = radius
        self.hidden = hidden
        conv = dict(padding="same", activation="gelu")
        self.pyramid = [keras.layers.Conv2D(w, 3, strides=2, name=f"pyramid_{i}", **conv)
                        for i, w in enumerate(self.widths)]
        self.coarse = [keras.layers.Dense(hidden, activation="gelu", name="coarse_in"),
                       keras.layers.Conv2D(hidden, 3, name="coarse_conv", **conv),
                       keras.layers.Conv2D(2, 3, padding="same", name="coarse_out")]
        self.levels = [[keras.layers.Conv2D(hidden, 3, name=f"level{i}_conv0", **conv),
                        keras.layers.Conv2D(hidden, 3, name=f"level{i}_conv1", **conv),
                        keras.layers.Conv2D(2, 3, padding="same", name=f"level{i}_out")]
                       for i in range(3)]

    def build(self, input_shape=None):
        channels = 3
        for layer, width in zip(self.pyramid, self.widths):
            layer.build((None, None, None, channels))
            channels = width
        self.coarse[0].build((None, None, None, self.token_dim))
        self.coarse[1].build((None, None, None, self.hidden))
        self.coarse[2].build((None, None, None, self.hidden))
        corr = (2 * self.radius + 1) ** 2
        for (conv0, conv1, out), width in zip(self.levels, reversed(self.widths)):
            conv0.build((None, None, None, width + corr + 2))
            conv1.build((None, None, None, self.hidden))
            out.build((None, None, None, self.hidden))
        self.built = True

    def features(self, frame):
        """Pyramid features of a frame at strides 2, 4, 8 (finest first)."""
        out, x = [], frame
        for layer in self.pyramid:
            x = layer(x)
            out.append(x)
        return out

    def call(self, first, second, tokens):
        h, w = first.shape[1] // self.patch_size, first.shape[2] // self.patch_size
        grid = ops.reshape(tokens, (-1, h, w, self.token_dim))
        x = grid
        for layer in self.coarse:
            x = layer(x)
        flow = x  # pixels of the full frame
        stride = self.patch_size
        pyramid1, pyramid2 = self.features(first), self.features(second)
        # Strides 8, 4, 2 (the pyramid's coarsest first); below stride 8 when patch > 16.
        for level, (f1, f2) in enumerate(zip(reversed(pyramid1), reversed(pyramid2))):
            factor = stride // (8 >> level)
            flow = upsample(flow, factor)
            stride = 8 >> level
            warped = warp(f2, flow / float(stride))
            corr = local_correlation(f1, warped, self.radius)
            x = ops.concatenate([f1, corr, flow / float(stride)], axis=-1)
            conv0, conv1, out = self.levels[level]
            flow = flow + out(conv1(conv0(x))) * float(stride)
        return upsample(flow, stride)

    def get_config(self):
        config = super().get_config()
        config.update(token_dim=self.token_dim, patch_size=self.patch_size, widths=self.widths,
                      radius=self.radius, hidden=self.hidden)
        return config
