"""2D mask samplers of the JEPA family, run in the input pipeline: I-JEPA and A-JEPA.

I-JEPA (Assran et al., arXiv:2301.08243) masks per image: `num_targets` (4) target blocks, each
of scale U(0.15, 0.2) of the patch grid and aspect ratio (height / width) U(0.75, 1.5), and one
context block of scale U(0.85, 1.0) with unit aspect ratio, from which the target regions are
removed. Block sizes are drawn once per batch and positions per sample, as in the reference
(`src/masks/multiblock.py`: the scale and the aspect ratio come from one uniform draw each; the
block side is `round(sqrt(area * aspect))`, shrunk by one while it reaches the grid edge).

A-JEPA (Fei et al., arXiv:2311.15830) masks spectrogram patches (rows: time, columns:
frequency) with a curriculum: early in training the targets are I-JEPA's random blocks; the
probability that a sample's targets are time-frequency-aware instead (whole time spans covering
every frequency and whole frequency bands covering every time step, each of the same scale as a
block) rises linearly from 0 to 1 over `curriculum_steps`.

The model needs static shapes, so, as in `vjepa2.masks`, each block keeps a random subset of a
fixed `block_tokens` (a low quantile of block areas) and the context a random subset of a fixed
`num_context`; a sample whose context is smaller is redrawn. The batch has one mask set: the
context ids (B, num_context) and the concatenated target blocks (B, num_targets * block_tokens).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class BlockMaskConfig:
    """The I-JEPA block parameters; the defaults are the paper's.

    Args:
        num_targets: target blocks per sample (4).
        target_scale: range of a target block's area as a fraction of the grid (0.15, 0.2).
        target_aspect: range of a target block's height / width (0.75, 1.5).
        context_scale: range of the context block's area fraction (0.85, 1.0).
        context_aspect: range of the context block's height / width (1.0, 1.0).
        min_context: fewest context tokens a sample may keep (the reference's `min_keep`, 4).
    """

    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    context_aspect: tuple[float, float] = (1.0, 1.0)
    min_context: int = 4

    def __post_init__(self):
        if self.num_targets < 1:
            raise ValueError(f"num_targets must be >= 1; received {self.num_targets}")
        for name in ("target_scale", "context_scale"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < lo <= hi <= 1; received {(lo, hi)}")
        for name in ("target_aspect", "context_aspect"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < lo <= hi; received {(lo, hi)}")


IJEPA_MASKS = BlockMaskConfig()


def block_size(rng, grid_hw, scale, aspect):
    """A block's (height, width) on a (H', W') grid, as I-JEPA draws it.

    `area = int(H' * W' * U(scale))`, `aspect = U(aspect)`, height `round(sqrt(area * aspect))`,
    width `round(sqrt(area / aspect))`, each at least 1 and shrunk below the grid side (the
    reference keeps blocks strictly smaller than the grid, so a block never covers a whole side).
    """
    h, w = grid_hw
    area = int(h * w * rng.uniform(*scale))
    ratio = rng.uniform(*aspect)
    bh = max(int(round(math.sqrt(area * ratio))), 1)
    bw = max(int(round(math.sqrt(area / ratio))), 1)
    return min(bh, max(h - 1, 1)), min(bw, max(w - 1, 1))


def place_block(rng, grid_hw, size):
    """(top, left, height, width) of a block of `size` placed uniformly inside the grid."""
    (h, w), (bh, bw) = grid_hw, size
    return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw


def block_ids(rect, grid_hw):
    """Flat row-major ids of the cells of `rect` = (top, left, height, width)."""
    top, left, bh, bw = rect
    rows, cols = np.meshgrid(np.arange(top, top + bh), np.arange(left, left + bw), indexing="ij")
    return (rows * grid_hw[1] + cols).reshape(-1)


class IJEPAMaskSampler:
    """Fixed-size context and target token ids for a (1, H', W') token grid (I-JEPA).

    Args:
        grid: (1, H', W') token grid (or (H', W')).
        config: the block parameters (default: I-JEPA's).
        quantile: the fixed counts are this low quantile of their distributions.
        seed: the masks of batch `step` depend only on (seed, step).

    Attributes:
        mask_sets: one entry: the pretrainer runs the predictor once per batch.
        num_context, num_target: one-element lists of the fixed counts.
        block_tokens: target tokens kept per block.

    Example:
    ```python
    sampler = IJEPAMaskSampler((1, 8, 8))
    masks = sampler.sample_batch(batch_size=8, step=0)[0]
    masks["target_ids"].shape  # (8, 4 * sampler.block_tokens)
    ```
    """

    def __init__(self, grid, config: BlockMaskConfig = IJEPA_MASKS, quantile=0.05, seed=0,
                 max_redraws=100):
        grid = tuple(int(g) for g in grid)
        if len(grid) == 2:
            grid = (1,) + grid
        if len(grid) != 3 or grid[0] != 1 or min(grid) < 1 or min(grid[1:]) < 2:
            raise ValueError(f"grid must be (1, H', W') with H', W' >= 2; received {grid}")
        if not 0.0 <= quantile < 0.5:
            raise ValueError(f"quantile must be in [0, 0.5); received {quantile}")
        self.grid = grid
        self.grid_hw = grid[1:]
        self.config = config
        self.seed = int(seed)
        self.max_redraws = int(max_redraws)
        self.mask_sets = (config,)
        # Fixed sizes from the distribution itself, with a seed of their own (as vjepa2.masks).
        rng = np.random.default_rng(12345)
        areas, contexts = [], []
        for step in self.estimation_steps():
            targets, context = self.sample_rects(rng, *self.batch_sizes(rng), step=step)
            areas += [r[2] * r[3] for r in targets]
            contexts.append(len(self.context_ids(targets, context)))
        contexts = np.array(contexts)
        self.block_tokens = max(int(np.quantile(areas, quantile)), 1)
        usable = contexts[contexts >= config.min_context]
        if len(usable) < len(contexts) // 2:
            raise ValueError(f"mask config {config} leaves under {config.min_context} context "
                             f"tokens on grid {grid} in most samples")
        self.num_context = [max(int(np.quantile(usable, quantile)), config.min_context)]
        self.num_target = [config.num_targets * self.block_tokens]

    # ------------------------------------------------------------------------- one sample
    def estimation_steps(self):
        """Steps whose draws fix the counts (the whole schedule, where masks change with it)."""
        return range(600)

    def batch_sizes(self, rng):
        """The (target, context) block sizes shared by one batch."""
        c = self.config
        return (block_size(rng, self.grid_hw, c.target_scale, c.target_aspect),
                block_size(rng, self.grid_hw, c.context_scale, c.context_aspect))

    def target_rects(self, rng, target_size, step):
        """The sample's `num_targets` target rectangles (top, left, height, width)."""
        return [place_block(rng, self.grid_hw, target_size)
                for _ in range(self.config.num_targets)]

    def sample_rects(self, rng, target_size, context_size, step=0):
        """(target rectangles, context rectangle) of one sample."""
        targets = self.target_rects(rng, target_size, step)
        return targets, place_block(rng, self.grid_hw, context_size)

    def context_ids(self, targets, context):
        """The context block's ids minus every target block's, sorted."""
        masked = np.zeros(self.grid_hw[0] * self.grid_hw[1], bool)
        for rect in targets:
            masked[block_ids(rect, self.grid_hw)] = True
        ids = block_ids(context, self.grid_hw)
        return np.sort(ids[~masked[ids]])

    # ------------------------------------------------------------------------- batches
    def sample_batch(self, batch_size, step):
        """A list with one dict of int32 `context_ids` (B, num_context), sorted per row, and
        `target_ids` (B, num_targets * block_tokens), block after block."""
        rng = np.random.default_rng([self.seed, int(step)])
        n_ctx, k = self.num_context[0], self.block_tokens
        contexts = np.empty((batch_size, n_ctx), np.int32)
        targets = np.empty((batch_size, self.num_target[0]), np.int32)
        sizes = self.batch_sizes(rng)
        for b in range(batch_size):
            for _ in range(self.max_redraws):
                rects, context_rect = self.sample_rects(rng, *sizes, step=step)
                context = self.context_ids(rects, context_rect)
                if len(context) >= n_ctx and all(r[2] * r[3] >= k for r in rects):
                    break
                sizes = self.batch_sizes(rng)  # this batch's sizes cannot reach the counts
            else:
                raise RuntimeError(f"mask sampler could not reach {n_ctx} context tokens and "
                                   f"blocks of {k} on grid {self.grid}")
            contexts[b] = np.sort(rng.choice(context, n_ctx, replace=False))
            targets[b] = np.concatenate([np.sort(rng.choice(block_ids(r, self.grid_hw), k,
                                                            replace=False)) for r in rects])
        return [{"context_ids": contexts, "target_ids": targets}]


class AudioMaskSampler(IJEPAMaskSampler):
    """A-JEPA's curriculum on a (1, T', F') spectrogram grid (rows time, columns frequency).

    A sample's targets are time-frequency-aware with probability `min(step /
    curriculum_steps, 1)`, else I-JEPA's random blocks: half of the `num_targets` blocks are
    time spans (all frequencies, `round(scale * T')` rows) and half frequency bands (all time
    steps, `round(scale * F')` columns), each scale drawn from `target_scale`.

    Args:
        grid: (1, T', F') token grid.
        curriculum_steps: steps over which the time-frequency share rises from 0 to 1
            (0: time-frequency masks from the start).
        config, quantile, seed: as `IJEPAMaskSampler`.
    """

    def __init__(self, grid, curriculum_steps=1000, config: BlockMaskConfig = IJEPA_MASKS,
                 quantile=0.05, seed=0, max_redraws=100):
        if curriculum_steps < 0:
            raise ValueError(f"curriculum_steps must be >= 0; received {curriculum_steps}")
        self.curriculum_steps = int(curriculum_steps)
        super().__init__(grid, config, quantile, seed, max_redraws)

    def estimation_steps(self):
        return np.linspace(0, 2 * self.curriculum_steps, 600).astype(int)

    def time_frequency_share(self, step):
        """Probability that a sample of batch `step` gets time-frequency-aware targets."""
        if self.curriculum_steps == 0:
            return 1.0
        return min(max(step, 0) / self.curriculum_steps, 1.0)

    def target_rects(self, rng, target_size, step):
        if rng.random() >= self.time_frequency_share(step):
            return super().target_rects(rng, target_size, step)
        t, f = self.grid_hw
        rects = []
        for i in range(self.config.num_targets):
            scale = rng.uniform(*self.config.target_scale)
            if i % 2 == 0:  # a time span over every frequency
                rows = min(max(int(round(scale * t)), 1), t - 1)
                rects.append(place_block(rng, self.grid_hw, (rows, f)))
            else:  # a frequency band over every time step
                cols = min(max(int(round(scale * f)), 1), f - 1)
                rects.append(place_block(rng, self.grid_hw, (t, cols)))
        return rects
