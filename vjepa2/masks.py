"""Multi-block 3D mask sampler (V-JEPA 2), run in the input pipeline.

A mask set is the union of `num_blocks` rectangles on the (H', W') patch grid, each covering
`spatial_scale` of a frame with an aspect ratio drawn from `aspect_ratio`, extended as a tube
through all time steps. Masked tokens are the prediction targets; the rest is the visible
context. V-JEPA 2 uses two sets per clip: short-range (8 blocks of 15%, ~73% masked) and
long-range (2 blocks of 70%, ~90% masked). The block size is drawn once per batch, the block
positions per sample, as in the reference.

The model needs static shapes (one compiled step for the whole run), so every sample of a mask
set is cut to the same number of context and target tokens: `num_context` and `num_target` are
fixed per sampler as low quantiles of their distribution; a sample with fewer is redrawn (the
reference also redraws an empty context) and a sample with more keeps a random subset. The
model receives the sorted flat token ids as int32 tensors.
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


class MultiBlockMaskSampler:
    """Samples fixed-size context/target token ids for a (T', H', W') token grid.

    Args:
        grid: (T', H', W') token grid.
        mask_sets: the mask set configs (default: V-JEPA 2's short- and long-range sets).
        quantile: the fixed counts are this low quantile of the per-sample counts.
        seed: base seed; the masks of batch `step` depend only on (seed, step), so a resumed
            run draws exactly the masks an uninterrupted one would.

    Example:
    ```python
    sampler = MultiBlockMaskSampler((4, 8, 8))
    masks = sampler.sample_batch(batch_size=8, step=0)
    masks[0]["context_ids"].shape  # (8, sampler.num_context[0])
    ```
    """

    def __init__(self, grid, mask_sets=DEFAULT_MASK_SETS, quantile=0.05, seed=0,
                 max_redraws=100):
        if len(grid) != 3 or min(grid) < 1:
            raise ValueError(f"grid must be three positive ints (T', H', W'); received {grid}")
        if not 0.0 <= quantile < 0.5:
            raise ValueError(f"quantile must be in [0, 0.5); received {quantile}")
        self.grid = tuple(int(g) for g in grid)
        self.mask_sets = tuple(mask_sets)
        self.seed = int(seed)
        self.max_redraws = max_redraws
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
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

    def sample_batch(self, batch_size, step):
        """Masks for one batch: a list (one per mask set) of dicts with int32 arrays
        `context_ids` (B, num_context) and `target_ids` (B, num_target), each row sorted."""
        rng = np.random.default_rng([self.seed, int(step)])
        t, h, w = self.grid
        out = []
        for index, config in enumerate(self.mask_sets):
            n_ctx, n_tgt = self.num_context[index], self.num_target[index]
            block_shape = _block_shape(rng, (h, w), config)
            contexts = np.empty((batch_size, n_ctx), np.int32)
            targets = np.empty((batch_size, n_tgt), np.int32)
            for b in range(batch_size):
                for _ in range(self.max_redraws):
                    spatial = self.sample_spatial(rng, config, block_shape)
                    masked = np.tile(spatial.reshape(-1), t)  # tube through all time steps
                    target = np.flatnonzero(masked)
                    context = np.flatnonzero(~masked)
                    if len(context) >= n_ctx and len(target) >= n_tgt:
                        break
                    # The batch's block shape cannot reach the fixed sizes: draw another.
                    block_shape = _block_shape(rng, (h, w), config)
                else:
                    raise RuntimeError(f"mask sampler could not reach {n_ctx} context and "
                                       f"{n_tgt} target tokens on grid {self.grid}")
                contexts[b] = np.sort(rng.choice(context, n_ctx, replace=False))
                targets[b] = np.sort(rng.choice(target, n_tgt, replace=False))
            out.append({"context_ids": contexts, "target_ids": targets})
        return out
