"""Pre-norm transformer block: LayerNorm -> RoPE attention -> residual, LayerNorm -> MLP."""
from __future__ import annotations

import math

import keras

from vjepa2.layers.attention import RoPEAttention


@keras.saving.register_keras_serializable(package="vjepa2")
class TransformerBlock(keras.layers.Layer):
    """A pre-norm ViT block with 3D RoPE attention and a GELU MLP.

    LayerNorm epsilon 1e-6, qkv bias, truncated-normal init (std 0.02), and the output
    projections of the block with 1-based index `layer_index` scaled by 1/sqrt(2 * layer_index),
    as in the V-JEPA 2 reference.

    Args:
        dim: model width.
        num_heads: attention heads.
        mlp_dim: hidden width of the MLP.
        layer_index: 1-based depth of the block (for the init rescaling).
        qkv_bias: query/key/value bias.
        use_rope: rotate queries and keys by 3D RoPE.
        rope_layout: `"rotation"` or `"reference"` (see `vjepa2.layers.rope`).

    Call arguments:
        x: (B, N, dim); rope: (cos, sin) from `rope_angles`; attention_mask: optional boolean
        (B, N, N) or (N, N), True where a query may attend.

    Returns:
        (B, N, dim).
    """

    def __init__(self, dim, num_heads, mlp_dim, layer_index=1, qkv_bias=True, use_rope=True,
                 rope_layout="rotation", **kwargs):
        super().__init__(**kwargs)
        if layer_index < 1:
            raise ValueError(f"layer_index is 1-based; received layer_index={layer_index}")
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layer_index = layer_index
        self.qkv_bias = qkv_bias
        self.use_rope = use_rope
        self.rope_layout = rope_layout
        out_std = 0.02 / math.sqrt(2.0 * layer_index)
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attn = RoPEAttention(dim, num_heads, qkv_bias=qkv_bias, use_rope=use_rope,
                                  proj_init_std=out_std, rope_layout=rope_layout, name="attn")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.fc1 = keras.layers.Dense(
            mlp_dim, name="fc1",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.fc2 = keras.layers.Dense(
            dim, name="fc2",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=out_std))

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attn.build(input_shape)
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        self.built = True

    def call(self, x, rope=None, attention_mask=None):
        x = x + self.attn(self.norm1(x), rope=rope, attention_mask=attention_mask)
        hidden = keras.activations.gelu(self.fc1(self.norm2(x)), approximate=False)
        return x + self.fc2(hidden)

    def call_cached(self, x, rope=None, attention_mask=None, past_key=None, past_value=None):
        """`call` for new tokens attending over cached keys/values of earlier tokens.

        Equal to running `call` on [earlier, new] tokens with the matching mask and keeping the
        outputs of the new tokens, when no earlier token attends to a new one (causal or
        block-causal attention). See `RoPEAttention.call_cached`.

        Returns:
            (x (B, N, dim), key, value) with the keys/values of [earlier, new] tokens.
        """
        attended, key, value = self.attn.call_cached(
            self.norm1(x), rope=rope, attention_mask=attention_mask, past_key=past_key,
            past_value=past_value)
        x = x + attended
        hidden = keras.activations.gelu(self.fc1(self.norm2(x)), approximate=False)
        return x + self.fc2(hidden), key, value

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                      layer_index=self.layer_index, qkv_bias=self.qkv_bias,
                      use_rope=self.use_rope, rope_layout=self.rope_layout)
        return config


def remat_block(block, x, rope=None):
    """`block(x, rope=rope)`, rematerialized in the backward pass (gradient checkpointing).

    The block's inputs are positional arguments of the checkpointed function (TensorFlow's
    `tf.recompute_grad` takes no keyword arguments in graph mode). On JAX the block's weights
    are arguments too, bound to its variables by a `keras.StatelessScope` inside:
    `jax.checkpoint` would otherwise see them as closed-over values and give them no gradient.
    """
    rope = () if rope is None else tuple(rope)

    def call(inputs, *angles):
        return block(inputs, rope=angles or None)

    if keras.backend.backend() != "jax":
        return keras.remat(call)(x, *rope)
    variables = list(block.weights)

    def run(values, inputs, *angles):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return call(inputs, *angles)

    return keras.remat(run)([variable.value for variable in variables], x, *rope)
