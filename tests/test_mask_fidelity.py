"""Mask token counts against the reference collator's procedure (counts="reference")."""
import math

import numpy as np
import pytest

from vjepa2.masks import (DEFAULT_MASK_SETS, MultiBlockMaskSampler, choose_buckets)

GRID = (4, 8, 8)  # 8 frames at 128 px: the tiny comparison config of the benchmarks
BATCH = 8


def collator_counts(config, grid, batch_size, batches, seed):
    """An independent re-implementation of the reference collator's counting: one block size
    per batch (floor(scale * H * W) patches, aspect uniform in the range), `num_blocks` tubes
    per sample at uniform positions over the full duration, a sample with no visible token
    drawn again; the batch keeps the minimum context and the minimum target count."""
    rng = np.random.default_rng(seed)
    t, h, w = grid
    lo, hi = config.aspect_ratio
    out = []
    for _ in range(batches):
        keep = int(h * w * config.spatial_scale)
        aspect = rng.uniform(lo, hi)
        bh = min(int(round(math.sqrt(keep * aspect))), h)
        bw = min(int(round(math.sqrt(keep / aspect))), w)
        visible_counts = []
        while len(visible_counts) < batch_size:
            visible = np.ones((t, h, w), dtype=np.int32)
            for _ in range(config.num_blocks):
                y = rng.integers(h - bh + 1)
                x = rng.integers(w - bw + 1)
                visible[:, y:y + bh, x:x + bw] = 0
            if visible.sum():
                visible_counts.append(int(visible.sum()))
        visible_counts = np.array(visible_counts)
        out.append((visible_counts.min(), (t * h * w - visible_counts).min()))
    return np.array(out)


def sampler_counts(sampler, batches, index):
    shapes = []
    for step in range(batches):
        masks = sampler.sample_batch(BATCH, step)[index]
        shapes.append((masks["context_ids"].shape[1], masks["target_ids"].shape[1]))
    return np.array(shapes)


def ks_statistic(a, b):
    values = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), values, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), values, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.mark.parametrize("index", [0, 1])
def test_exact_counts_follow_the_reference_collators_per_batch_minimum(index):
    sampler = MultiBlockMaskSampler(GRID, counts="reference", buckets=None, seed=5)
    ours = sampler_counts(sampler, 400, index)
    reference = collator_counts(DEFAULT_MASK_SETS[index], GRID, BATCH, 400, seed=11)
    for column in (0, 1):  # context, target
        assert ks_statistic(ours[:, column], reference[:, column]) < 0.13
        assert abs(ours[:, column].mean() / reference[:, column].mean() - 1) < 0.08


def test_bucketed_counts_take_few_shapes_and_keep_most_of_the_reference_tokens():
    sampler = MultiBlockMaskSampler(GRID, counts="reference", buckets=3, seed=5)
    for index, config in enumerate(DEFAULT_MASK_SETS):
        ours = sampler_counts(sampler, 200, index)
        reference = collator_counts(config, GRID, BATCH, 400, seed=11)
        assert {tuple(s) for s in ours} <= set(sampler.bucket_shapes(BATCH)[index])
        assert len(sampler.bucket_shapes(BATCH)[index]) <= 3
        kept = ours.mean(axis=0) / reference.mean(axis=0)
        assert kept[0] > 0.75 and kept[1] > 0.75, kept
    # The old fixed counts keep far fewer long-range context tokens than the reference.
    fixed = MultiBlockMaskSampler(GRID, seed=5)
    assert fixed.num_context[1] < 0.5 * sampler_counts(sampler, 200, 1)[:, 0].mean()


def test_reference_ids_are_valid_and_depend_only_on_seed_and_step():
    a = MultiBlockMaskSampler(GRID, counts="reference", seed=7)
    b = MultiBlockMaskSampler(GRID, counts="reference", seed=7)
    later = [a.sample_batch(BATCH, step) for step in (3, 9)]
    resumed = [b.sample_batch(BATCH, step) for step in (9, 3)][::-1]
    for x, y in zip(later, resumed):
        for set_x, set_y in zip(x, y):
            np.testing.assert_array_equal(set_x["context_ids"], set_y["context_ids"])
            np.testing.assert_array_equal(set_x["target_ids"], set_y["target_ids"])
    for masks in later[0]:
        ctx, tgt = masks["context_ids"], masks["target_ids"]
        assert ctx.dtype == tgt.dtype == np.int32
        for row_c, row_t in zip(ctx, tgt):
            assert np.all(np.diff(row_c) > 0) and np.all(np.diff(row_t) > 0)
            assert not set(row_c) & set(row_t)
            # Masks are tubes: no patch is visible at one time step and masked at another.
            hw = GRID[1] * GRID[2]
            assert not set(row_c % hw) & set(row_t % hw)


def test_the_fixed_quantile_counts_stay_the_default():
    sampler = MultiBlockMaskSampler((8, 16, 16))
    assert sampler.counts == "quantile"
    assert sampler.num_context == [512, 128] and sampler.num_target == [1024, 1440]


def test_bucket_choice_keeps_the_smallest_minimum_and_adds_the_most_useful_shapes():
    ctx = np.array([4, 8, 8, 8, 12])
    tgt = np.array([10, 10, 10, 10, 10])
    assert choose_buckets(ctx, tgt, 1) == [(4, 10)]
    assert choose_buckets(ctx, tgt, 2) == [(4, 10), (8, 10)]
    assert choose_buckets(ctx, tgt, 5) == [(4, 10), (8, 10), (12, 10)]  # no useless shapes


def test_bad_count_modes_are_rejected():
    with pytest.raises(ValueError, match="counts must be one of"):
        MultiBlockMaskSampler(GRID, counts="median")
    with pytest.raises(ValueError, match="buckets must be >= 1"):
        MultiBlockMaskSampler(GRID, counts="reference", buckets=0)


def test_pretrain_batches_carry_the_reference_counts_when_asked():
    import tensorflow as tf

    from vjepa2.data.video import PipelineGate
    from vjepa2.train.family import make_sampler, with_mask_ids
    from vjepa2.train.pretrain import PretrainConfig

    config = PretrainConfig(videos="unused", out="unused", steps=10, mask_counts="reference")
    sampler = make_sampler(config)
    assert sampler.counts == "reference" and sampler.grid == GRID
    assert make_sampler(PretrainConfig(videos="unused", out="unused", steps=10)).counts == \
        "quantile"  # the default keeps the fixed counts older runs used
    clips = tf.data.Dataset.from_tensors(tf.zeros((BATCH, 8, 128, 128, 3))).repeat(6)
    batches = with_mask_ids(clips, sampler, BATCH, start_step=4, gate=PipelineGate())
    for step, batch in enumerate(batches, start=4):
        expected = sampler.sample_batch(BATCH, step)
        for i, masks in enumerate(expected):
            np.testing.assert_array_equal(batch[f"context_ids_{i}"].numpy(),
                                          masks["context_ids"])
            shape = (batch[f"context_ids_{i}"].shape[1], batch[f"target_ids_{i}"].shape[1])
            assert shape in sampler.bucket_shapes(BATCH)[i]
