"""V-JEPA 2-AC action-conditioned predictor: next-frame latents from latents, actions, states."""
from __future__ import annotations

import math

import keras
from keras import ops

from vjepa2.layers.block import TransformerBlock
from vjepa2.layers.rope import check_rope_layout, rope_angles
from vjepa2.models.preset_io import PresetMixin


def block_causal_mask(steps: int, tokens_per_step: int, past_steps: int = 0):
    """Boolean `(steps * L, (past_steps + steps) * L)` mask: a token of step t sees every token
    of steps <= t (the `past_steps` cached ones included), with `L = tokens_per_step`."""
    query_step = ops.arange(steps * tokens_per_step, dtype="int32") // tokens_per_step
    key_step = ops.arange((past_steps + steps) * tokens_per_step,
                          dtype="int32") // tokens_per_step - past_steps
    return ops.expand_dims(query_step, 1) >= ops.expand_dims(key_step, 0)


@keras.saving.register_keras_serializable(package="vjepa2")
class ActionConditionedPredictor(PresetMixin, keras.Model):
    """Predicts the next frame's latent tokens from past latents, actions and proprio states.

    Per time step k the sequence holds `[a_k, s_k, z_k patches]` (`L = N + 2` tokens): the
    action and the state are each embedded by a linear layer, the frame's patch tokens are
    projected from the encoder width. Attention is block-causal: every token of step t sees all
    tokens of steps <= t and none after. Patch tokens get 3D RoPE at `(t = k, row, column)`;
    the action and state tokens rotate in time only. After the blocks, a LayerNorm and a linear
    head map the outputs at the `z_k` positions back to the encoder width: they predict
    `z_{k+1}`.

    Block-causality makes the outputs and keys/values of step t independent of later steps, so
    a rollout can run one step at a time over a key/value cache of the earlier steps
    (`forward_steps`) and get exactly what a full recompute would.

    Args:
        encoder_dim: width `D` of the (frozen) encoder's tokens, read and predicted.
        action_dim: action size `A`.
        state_dim: proprio state size `S`.
        embed_dim: predictor width.
        depth: transformer blocks.
        num_heads: attention heads (head dim >= 6 for 3D RoPE).
        mlp_dim: MLP hidden width.
        qkv_bias: query/key/value bias.
        residual: the head predicts the change `z_{k+1} - z_k`, added to `z_k` (so an untrained
            model copies the last frame, the baseline to beat). The reference predicts
            `z_{k+1}` directly (False); small models trained on little data learn faster with
            True.
        rope_layout: `"rotation"` (true 3D rotation, the default for models trained here) or
            `"reference"` (the layout the released V-JEPA 2 weights were trained with; set by
            `vjepa2.convert`). Saved in the config, so a model loads with its own layout.
        normalize_output: the predictions pass a LayerNorm without scale or bias (eps 1e-5,
            PyTorch's default), as the reference normalizes them before its loss, before its
            planning energy and before feeding them back in a rollout. True for converted
            V-JEPA 2-AC models, so that a rollout matches the reference's.

    Call arguments:
        z: `(B, T, N, encoder_dim)` frame latents (each frame encoded alone, normalized).
        actions: `(B, T, A)`; `actions[:, k]` leads from frame k to frame k+1.
        states: `(B, T, S)`; `states[:, k]` is the proprio state at frame k.
        frame_grid: `(rows, columns)` of a frame's patch grid, Python ints; default: a square
            grid of `N` patches.

    Returns:
        `(B, T, N, encoder_dim)`: at step k the prediction of `z_{k+1}`.

    Example:
    ```python
    predictor = ActionConditionedPredictor.from_preset("tiny", encoder_dim=192, action_dim=4,
                                                       state_dim=4)
    z_next = predictor(z, actions, states)  # z (2, 4, 16, 192) -> (2, 4, 16, 192)
    ```

    Reference:
        Assran et al., V-JEPA 2 (arXiv:2506.09985), section 3 (V-JEPA 2-AC).
    """

    preset_key = "ac_predictor"

    def __init__(self, encoder_dim=192, action_dim=7, state_dim=7, embed_dim=192, depth=6,
                 num_heads=3, mlp_dim=768, qkv_bias=True, residual=False,
                 rope_layout="rotation", normalize_output=False, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("encoder_dim", encoder_dim), ("action_dim", action_dim),
                            ("state_dim", state_dim), ("embed_dim", embed_dim),
                            ("depth", depth), ("num_heads", num_heads), ("mlp_dim", mlp_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; received {name}={value!r}")
        if embed_dim % num_heads:
            raise ValueError(f"num_heads must divide embed_dim; received embed_dim={embed_dim}, "
                             f"num_heads={num_heads}")
        self.encoder_dim = encoder_dim
        self.action_dim = action_dim
        self.state_dim = state_dim
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.qkv_bias = qkv_bias
        self.residual = bool(residual)
        self.rope_layout = check_rope_layout(rope_layout)
        self.normalize_output = bool(normalize_output)
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.action_embed = keras.layers.Dense(embed_dim, name="action_embed",
                                               kernel_initializer=init)
        self.state_embed = keras.layers.Dense(embed_dim, name="state_embed",
                                              kernel_initializer=init)
        self.patch_embed = keras.layers.Dense(embed_dim, name="patch_embed",
                                              kernel_initializer=init)
        self.blocks = [
            TransformerBlock(embed_dim, num_heads, mlp_dim, layer_index=i + 1,
                             qkv_bias=qkv_bias, rope_layout=rope_layout, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.head = keras.layers.Dense(encoder_dim, name="head", kernel_initializer=init)

    def build(self, input_shape=None):
        self.action_embed.build((None, None, self.action_dim))
        self.state_embed.build((None, None, self.state_dim))
        self.patch_embed.build((None, None, None, self.encoder_dim))
        token_shape = (None, None, self.embed_dim)
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        self.head.build(token_shape)
        self.built = True

    # ------------------------------------------------------------------------------ helpers
    def _check(self, z, actions, states):
        if len(z.shape) != 4 or z.shape[-1] != self.encoder_dim:
            raise ValueError(f"z must be (B, T, N, {self.encoder_dim}); received shape "
                             f"{tuple(z.shape)}")
        if len(actions.shape) != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be (B, T, {self.action_dim}); received shape "
                             f"{tuple(actions.shape)}")
        if len(states.shape) != 3 or states.shape[-1] != self.state_dim:
            raise ValueError(f"states must be (B, T, {self.state_dim}); received shape "
                             f"{tuple(states.shape)}")
        steps = {z.shape[1], actions.shape[1], states.shape[1]} - {None}
        if len(steps) > 1:
            raise ValueError("z, actions and states must have the same number of steps T; "
                             f"received shapes {tuple(z.shape)}, {tuple(actions.shape)}, "
                             f"{tuple(states.shape)}")

    @staticmethod
    def _grid(num_patches, frame_grid):
        if frame_grid is None:
            side = int(round(math.sqrt(num_patches)))
            if side * side != num_patches:
                raise ValueError(f"{num_patches} patches per frame are not a square grid; pass "
                                 "frame_grid=(rows, columns)")
            return side, side
        rows, cols = (int(v) for v in frame_grid)
        if rows * cols != num_patches:
            raise ValueError(f"frame_grid {rows}x{cols} does not match {num_patches} patches "
                             "per frame")
        return rows, cols

    def step_rope(self, start_step: int, steps: int, frame_grid):
        """(cos, sin) for the `[a, s, patches]` tokens of steps `start_step .. + steps - 1`.

        Action and state tokens sit at `(t, 0, 0)` with only the time axis rotated.
        """
        rows, cols = frame_grid
        n = rows * cols
        t = ops.arange(start_step, start_step + steps, dtype="int32")  # (T,)
        tt = ops.broadcast_to(t[:, None], (steps, n + 2))
        row = ops.concatenate([ops.zeros((2,), "int32"),
                               ops.repeat(ops.arange(rows, dtype="int32"), cols)])
        col = ops.concatenate([ops.zeros((2,), "int32"),
                               ops.tile(ops.arange(cols, dtype="int32"), [rows])])
        positions = ops.stack([tt, ops.broadcast_to(row, (steps, n + 2)),
                               ops.broadcast_to(col, (steps, n + 2))], axis=-1)
        spatial = ops.concatenate([ops.zeros((2,), "int32"), ops.ones((n,), "int32")])
        axis_mask = ops.stack([ops.ones((n + 2,), "int32"), spatial, spatial], axis=-1)
        axis_mask = ops.broadcast_to(axis_mask, (steps, n + 2, 3))
        positions = ops.reshape(positions, (steps * (n + 2), 3))
        axis_mask = ops.reshape(axis_mask, (steps * (n + 2), 3))
        return rope_angles(positions, self.embed_dim // self.num_heads, axis_mask,
                           layout=self.rope_layout)

    def embed_steps(self, z, actions, states):
        """`(B, T, N, D)`, `(B, T, A)`, `(B, T, S)` -> tokens `(B, T * (N + 2), embed_dim)`."""
        patches = self.patch_embed(z)
        dtype = patches.dtype
        a = ops.expand_dims(ops.cast(self.action_embed(actions), dtype), 2)
        s = ops.expand_dims(ops.cast(self.state_embed(states), dtype), 2)
        tokens = ops.concatenate([a, s, patches], axis=2)  # (B, T, N + 2, E)
        shape = ops.shape(tokens)
        return ops.reshape(tokens, (shape[0], shape[1] * shape[2], self.embed_dim))

    # ------------------------------------------------------------------------------ forward
    def forward_steps(self, z, actions, states, start_step=0, cache=None, frame_grid=None,
                      predict=True):
        """Runs steps `start_step .. start_step + T - 1` over a cache of the earlier steps.

        Args:
            z, actions, states: the new steps, `(B, T, N, D)`, `(B, T, A)`, `(B, T, S)`.
            start_step: time index of the first new step (its RoPE time coordinate), a Python
                int equal to the number of cached steps.
            cache: `None` or the cache returned by an earlier call (steps `< start_step`), with
                batch B or 1 (broadcast over B).
            frame_grid: `(rows, columns)` of the patches; default square.
            predict: compute the predictions (False: only extend the cache).

        Returns:
            `(predictions (B, T, N, D) or None, cache)`; the cache holds per block the rotated
            keys and values of every step so far, `[(key, value)]` each
            `(B, (start_step + T) * (N + 2), heads, head_dim)`.
        """
        self._check(z, actions, states)
        steps, num_patches = z.shape[1], z.shape[2]
        grid = self._grid(num_patches, frame_grid)
        tokens_per_step = num_patches + 2
        x = self.embed_steps(z, actions, states)
        rope = self.step_rope(start_step, steps, grid)
        batch = ops.shape(x)[0]
        # One new step sees every cached key and all of its own tokens: no mask needed.
        mask = None if steps == 1 else block_causal_mask(steps, tokens_per_step, start_step)
        new_cache = []
        for i, block in enumerate(self.blocks):
            past_key = past_value = None
            if cache is not None:
                past_key, past_value = cache[i]
                past_key = _broadcast_batch(past_key, batch)
                past_value = _broadcast_batch(past_value, batch)
            x, key, value = block.call_cached(x, rope=rope, attention_mask=mask,
                                              past_key=past_key, past_value=past_value)
            new_cache.append((key, value))
        if not predict:
            return None, new_cache
        return self._head(x, z, steps, tokens_per_step), new_cache

    def _head(self, x, z, steps, tokens_per_step):
        x = ops.reshape(x, (ops.shape(x)[0], steps, tokens_per_step, self.embed_dim))
        out = self.head(self.norm(x[:, :, 2:]))
        if self.residual:
            out = ops.cast(z, out.dtype) + out
        if self.normalize_output:
            mean = ops.mean(out, axis=-1, keepdims=True)
            var = ops.var(out, axis=-1, keepdims=True)
            out = (out - mean) * ops.rsqrt(var + ops.cast(1e-5, out.dtype))
        return out

    def call(self, z, actions, states, frame_grid=None):
        self._check(z, actions, states)
        steps, num_patches = z.shape[1], z.shape[2]
        grid = self._grid(num_patches, frame_grid)
        tokens_per_step = num_patches + 2
        x = self.embed_steps(z, actions, states)
        rope = self.step_rope(0, steps, grid)
        mask = block_causal_mask(steps, tokens_per_step)
        for block in self.blocks:
            x = block(x, rope=rope, attention_mask=mask)
        return self._head(x, z, steps, tokens_per_step)

    def get_config(self):
        config = super().get_config()
        config.update(encoder_dim=self.encoder_dim, action_dim=self.action_dim,
                      state_dim=self.state_dim, embed_dim=self.embed_dim, depth=self.depth,
                      num_heads=self.num_heads, mlp_dim=self.mlp_dim, qkv_bias=self.qkv_bias,
                      residual=self.residual, rope_layout=self.rope_layout,
                      normalize_output=self.normalize_output)
        return config


def _broadcast_batch(x, batch):
    """Broadcasts a batch-1 cache entry over `batch` (a no-op when it already has it)."""
    if x.shape[0] is not None and x.shape[0] != 1:
        return x
    return ops.broadcast_to(x, (batch,) + tuple(ops.shape(x)[1:]))
