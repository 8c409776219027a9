"""V-JEPA 2 pretraining predictor: predicts the latent tokens of masked positions."""
from __future__ import annotations

import keras
from keras import ops

from vjepa2.layers.block import TransformerBlock, remat_block
from vjepa2.layers.rope import check_rope_layout, rope_angles
from vjepa2.layers.patch_embed import ids_to_positions
from vjepa2.models.preset_io import PresetMixin


@keras.saving.register_keras_serializable(package="vjepa2")
class MaskedPredictor(PresetMixin, keras.Model):
    """A narrow transformer that fills masked space-time positions with predicted latents.

    Context tokens are projected to the predictor width; a learnable (zero-initialised) mask
    token is placed at every target position; every token keeps its true (t, h, w) coordinate
    for 3D RoPE, so token order does not matter. Outputs at the target positions are normalised
    and projected back to the encoder width.

    Args:
        encoder_dim: width of the encoder tokens it reads and predicts.
        embed_dim: predictor width.
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_dim: MLP hidden width.
        num_mask_tokens: distinct learnable mask tokens (one per mask set).
        qkv_bias: query/key/value bias.
        rope_layout: `"rotation"` (true 3D rotation, the default for models trained here) or
            `"reference"` (the layout the released V-JEPA 2 weights were trained with; set by
            `vjepa2.convert`). Saved in the config, so a model loads with its own layout.
        remat: rematerialize each transformer block in the backward pass (gradient
            checkpointing, `keras.remat`): only block inputs are kept, activations inside a
            block are recomputed; the same values and gradients for ~1/3 more compute and far
            less activation memory (the reference turns it on for ViT-L and larger).

    Call arguments:
        context_tokens: (B, Nc, encoder_dim) encoder outputs at the visible positions.
        context_ids: int (B, Nc) flat ids of the visible positions.
        target_ids: int (B, Nt) flat ids of the positions to predict.
        grid: (T', H', W') token grid of the clip, Python ints.
        mask_index: which mask token to use (Python int).

    Returns:
        (B, Nt, encoder_dim) predictions, in the order of `target_ids`.
    """

    preset_key = "predictor"

    def __init__(self, encoder_dim=192, embed_dim=96, depth=4, num_heads=3, mlp_dim=384,
                 num_mask_tokens=2, qkv_bias=True, rope_layout="rotation", remat=False,
                 **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads must divide embed_dim; received embed_dim={embed_dim}, "
                             f"num_heads={num_heads}")
        if num_mask_tokens < 1:
            raise ValueError(f"num_mask_tokens must be >= 1; received {num_mask_tokens}")
        self.encoder_dim = encoder_dim
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.num_mask_tokens = num_mask_tokens
        self.qkv_bias = qkv_bias
        self.rope_layout = check_rope_layout(rope_layout)
        self.remat = bool(remat)
        self.embed = keras.layers.Dense(
            embed_dim, name="embed",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.blocks = [
            TransformerBlock(embed_dim, num_heads, mlp_dim, layer_index=i + 1,
                             qkv_bias=qkv_bias, rope_layout=rope_layout, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.head = keras.layers.Dense(
            encoder_dim, name="head",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def build(self, input_shape=None):
        self.embed.build((None, None, self.encoder_dim))
        self.mask_tokens = self.add_weight(
            shape=(self.num_mask_tokens, self.embed_dim), initializer="zeros",
            name="mask_tokens")
        token_shape = (None, None, self.embed_dim)
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        self.head.build(token_shape)
        self.built = True

    def call(self, context_tokens, context_ids, target_ids, grid, mask_index=0):
        if not 0 <= mask_index < self.num_mask_tokens:
            raise ValueError(f"mask_index must be in [0, {self.num_mask_tokens}); received "
                             f"{mask_index}")
        batch = ops.shape(context_tokens)[0]
        num_context = ops.shape(context_tokens)[1]
        num_target = ops.shape(target_ids)[1]  # dynamic when batches differ in shape
        context = self.embed(context_tokens)
        mask_token = ops.cast(self.mask_tokens[mask_index], context.dtype)
        targets = ops.broadcast_to(mask_token, (batch, num_target, self.embed_dim))
        x = ops.concatenate([context, targets], axis=1)
        ids = ops.concatenate([ops.cast(context_ids, "int32"), ops.cast(target_ids, "int32")],
                              axis=1)
        positions = ids_to_positions(ids, grid)
        rope = rope_angles(positions, self.embed_dim // self.num_heads,
                           layout=self.rope_layout)
        for block in self.blocks:
            x = remat_block(block, x, rope=rope) if self.remat else block(x, rope=rope)
        x = self.norm(x[:, num_context:])
        return self.head(x)

    def get_config(self):
        config = super().get_config()
        config.update(encoder_dim=self.encoder_dim, embed_dim=self.embed_dim, depth=self.depth,
                      num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                      num_mask_tokens=self.num_mask_tokens, qkv_bias=self.qkv_bias,
                      rope_layout=self.rope_layout, remat=self.remat)
        return config
