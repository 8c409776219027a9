"""V-JEPA 2 video encoder: tubelet embedding, RoPE transformer blocks, final LayerNorm."""
from __future__ import annotations

import keras
from keras import ops

from vjepa2.layers.block import TransformerBlock, remat_block
from vjepa2.layers.rope import check_rope_layout, rope_angles
from vjepa2.layers.patch_embed import TubeletEmbedding, grid_positions, ids_to_positions
from vjepa2.models.preset_io import PresetMixin


@keras.saving.register_keras_serializable(package="vjepa2")
class VideoEncoder(PresetMixin, keras.Model):
    """A ViT over space-time tubelets with 3D rotary positions and no CLS token.

    Any clip whose frames, height and width are divisible by the tubelet works at call time; an
    image is a clip of repeated frames. With `token_ids`, only those tokens enter the transformer
    (the visible context during pretraining) and they keep their true 3D positions.

    Args:
        embed_dim: width.
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_dim: MLP hidden width.
        tubelet_size: frames per tubelet (2 in V-JEPA 2).
        patch_size: pixels per patch side (16 in V-JEPA 2).
        qkv_bias: query/key/value bias.
        rope_layout: `"rotation"` (true 3D rotation, the default for models trained here) or
            `"reference"` (the layout the released V-JEPA 2 weights were trained with; set by
            `vjepa2.convert`). Saved in the config, so a model loads with its own layout.
        remat: rematerialize each transformer block in the backward pass (gradient
            checkpointing, `keras.remat`): only block inputs are kept, activations inside a
            block are recomputed; the same values and gradients for ~1/3 more compute and far
            less activation memory (the reference turns it on for ViT-L and larger).

    Call arguments:
        video: (B, T, H, W, 3) float.
        token_ids: optional int (B, K) flat ids of the tokens to keep, row-major over the
            (T/tubelet, H/patch, W/patch) grid.

    Returns:
        (B, N, embed_dim) with N = T/tubelet * H/patch * W/patch, or (B, K, embed_dim).

    Example:
    ```python
    encoder = VideoEncoder.from_preset("tiny")
    tokens = encoder(np.zeros((2, 8, 128, 128, 3), "float32"))  # (2, 4 * 8 * 8, 192)
    ```

    Reference:
        Assran et al., V-JEPA 2 (arXiv:2506.09985).
    """

    preset_key = "encoder"

    def __init__(self, embed_dim=192, depth=6, num_heads=3, mlp_dim=768, tubelet_size=2,
                 patch_size=16, qkv_bias=True, rope_layout="rotation", remat=False, **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads must divide embed_dim; received embed_dim={embed_dim}, "
                             f"num_heads={num_heads}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1; received depth={depth}")
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.tubelet_size = tubelet_size
        self.patch_size = patch_size
        self.qkv_bias = qkv_bias
        self.rope_layout = check_rope_layout(rope_layout)
        self.remat = bool(remat)
        self.patch_embed = TubeletEmbedding(embed_dim, tubelet_size, patch_size,
                                            name="patch_embed")
        self.blocks = [
            TransformerBlock(embed_dim, num_heads, mlp_dim, layer_index=i + 1,
                             qkv_bias=qkv_bias, rope_layout=rope_layout, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")

    def build(self, input_shape=None):
        if input_shape is None or isinstance(input_shape, dict):
            input_shape = (None, self.tubelet_size, self.patch_size, self.patch_size, 3)
        self.patch_embed.build(input_shape)
        token_shape = (None, None, self.embed_dim)
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        self.built = True

    def grid_size(self, video_shape):
        """(T', H', W') token grid for a video shape (B, T, H, W, C)."""
        return self.patch_embed.grid_size(video_shape)

    def call(self, video, token_ids=None):
        grid = self.grid_size(video.shape)
        x = self.patch_embed(video, token_ids=token_ids)
        if token_ids is None:
            positions = grid_positions(grid)
        else:
            positions = ids_to_positions(token_ids, grid)
        rope = rope_angles(positions, self.embed_dim // self.num_heads,
                           layout=self.rope_layout)
        for block in self.blocks:
            x = remat_block(block, x, rope=rope) if self.remat else block(x, rope=rope)
        return self.norm(x)

    def get_config(self):
        config = super().get_config()
        config.update(embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads,
                      mlp_dim=self.mlp_dim, tubelet_size=self.tubelet_size,
                      patch_size=self.patch_size, qkv_bias=self.qkv_bias,
                      rope_layout=self.rope_layout, remat=self.remat)
        return config
