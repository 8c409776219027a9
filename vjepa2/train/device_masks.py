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

With `counts="reference"` the counts follow the reference collator instead, as
`MultiBlockMaskSampler(counts="reference")` does on the host: a batch keeps its minimum context
and target counts, rounded down to one of a few static shapes ("buckets"). A compiled call needs
static shapes, so the bucket of each mask set is chosen per call on the host
(`draw_bucket(seed, step)`, with the frequencies the host sampler's batches fall into them),
and the device draws `candidates` whole batches by the reference rule (block area
`floor(scale * H' * W')`, aspect uniform; positions per sample) and keeps the first whose
minima fall into that bucket: the batches of a bucket are drawn as the reference draws them,
and the buckets as often as the reference's batches land in them. (A candidate batch with a
sample left without context is passed over; the reference redraws that sample alone.)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from vjepa2.masks import MultiBlockMaskSampler


def _block_shape(key, grid_hw, config):
    h, w = grid_hw
    area = config.spatial_scale * h * w
    lo, hi = config.aspect_ratio
    aspect = jnp.exp(jax.random.uniform(key, (), minval=math.log(lo), maxval=math.log(hi)))
    bh = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, h).astype(jnp.int32)
    bw = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, w).astype(jnp.int32)
    return bh, bw


def _reference_block_shape(key, grid_hw, config):
    h, w = grid_hw
    area = int(config.spatial_scale * h * w)
    lo, hi = config.aspect_ratio
    aspect = jax.random.uniform(key, (), minval=lo, maxval=hi)
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
        self.counts = "quantile"

    @classmethod
    def reference(cls, grid, batch_size: int, mask_sets=None, candidates=32, buckets=3):
        """The reference collator's counts (see the module docstring) for `batch_size`."""
        kwargs = {} if mask_sets is None else {"mask_sets": mask_sets}
        host = MultiBlockMaskSampler(grid, counts="reference", buckets=buckets, **kwargs)
        self = cls.__new__(cls)
        self.grid, self.mask_sets = tuple(host.grid), tuple(host.mask_sets)
        self.candidates, self.counts, self.batch_size = int(candidates), "reference", batch_size
        self.buckets = [list(map(tuple, b)) for b in host.bucket_shapes(batch_size)]
        self.bucket_weights = host.bucket_weights(batch_size)
        # How often the reference's batches land in each bucket (400 batches per mask set,
        # a seed of their own, as the bucket shapes).
        rng = np.random.default_rng(54321)
        self.bucket_probabilities = []
        for index, config in enumerate(self.mask_sets):
            hits = np.zeros(len(self.buckets[index]))
            for _ in range(400):
                _, ctx, tgt = host.reference_minima(rng, config, batch_size)
                bucket = host.bucket_of(batch_size, index, ctx, tgt)
                if bucket is not None:
                    hits[bucket] += 1
            self.bucket_probabilities.append(hits / hits.sum())
        return self

    def draw_bucket(self, seed: int, step: int) -> tuple:
        """`counts="reference"`: the bucket of each mask set for the call that starts at `step`
        (host side, a function of (seed, step) only, so a resumed run draws the same)."""
        rng = np.random.default_rng([int(seed), int(step), 99])
        return tuple(int(rng.choice(len(p), p=p)) for p in self.bucket_probabilities)

    def sample(self, key, batch_size: int, bucket: tuple | None = None):
        """A list (one per mask set) of dicts: `context_ids` (B, n_ctx), `target_ids`
        (B, n_tgt) int32, rows sorted, and `fallbacks` (samples, or with reference counts
        batches, none of whose candidates reached the counts). With reference counts,
        `bucket` (static) names each mask set's bucket, from `draw_bucket`."""
        if self.counts == "reference":
            if bucket is None or len(bucket) != len(self.mask_sets):
                raise ValueError(f"reference counts need a bucket per mask set; received "
                                 f"{bucket!r}")
            return [self._reference_set(jax.random.fold_in(key, index), index, config,
                                        batch_size, bucket[index])
                    for index, config in enumerate(self.mask_sets)]
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

    def _reference_set(self, key, index, config, batch_size, bucket):
        t, h, w = self.grid
        k_shapes, k_pos, k_ctx, k_tgt = jax.random.split(key, 4)
        n_ctx, n_tgt = self.buckets[index][bucket]
        shapes = jax.vmap(lambda k: _reference_block_shape(k, (h, w), config))(
            jax.random.split(k_shapes, self.candidates))
        spatial = jax.vmap(lambda k, bh, bw: _spatial_masks(k, (h, w), config, bh, bw,
                                                            batch_size))(
            jax.random.split(k_pos, self.candidates), *shapes)  # (R, B, H', W')
        masked = jnp.sum(spatial, axis=(2, 3))
        full = jnp.any(masked == h * w, axis=1)  # a sample with no context: redrawn
        ctx_min, tgt_min = (h * w - jnp.max(masked, axis=1)) * t, jnp.min(masked, axis=1) * t
        # The bucket each candidate batch maps to: the best-scoring shape it can fill.
        w_ctx, w_tgt = self.bucket_weights[index]
        shape_ctx = jnp.asarray([c for c, _ in self.buckets[index]])
        shape_tgt = jnp.asarray([tg for _, tg in self.buckets[index]])
        fits = (shape_ctx[None] <= ctx_min[:, None]) & (shape_tgt[None] <= tgt_min[:, None])
        score = jnp.where(fits, shape_ctx * w_ctx + shape_tgt * w_tgt, -1.0)
        lands = (jnp.argmax(score, axis=1) == bucket) & jnp.any(fits, axis=1) & ~full
        # None landed (rare: candidates per batch): the first that can fill the bucket.
        fills = fits[:, bucket] & ~full
        choice = jnp.where(jnp.any(lands), jnp.argmax(lands), jnp.argmax(fills))
        tokens = jnp.tile(spatial[choice].reshape(batch_size, h * w), (1, t))
        return {"context_ids": _random_subset(k_ctx, ~tokens, n_ctx),
                "target_ids": _random_subset(k_tgt, tokens, n_tgt),
                "fallbacks": jnp.sum(~jnp.any(lands)), "unfilled": jnp.sum(~jnp.any(fills))}
