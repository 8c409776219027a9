"""Multi-head self-attention with 3D rotary position embedding."""
from __future__ import annotations

import keras
from keras import ops

from vjepa2.layers.rope import apply_rope, check_rope_layout, rope_segment_size


@keras.saving.register_keras_serializable(package="vjepa2")
class RoPEAttention(keras.layers.Layer):
    """Multi-head self-attention whose queries and keys are rotated by 3D RoPE.

    Args:
        dim: model width.
        num_heads: attention heads; must divide `dim`.
        qkv_bias: whether the query/key/value projection has a bias.
        use_rope: rotate queries and keys by the token positions.
        rope_theta: RoPE base.
        proj_init_std: std of the output projection's truncated-normal init.
        rope_layout: `"rotation"` (true rotation, the default for models trained here) or
            `"reference"` (the released V-JEPA 2 weights' layout; see `vjepa2.layers.rope`).

    Call arguments:
        x: (B, N, dim) tokens.
        rope: (cos, sin) from `vjepa2.layers.rope.rope_angles` for these tokens' positions
            (computed once per model call).
        attention_mask: optional boolean (B, N, N) or (N, N); True where a query may attend.

    Returns:
        (B, N, dim).
    """

    def __init__(self, dim, num_heads, qkv_bias=True, use_rope=True, rope_theta=10000.0,
                 proj_init_std=0.02, rope_layout="rotation", **kwargs):
        super().__init__(**kwargs)
        if dim % num_heads:
            raise ValueError(
                f"num_heads must divide dim; received dim={dim}, num_heads={num_heads}")
        head_dim = dim // num_heads
        if use_rope and rope_segment_size(head_dim) < 2:
            raise ValueError(
                f"head dim must be >= 6 for 3D RoPE; received dim={dim}, num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        self.use_rope = use_rope
        self.rope_theta = rope_theta
        self.proj_init_std = proj_init_std
        self.rope_layout = check_rope_layout(rope_layout)
        self.head_dim = head_dim
        self.qkv = keras.layers.Dense(
            3 * dim, use_bias=qkv_bias, name="qkv",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.proj = keras.layers.Dense(
            dim, name="proj",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=proj_init_std))

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (self.dim,))
        self.built = True

    def _rotated_qkv(self, x, rope):
        batch, tokens = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, tokens, 3, self.num_heads, self.head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, N, heads, head_dim)
        if self.use_rope:
            if rope is None:
                raise ValueError("RoPEAttention with use_rope=True needs `rope` (cos, sin)")
            cos, sin = rope
            q = apply_rope(q, cos, sin, self.rope_layout)
            k = apply_rope(k, cos, sin, self.rope_layout)
        return q, k, v

    def _attend(self, x, q, k, v, attention_mask):
        mask = None
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")
            if len(mask.shape) == 2:
                mask = mask[None, None]
            else:
                mask = mask[:, None]
        out = ops.dot_product_attention(q, k, v, mask=mask)
        out = ops.reshape(out, (ops.shape(x)[0], ops.shape(x)[1], self.dim))
        return self.proj(out)

    def call(self, x, rope=None, attention_mask=None):
        q, k, v = self._rotated_qkv(x, rope)
        return self._attend(x, q, k, v, attention_mask)

    def call_cached(self, x, rope=None, attention_mask=None, past_key=None, past_value=None):
        """Attention of new tokens over cached keys/values of earlier tokens plus their own.

        Keys are cached after rotation: a key's rotation depends only on its own position, so
        a cached key is exactly what a full recompute would produce (decoder-style KV cache).

        Args:
            x: (B, N, dim) the new tokens.
            rope: (cos, sin) for the new tokens' positions only.
            attention_mask: optional boolean (N, P + N) or (B, N, P + N) over [past, new] keys;
                None lets every new token see every key.
            past_key, past_value: (B, P, heads, head_dim) from an earlier call, or None.

        Returns:
            (out (B, N, dim), key (B, P + N, heads, head_dim), value (same)): the keys/values
            to pass as the cache of the next call.
        """
        q, k, v = self._rotated_qkv(x, rope)
        if past_key is not None:
            k = ops.concatenate([ops.cast(past_key, k.dtype), k], axis=1)
            v = ops.concatenate([ops.cast(past_value, v.dtype), v], axis=1)
        return self._attend(x, q, k, v, attention_mask), k, v

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dim,)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, qkv_bias=self.qkv_bias,
                      use_rope=self.use_rope, rope_theta=self.rope_theta,
                      proj_init_std=self.proj_init_std, rope_layout=self.rope_layout)
        return config
