"""Multi-block 3D mask sampler (V-JEPA 2), run in the input pipeline.

A mask set is the union of `num_blocks` rectangles on the (H', W') patch grid, each covering
`spatial_scale` of a frame with an aspect ratio drawn from `aspect_ratio`, extended as a tube
through all time steps. Masked tokens are the prediction targets; the rest is the visible
context. V-JEPA 2 uses two sets per clip: short-range (8 blocks of 15%, ~73% masked) and
long-range (2 blocks of 70%, ~90% masked). The block size is drawn once per batch, the block
positions per sample, as in the reference.

Every sample of a batch's mask set is cut to the same number of context and target tokens.
Two ways to choose those counts (`counts=`):

- `"reference"`: as the reference collator, each batch keeps the minimum context count and the
  minimum target count over its samples, rounded down to one of a few static shapes
  (`buckets` (context, target) pairs per mask set, chosen once per batch size so that they keep
  the most of those minima), so a compiled step sees at most `buckets ** num_sets` shapes. The
  block shape follows the reference rule (area `floor(scale * H' * W')`, aspect uniform in the
  range). Samples keep a random subset of their ids (the reference keeps the first ones).
- `"quantile"` (the default, and what older runs used): one fixed count per mask set, a low
  quantile of the per-sample distribution, with log-uniform aspect ratios; a sample with fewer
  tokens is redrawn. One static shape for the whole run, but far fewer context tokens than the
  reference on small grids (8 instead of ~25 long-range context tokens at 4 x 8 x 8).

Both redraw a sample with an empty context, as the reference does. The model receives the
sorted flat token ids as int32 tensors.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskSetConfig:
    """One mask set: `num_blocks` tubes each covering `spatial_scale` of a frame."""

    num_blocks: int
    spatial_scale: float
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self):
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1; received {self.num_blocks}")
        if not 0.0 < self.spatial_scale <= 1.0:
            raise ValueError(f"spatial_scale must be in (0, 1]; received {self.spatial_scale}")
        lo, hi = self.aspect_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"aspect_ratio must be 0 < lo <= hi; received {self.aspect_ratio}")


SHORT_RANGE = MaskSetConfig(num_blocks=8, spatial_scale=0.15)
LONG_RANGE = MaskSetConfig(num_blocks=2, spatial_scale=0.70)
DEFAULT_MASK_SETS = (SHORT_RANGE, LONG_RANGE)


def _block_shape(rng, grid_hw, config):
    h, w = grid_hw
    area = config.spatial_scale * h * w
    # Log-uniform aspect, as the reference samples it between the bounds.
    lo, hi = config.aspect_ratio
    aspect = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    bh = int(round(math.sqrt(area * aspect)))
    bw = int(round(math.sqrt(area / aspect)))
    return min(max(bh, 1), h), min(max(bw, 1), w)


def reference_block_shape(rng, grid_hw, config):
    """The reference collator's block shape: `floor(scale * H' * W')` patches, aspect ratio
    drawn uniformly from `config.aspect_ratio`, sides rounded and clipped to the grid."""
    h, w = grid_hw
    area = int(config.spatial_scale * h * w)
    lo, hi = config.aspect_ratio
    aspect = lo + rng.random() * (hi - lo)
    bh = int(round(math.sqrt(area * aspect)))
    bw = int(round(math.sqrt(area / aspect)))
    return min(max(bh, 1), h), min(max(bw, 1), w)


def sample_spatial_mask(rng, grid_hw, config, block_shape=None):
    """One (H', W') boolean mask, True where masked: the union of `num_blocks` rectangles."""
    h, w = grid_hw
    bh, bw = block_shape or _block_shape(rng, grid_hw, config)
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(config.num_blocks):
        top = rng.integers(0, h - bh + 1)
        left = rng.integers(0, w - bw + 1)
        mask[top:top + bh, left:left + bw] = True
    return mask


COUNT_MODES = ("quantile", "reference")


def choose_buckets(context_minima, target_minima, buckets):
    """`buckets` (context, target) pairs that keep the most of the given per-batch minima.

    Every batch maps to the largest pair it can fill (both counts at most its minima), so the
    first pair is the smallest minima seen; the others are added greedily, each the candidate
    that most raises the mean kept share (context and target weighted by their means).
    """
    ctx = np.asarray(context_minima)
    tgt = np.asarray(target_minima)
    weights = (1.0 / ctx.mean(), 1.0 / tgt.mean())
    chosen = [(int(ctx.min()), int(tgt.min()))]
    kept = np.full(len(ctx), chosen[0][0] * weights[0] + chosen[0][1] * weights[1])
    candidates = np.array([(c, t) for c in np.unique(ctx) for t in np.unique(tgt)])
    scores = candidates[:, 0] * weights[0] + candidates[:, 1] * weights[1]
    fits = (candidates[:, :1] <= ctx[None]) & (candidates[:, 1:] <= tgt[None])
    for _ in range(buckets - 1):
        gains = np.where(fits, np.maximum(scores[:, None], kept[None]), kept[None]).mean(axis=1)
        best = int(np.argmax(gains))
        if gains[best] <= kept.mean():
            break
        chosen.append((int(candidates[best, 0]), int(candidates[best, 1])))
        kept = np.where(fits[best], np.maximum(scores[best], kept), kept)
    return sorted(chosen)


class MultiBlockMaskSampler:
    """Samples context/target token ids for a (T', H', W') token grid.

    Args:
        grid: (T', H', W') token grid.
        mask_sets: the mask set configs (default: V-JEPA 2's short- and long-range sets).
        quantile: `counts="quantile"`: the fixed counts are this low quantile of the
            per-sample counts.
        seed: base seed; the masks of batch `step` depend only on (seed, step), so a resumed
            run draws exactly the masks an uninterrupted one would.
        max_redraws: draws of a sample (or, `"reference"`, of a batch) before giving up.
        counts: `"quantile"` (one fixed shape per mask set) or `"reference"` (the reference's
            per-batch minimum, rounded down to one of `buckets` shapes per mask set); see the
            module docstring.
        buckets: `counts="reference"`: (context, target) shapes per mask set (1 gives one
            shape: the smallest minimum, like a 0-quantile; None keeps each batch's exact
            minima, as the reference does, for backends that handle many shapes).

    Attributes:
        num_context, num_target: `"quantile"`: per mask set, the fixed counts; `"reference"`:
            None (the counts vary per batch; `bucket_shapes(batch_size)` lists them).

    Example:
    ```python
    sampler = MultiBlockMaskSampler((4, 8, 8))
    masks = sampler.sample_batch(batch_size=8, step=0)
    masks[0]["context_ids"].shape  # (8, sampler.num_context[0])
    ```
    """

    def __init__(self, grid, mask_sets=DEFAULT_MASK_SETS, quantile=0.05, seed=0,
                 max_redraws=100, counts="quantile", buckets=3):
        if len(grid) != 3 or min(grid) < 1:
            raise ValueError(f"grid must be three positive ints (T', H', W'); received {grid}")
        if not 0.0 <= quantile < 0.5:
            raise ValueError(f"quantile must be in [0, 0.5); received {quantile}")
        if counts not in COUNT_MODES:
            raise ValueError(f"counts must be one of {COUNT_MODES}; received {counts!r}")
        if buckets is not None and int(buckets) < 1:
            raise ValueError(f"buckets must be >= 1 or None; received {buckets}")
        self.grid = tuple(int(g) for g in grid)
        self.mask_sets = tuple(mask_sets)
        self.seed = int(seed)
        self.max_redraws = max_redraws
        self.counts = counts
        self.buckets = None if buckets is None else int(buckets)
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self._bucket_cache = {}
        if counts == "reference":
            self.num_context = self.num_target = None
            return
        self.num_context, self.num_target = [], []
        # Fixed sizes from the distribution itself, with a seed of their own so they do not
        # depend on the training seed.
        rng = np.random.default_rng(12345)
        hw = self.grid[1] * self.grid[2]
        for config in self.mask_sets:
            masked = np.array([sample_spatial_mask(rng, self.grid[1:], config).sum()
                               for _ in range(2000)])
            visible = hw - masked
            if (visible == 0).mean() > 0.5:
                raise ValueError(f"mask set {config} leaves no visible token on grid {grid} "
                                 "in most samples")
            ctx = int(np.quantile(visible[visible > 0], quantile)) * self.grid[0]
            tgt = int(np.quantile(masked, quantile)) * self.grid[0]
            self.num_context.append(max(ctx, self.grid[0]))
            self.num_target.append(max(tgt, 1))

    def sample_spatial(self, rng, config, block_shape=None):
        """One spatial mask (H', W'), True where masked, with a non-empty context."""
        for _ in range(self.max_redraws):
            mask = sample_spatial_mask(rng, self.grid[1:], config, block_shape)
            if not mask.all():
                return mask
        raise RuntimeError(f"could not draw a mask with a visible context on grid {self.grid} "
                           f"in {self.max_redraws} tries ({config})")

    def reference_minima(self, rng, config, batch_size):
        """One batch drawn as the reference collator draws it: (spatial masks (B, H', W'),
        the batch's minimum context and target counts in tokens)."""
        block_shape = reference_block_shape(rng, self.grid[1:], config)
        spatial = np.stack([self.sample_spatial(rng, config, block_shape)
                            for _ in range(batch_size)])
        masked = spatial.reshape(batch_size, -1).sum(axis=1)
        hw = self.grid[1] * self.grid[2]
        return spatial, int((hw - masked).min()) * self.grid[0], int(masked.min()) * self.grid[0]

    def bucket_shapes(self, batch_size):
        """`counts="reference"`: per mask set, the sorted (context, target) token counts a
        batch of `batch_size` can have; fixed by the grid, mask sets and batch size alone
        (None with `buckets=None`: every batch keeps its exact minima)."""
        if self.buckets is None:
            return None
        if batch_size not in self._bucket_cache:
            # A seed of their own: the shapes do not depend on the training seed.
            rng = np.random.default_rng(12345)
            shapes, weights = [], []
            for config in self.mask_sets:
                minima = [self.reference_minima(rng, config, batch_size)[1:] for _ in range(400)]
                ctx, tgt = (np.array(m, float) for m in zip(*minima))
                shapes.append(choose_buckets(ctx, tgt, self.buckets))
                weights.append((1.0 / ctx.mean(), 1.0 / tgt.mean()))
            self._bucket_cache[batch_size] = (shapes, weights)
        return self._bucket_cache[batch_size][0]

    def bucket_weights(self, batch_size):
        """`counts="reference"`: per mask set, the (context, target) weights with which
        `bucket_of` scores the shapes of `bucket_shapes(batch_size)` (None with
        `buckets=None`)."""
        if self.bucket_shapes(batch_size) is None:
            return None
        return self._bucket_cache[batch_size][1]

    def bucket_of(self, batch_size, index, ctx_min, tgt_min):
        """`counts="reference"`: the index of the bucket of mask set `index` that a batch with
        these minimum counts maps to (among the shapes it can fill, the one that keeps the
        most, weighted as in `choose_buckets`), or None if it fills none."""
        shapes = self.bucket_shapes(batch_size)[index]
        w_ctx, w_tgt = self.bucket_weights(batch_size)[index]
        fits = [(c * w_ctx + t * w_tgt, b) for b, (c, t) in enumerate(shapes)
                if c <= ctx_min and t <= tgt_min]
        return max(fits)[1] if fits else None

    def _reference_set(self, rng, index, config, batch_size):
        """One mask set of a batch, `counts="reference"`: (spatial masks, n_ctx, n_tgt)."""
        shapes = self.bucket_shapes(batch_size)
        shapes = None if shapes is None else shapes[index]
        for _ in range(self.max_redraws):
            spatial, ctx_min, tgt_min = self.reference_minima(rng, config, batch_size)
            if shapes is None:  # exact per-batch minima, as the reference
                return spatial, ctx_min, tgt_min
            bucket = self.bucket_of(batch_size, index, ctx_min, tgt_min)
            if bucket is not None:
                n_ctx, n_tgt = shapes[bucket]
                return spatial, n_ctx, n_tgt
        raise RuntimeError(f"mask sampler could not fill any of the shapes {shapes} on grid "
                           f"{self.grid} in {self.max_redraws} batches ({config})")

    def sample_batch(self, batch_size, step):
        """Masks for one batch: a list (one per mask set) of dicts with int32 arrays
        `context_ids` (B, n_ctx) and `target_ids` (B, n_tgt), each row sorted; `n_ctx` and
        `n_tgt` are `num_context[i]` / `num_target[i]`, or with `counts="reference"` one of
        `bucket_shapes(B)[i]`."""
        rng = np.random.default_rng([self.seed, int(step)])
        t, h, w = self.grid
        out = []
        for index, config in enumerate(self.mask_sets):
            if self.counts == "reference":
                spatial, n_ctx, n_tgt = self._reference_set(rng, index, config, batch_size)
                draws = iter(spatial)
            else:
                n_ctx, n_tgt = self.num_context[index], self.num_target[index]
                block_shape = _block_shape(rng, (h, w), config)
                draws = None
            contexts = np.empty((batch_size, n_ctx), np.int32)
            targets = np.empty((batch_size, n_tgt), np.int32)
            for b in range(batch_size):
                if draws is not None:
                    masked = np.tile(next(draws).reshape(-1), t)
                    target, context = np.flatnonzero(masked), np.flatnonzero(~masked)
                else:
                    context, target, block_shape = self._quantile_sample(
                        rng, config, block_shape, n_ctx, n_tgt)
                contexts[b] = np.sort(rng.choice(context, n_ctx, replace=False))
                targets[b] = np.sort(rng.choice(target, n_tgt, replace=False))
            out.append({"context_ids": contexts, "target_ids": targets})
        return out

    def _quantile_sample(self, rng, config, block_shape, n_ctx, n_tgt):
        """`counts="quantile"`: one sample's (context ids, target ids, block shape) with at
        least the fixed counts; the batch's block shape is redrawn if it cannot reach them."""
        for _ in range(self.max_redraws):
            spatial = self.sample_spatial(rng, config, block_shape)
            masked = np.tile(spatial.reshape(-1), self.grid[0])  # a tube through all time steps
            target = np.flatnonzero(masked)
            context = np.flatnonzero(~masked)
            if len(context) >= n_ctx and len(target) >= n_tgt:
                return context, target, block_shape
            block_shape = _block_shape(rng, self.grid[1:], config)
        raise RuntimeError(f"mask sampler could not reach {n_ctx} context and "
                           f"{n_tgt} target tokens on grid {self.grid}")
