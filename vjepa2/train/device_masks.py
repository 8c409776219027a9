"""The V-JEPA 2 multi-block masks drawn on the device (JAX), inside the compiled train step.

The same distribution as `vjepa2.masks.MultiBlockMaskSampler(counts="quantile")`, written in
`jax.numpy` with static shapes so that masks are made where the step runs, from a JAX key, with
no host round trip:

- per batch and mask set, one block shape: area `spatial_scale * H' * W'`, aspect log-uniform
  in `aspect_ratio`, sides rounded and clipped to the grid;
- per sample, `num_blocks` block positions (top-left uniform over the valid range); the masked
  set is their union extended as a tube through all time steps;
- every sample keeps the sampler's fixed counts (`num_context`, `num_target`): a random subset
  of its context and of its target tokens, sorted.

Where the host sampler redraws a sample that has fewer tokens than the fixed counts, this draws
`candidates` samples at once (the second half with a second block shape, as the host sampler
redraws the block shape) and keeps the first that reaches both counts. The fixed counts are a
5% quantile, so all candidates fail with probability about `0.05 ** candidates`; such a sample
keeps its first candidate, and its cut sets may then share tokens. `fallbacks` counts them.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vjepa2.masks import MultiBlockMaskSampler


def _block_shape(key, grid_hw, config):
    h, w = grid_hw
    area = config.spatial_scale * h * w
    lo, hi = config.aspect_ratio
    aspect = jnp.exp(jax.random.uniform(key, (), minval=math.log(lo), maxval=math.log(hi)))
    bh = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, h).astype(jnp.int32)
    bw = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, w).astype(jnp.int32)
    return bh, bw


def _spatial_masks(key, grid_hw, config, bh, bw, count):
    """`count` (H', W') boolean masks, each the union of `num_blocks` rectangles bh x bw."""
    h, w = grid_hw
    k_top, k_left = jax.random.split(key)
    shape = (count, config.num_blocks)
    top = jnp.floor(jax.random.uniform(k_top, shape) * (h - bh + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k_left, shape) * (w - bw + 1)).astype(jnp.int32)
    ys = jnp.arange(h)[None, None, :, None]
    xs = jnp.arange(w)[None, None, None, :]
    top, left = top[..., None, None], left[..., None, None]
    inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)
    return jnp.any(inside, axis=1)


def _random_subset(key, members, count):
    """Sorted indices of `count` random True entries of each row of `members` (B, N)."""
    noise = jax.random.uniform(key, members.shape)
    score = jnp.where(members, noise, 2.0 + noise)  # members first, in random order
    _, index = jax.lax.top_k(-score, count)
    return jnp.sort(index, axis=-1).astype(jnp.int32)


class DeviceMaskSampler:
    """Multi-block masks for a batch, drawn from a JAX key inside a compiled step.

    Args:
        grid: token grid `(T', H', W')`.
        mask_sets: the mask-set configs (default: V-JEPA 2's short- and long-range sets).
        quantile: the quantile of the fixed counts, as `MultiBlockMaskSampler`.
        candidates: samples drawn per sample to find one that reaches the counts (even).

    Example:
    ```python
    sampler = DeviceMaskSampler((4, 8, 8))
    masks = jax.jit(sampler.sample, static_argnums=1)(jax.random.key(0), 16)
    masks[0]["context_ids"].shape  # (16, sampler.num_context[0])
    ```
    """

    def __init__(self, grid, mask_sets=None, quantile=0.05, candidates=8):
        if candidates < 2 or candidates % 2:
            raise ValueError(f"candidates must be an even number >= 2; received {candidates}")
        kwargs = {} if mask_sets is None else {"mask_sets": mask_sets}
        host = MultiBlockMaskSampler(grid, quantile=quantile, **kwargs)
        self.grid = tuple(host.grid)
        self.mask_sets = tuple(host.mask_sets)
        self.num_context = tuple(int(n) for n in host.num_context)
        self.num_target = tuple(int(n) for n in host.num_target)
        self.candidates = int(candidates)

    def sample(self, key, batch_size: int):
        """A list (one per mask set) of dicts: `context_ids` (B, n_ctx), `target_ids`
        (B, n_tgt) int32, rows sorted, and `fallbacks` (samples none of whose candidates
        reached the counts)."""
        t, h, w = self.grid
        out = []
        for index, config in enumerate(self.mask_sets):
            k_set = jax.random.fold_in(key, index)
            k_shape, k_shape2, k_pos, k_ctx, k_tgt = jax.random.split(k_set, 5)
            n_ctx, n_tgt = self.num_context[index], self.num_target[index]
            half = self.candidates // 2
            masks = []
            for k_s, k_p in ((k_shape, k_pos), (k_shape2, jax.random.fold_in(k_pos, 1))):
                bh, bw = _block_shape(k_s, (h, w), config)
                masks.append(_spatial_masks(k_p, (h, w), config, bh, bw, batch_size * half)
                             .reshape(batch_size, half, h, w))
            spatial = jnp.concatenate(masks, axis=1)  # (B, candidates, H', W')
            masked = jnp.sum(spatial, axis=(2, 3)) * t
            valid = (masked >= n_tgt) & (h * w * t - masked >= n_ctx)
            choice = jnp.argmax(valid, axis=1)  # the first valid candidate (0 if none)
            chosen = jnp.take_along_axis(spatial, choice[:, None, None, None], axis=1)[:, 0]
            tokens = jnp.tile(chosen.reshape(batch_size, h * w), (1, t))  # a tube through time
            out.append({"context_ids": _random_subset(k_ctx, ~tokens, n_ctx),
                        "target_ids": _random_subset(k_tgt, tokens, n_tgt),
                        "fallbacks": jnp.sum(~jnp.any(valid, axis=1))})
        return out
