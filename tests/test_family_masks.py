"""The I-JEPA and A-JEPA mask samplers against the papers' definitions."""
import numpy as np
import pytest

from vjepa2.masks_2d import (IJEPA_MASKS, AudioMaskSampler, BlockMaskConfig, IJEPAMaskSampler,
                             block_ids, block_size)


def _draws(sampler, count=300, step=0):
    rng = np.random.default_rng(5)
    for _ in range(count):
        yield sampler.sample_rects(rng, *sampler.batch_sizes(rng), step=step)


def test_target_blocks_have_the_papers_scale_and_aspect_ratio():
    # I-JEPA draws area = int(H W s), s ~ U(0.15, 0.2), aspect ~ U(0.75, 1.5), sides rounded:
    # on the paper's 14 x 14 grid (ViT-H/14 at 224 px) the realised block stays within the
    # rounding of those ranges.
    sampler = IJEPAMaskSampler((1, 14, 14))
    scales, aspects = [], []
    for targets, _ in _draws(sampler):
        assert len(targets) == IJEPA_MASKS.num_targets == 4
        for top, left, h, w in targets:
            assert 0 <= top and top + h <= 14 and 0 <= left and left + w <= 14
            scales.append(h * w / 196)
            aspects.append(h / w)
    assert 0.12 <= min(scales) and max(scales) <= 0.23
    assert 0.14 < np.mean(scales) < 0.2
    assert 0.6 <= min(aspects) and max(aspects) <= 1.75
    assert min(aspects) < 0.9 and max(aspects) > 1.3  # the whole range is used


def test_context_block_is_large_square_and_holds_no_target_cell():
    sampler = IJEPAMaskSampler((1, 14, 14))
    for targets, context in _draws(sampler, 200):
        _, _, h, w = context
        assert h == w  # unit aspect ratio
        assert 0.8 <= h * w / 196 <= 1.0  # U(0.85, 1.0) minus rounding and the edge shrink
        ids = sampler.context_ids(targets, context)
        masked = set(np.concatenate([block_ids(r, (14, 14)) for r in targets]).tolist())
        assert not masked & set(ids.tolist())
        assert set(ids.tolist()) <= set(block_ids(context, (14, 14)).tolist())


def test_block_size_follows_the_reference_formula():
    class Fixed:  # a generator whose uniform draws return the lower bound
        def uniform(self, lo, hi):
            return lo

    assert block_size(Fixed(), (14, 14), (0.15, 0.2), (0.75, 1.5)) == (5, 6)  # 29 cells: sqrt(21.75), sqrt(38.7)
    assert block_size(Fixed(), (14, 14), (1.0, 1.0), (1.0, 1.0)) == (13, 13)  # < the side


def test_batches_have_fixed_counts_and_valid_ids():
    sampler = IJEPAMaskSampler((1, 8, 8), seed=2)
    for step in range(4):
        (masks,) = sampler.sample_batch(5, step)
        ctx, tgt = masks["context_ids"], masks["target_ids"]
        assert ctx.shape == (5, sampler.num_context[0]) and ctx.dtype == np.int32
        assert tgt.shape == (5, 4 * sampler.block_tokens) and tgt.dtype == np.int32
        for c, t in zip(ctx, tgt):
            assert np.all(np.diff(c) > 0) and c.min() >= 0 and c.max() < 64
            assert not set(c.tolist()) & set(t.tolist())
            for block in t.reshape(4, -1):  # each target is a piece of one rectangle
                rows, cols = block // 8, block % 8
                area = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
                assert area <= 0.25 * 64 and len(np.unique(block)) == len(block)


def test_masks_depend_only_on_seed_and_step():
    a, b = IJEPAMaskSampler((1, 8, 8), seed=4), IJEPAMaskSampler((1, 8, 8), seed=4)
    for key in ("context_ids", "target_ids"):
        np.testing.assert_array_equal(a.sample_batch(3, 9)[0][key], b.sample_batch(3, 9)[0][key])


def _is_strip(rect, grid):
    _, _, h, w = rect
    return h == grid[0] or w == grid[1]


def test_audio_curriculum_moves_from_random_blocks_to_time_frequency_strips():
    grid = (8, 8)  # (time, frequency) patches: 1.28 s x 128 mel bins
    sampler = AudioMaskSampler((1,) + grid, curriculum_steps=100)
    assert sampler.time_frequency_share(0) == 0.0
    assert sampler.time_frequency_share(50) == 0.5 and sampler.time_frequency_share(500) == 1.0
    start = [all(not _is_strip(r, grid) for r in t) for t, _ in _draws(sampler, 100, step=0)]
    assert all(start)  # step 0: I-JEPA random blocks only
    for targets, _ in _draws(sampler, 100, step=100):
        times = [r for r in targets if r[2] < grid[0] and r[3] == grid[1]]
        bands = [r for r in targets if r[2] == grid[0] and r[3] < grid[1]]
        assert len(times) == 2 and len(bands) == 2  # whole time spans and frequency bands
        for _, _, h, w in times + bands:
            assert 1 <= min(h, w) <= 2  # round(U(0.15, 0.2) * 8) patches wide
    middle = [any(_is_strip(r, grid) for r in t) for t, _ in _draws(sampler, 400, step=50)]
    assert 0.4 < np.mean(middle) < 0.6


def test_audio_batches_keep_one_shape_across_the_curriculum():
    sampler = AudioMaskSampler((1, 8, 8), curriculum_steps=10)
    shapes = {tuple(m.shape) for step in (0, 5, 10, 50)
              for m in sampler.sample_batch(4, step)[0].values()}
    assert shapes == {(4, sampler.num_context[0]), (4, sampler.num_target[0])}


def test_bad_configs_are_refused_with_the_value():
    with pytest.raises(ValueError, match="target_scale"):
        BlockMaskConfig(target_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="grid"):
        IJEPAMaskSampler((2, 8, 8))
