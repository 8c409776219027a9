"""The attentive probe of frozen evaluation (V-JEPA): cross-attention pooling + a linear head."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vjepa2")
class AttentiveProbe(keras.Model):
    """Learnable queries cross-attend over frozen encoder tokens; a linear head classifies.

    One pre-norm cross-attention block (queries attend to the LayerNormed tokens, residual,
    then a GELU MLP with residual), the queries averaged, a LayerNorm and a linear classifier.
    Only the probe is trained; the encoder that made the tokens stays frozen.

    Args:
        num_classes: classes of the linear head.
        dim: width of the tokens it reads.
        num_heads: attention heads; must divide `dim`.
        num_queries: learnable queries (1 in V-JEPA, 16 in V-JEPA 2).
        mlp_ratio: MLP hidden width as a multiple of `dim`.
        num_tokens: if given, a learned position embedding per token index (added to the
            tokens before pooling), so the probe can read where a token is: an encoder with
            rotary positions (RoPE) carries no absolute position in its outputs, and without
            it the probe pools a bag of tokens. None (the default): V-JEPA's probe as
            published.

    Call arguments:
        tokens: (B, N, dim) frozen encoder outputs.

    Returns:
        (B, num_classes) logits.

    Example:
    ```python
    probe = AttentiveProbe(num_classes=4, dim=192)
    logits = probe(encoder(video))  # (B, 4)
    ```

    Reference:
        Bardes et al., V-JEPA (arXiv:2404.08471), frozen evaluation.
    """

    def __init__(self, num_classes, dim, num_heads=4, num_queries=1, mlp_ratio=4.0,
                 num_tokens=None, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; received {num_classes}")
        if dim % num_heads:
            raise ValueError(f"num_heads must divide dim; received dim={dim}, "
                             f"num_heads={num_heads}")
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1; received {num_queries}")
        if num_tokens is not None and num_tokens < 1:
            raise ValueError(f"num_tokens must be None or >= 1; received {num_tokens}")
        self.num_tokens = num_tokens
        self.num_classes = num_classes
        self.dim = dim
        self.num_heads = num_heads
        self.num_queries = num_queries
        self.mlp_ratio = mlp_ratio
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.norm_tokens = keras.layers.LayerNormalization(epsilon=1e-6, name="norm_tokens")
        self.norm_queries = keras.layers.LayerNormalization(epsilon=1e-6, name="norm_queries")
        self.cross_attn = keras.layers.MultiHeadAttention(
            num_heads, dim // num_heads, kernel_initializer=init, name="cross_attn")
        self.norm_mlp = keras.layers.LayerNormalization(epsilon=1e-6, name="norm_mlp")
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), kernel_initializer=init, name="fc1")
        self.fc2 = keras.layers.Dense(dim, kernel_initializer=init, name="fc2")
        self.norm_out = keras.layers.LayerNormalization(epsilon=1e-6, name="norm_out")
        self.head = keras.layers.Dense(num_classes, kernel_initializer=init, name="head")

    def build(self, input_shape=None):
        self.queries = self.add_weight(
            shape=(self.num_queries, self.dim), name="queries",
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        if self.num_tokens is not None:
            self.positions = self.add_weight(
                shape=(self.num_tokens, self.dim), name="positions",
                initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        token_shape = (None, None, self.dim)
        query_shape = (None, self.num_queries, self.dim)
        self.norm_tokens.build(token_shape)
        self.norm_queries.build(query_shape)
        self.cross_attn.build(query_shape, token_shape)
        self.norm_mlp.build(query_shape)
        self.fc1.build(query_shape)
        self.fc2.build((None, self.num_queries, int(self.dim * self.mlp_ratio)))
        self.norm_out.build((None, self.dim))
        self.head.build((None, self.dim))
        self.built = True

    def call(self, tokens, training=False):
        tokens = self.norm_tokens(tokens)
        if self.num_tokens is not None:
            if tokens.shape[1] is not None and tokens.shape[1] != self.num_tokens:
                raise ValueError(f"the probe has positions for {self.num_tokens} tokens; "
                                 f"received {tokens.shape[1]}")
            tokens = tokens + ops.cast(self.positions, tokens.dtype)[None]
        batch = ops.shape(tokens)[0]
        queries = ops.broadcast_to(ops.cast(self.queries, tokens.dtype),
                                   (batch, self.num_queries, self.dim))
        x = queries + self.cross_attn(self.norm_queries(queries), tokens, training=training)
        hidden = keras.activations.gelu(self.fc1(self.norm_mlp(x)), approximate=False)
        x = x + self.fc2(hidden)
        return self.head(self.norm_out(ops.mean(x, axis=1)))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, dim=self.dim, num_heads=self.num_heads,
                      num_queries=self.num_queries, mlp_ratio=self.mlp_ratio,
                      num_tokens=self.num_tokens)
        return config
