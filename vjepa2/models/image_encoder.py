"""The image encoder of the JEPA family (I-JEPA on images, A-JEPA on spectrograms)."""
from __future__ import annotations

import keras
from keras import ops

from vjepa2.layers.patch_embed import TubeletEmbedding
from vjepa2.models.video_encoder import VideoEncoder


@keras.saving.register_keras_serializable(package="vjepa2")
class ImageEncoder(VideoEncoder):
    """A ViT over 2D patches: the video encoder's blocks on a clip of one time step.

    An image (B, H, W, C) is a one-frame clip with tubelets of one frame, so every token sits
    at time 0 and the 3D RoPE rotates by (row, column) only (the time third of each head's
    rotated features stays unrotated): 2D RoPE as a configuration of the 3D one, with the same
    transformer blocks, patch embedding and final LayerNorm. No CLS token, as in I-JEPA. The
    input may have any channel count (`in_channels=1` for A-JEPA's log-mel spectrograms, rows
    time and columns frequency).

    Args:
        embed_dim, depth, num_heads, mlp_dim, patch_size, qkv_bias, rope_layout, remat: as
            `VideoEncoder` (16 x 16 patches as in I-JEPA ViT-L/16 and A-JEPA).
        in_channels: input channels (3 for RGB, 1 for spectrograms).

    Call arguments:
        image: (B, H, W, in_channels) float, H and W divisible by `patch_size`.
        token_ids: optional int (B, K) flat row-major ids of the patches to keep.

    Returns:
        (B, H/patch * W/patch, embed_dim), or (B, K, embed_dim).

    Example:
    ```python
    encoder = ImageEncoder.from_preset("tiny")
    tokens = encoder(np.zeros((2, 128, 128, 3), "float32"))  # (2, 64, 192)
    ```

    Reference:
        Assran et al., I-JEPA (arXiv:2301.08243); Fei et al., A-JEPA (arXiv:2311.15830).
    """

    def __init__(self, embed_dim=192, depth=6, num_heads=3, mlp_dim=768, patch_size=16,
                 in_channels=3, qkv_bias=True, rope_layout="rotation", remat=False, **kwargs):
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1; received in_channels={in_channels}")
        super().__init__(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim,
                         tubelet_size=1, patch_size=patch_size, qkv_bias=qkv_bias,
                         rope_layout=rope_layout, remat=remat, **kwargs)
        self.in_channels = in_channels
        self.patch_embed = TubeletEmbedding(embed_dim, 1, patch_size, in_channels,
                                            name="patch_embed")

    def build(self, input_shape=None):
        super().build((None, 1, self.patch_size, self.patch_size, self.in_channels))

    @staticmethod
    def _as_clip_shape(shape):
        shape = tuple(shape)
        if len(shape) == 5:  # already a one-frame clip (VideoEncoder.call asks again)
            return shape
        if len(shape) != 4:
            raise ValueError(f"image must have shape (B, H, W, C); received {shape}")
        return (shape[0], 1) + shape[1:]

    def grid_size(self, image_shape):
        """(1, H', W') token grid for an image shape (B, H, W, C) (or (B, 1, H, W, C))."""
        return self.patch_embed.grid_size(self._as_clip_shape(image_shape))

    def call(self, image, token_ids=None):
        self.grid_size(image.shape)  # checks the shape before the reshape hides it
        return super().call(ops.expand_dims(image, 1), token_ids=token_ids)

    def get_config(self):
        config = super().get_config()
        del config["tubelet_size"]
        config["in_channels"] = self.in_channels
        return config
