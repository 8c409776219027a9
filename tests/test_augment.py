"""Per-clip augmentation of robot-log clips: one draw per clip, seeded, shape-preserving."""
import numpy as np
import pytest
import tensorflow as tf

from vjepa2.data.augment import ClipAugment, augment_clips
from vjepa2.errors import UsageError


def _clips(batch=4, steps=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(batch, 1, size, size, 3), dtype=np.uint8)
    # A bright square that moves one pixel per frame: the motion the actions would explain.
    clips = np.repeat(base, steps, axis=1)
    for t in range(steps):
        clips[:, t, 10:16, 8 + t:14 + t] = 255
    return clips


def _run(clips, seed, config=ClipAugment()):
    return augment_clips(tf.constant(clips), tf.constant(seed, tf.int64), config).numpy()


def test_every_frame_of_a_clip_gets_the_same_draw():
    still = np.repeat(_clips(steps=1), 3, axis=1)  # three identical frames per clip
    out = _run(still, [0, 7])
    assert out.shape == still.shape and out.dtype == np.uint8
    for t in (1, 2):
        np.testing.assert_array_equal(out[:, t], out[:, 0])
    # ... while clips of one batch get different draws.
    assert np.abs(out[0].astype(int) - still[0]).mean() != pytest.approx(
        np.abs(out[1].astype(int) - still[1]).mean(), abs=1e-3)


def test_draws_depend_only_on_the_seed():
    clips = _clips()
    np.testing.assert_array_equal(_run(clips, [3, 11]), _run(clips, [3, 11]))
    assert not np.array_equal(_run(clips, [3, 11]), _run(clips, [3, 12]))


def test_views_side_by_side_are_warped_each_as_its_own_frame():
    warp_only = ClipAugment(hue=0.0, saturation=(1, 1), brightness=(1, 1), contrast=(1, 1),
                            grayscale=0.0, rotation_deg=15.0, zoom=(0.8, 1.2), shift=0.1)
    left, right = _clips(seed=1), _clips(seed=2)
    both = _run(np.concatenate([left, right], axis=3), [5, 9], warp_only)
    # The same warp as each view alone gets: nothing of one view is pulled into the other.
    np.testing.assert_array_equal(both[..., :32, :], _run(left, [5, 9], warp_only))
    np.testing.assert_array_equal(both[..., 32:, :], _run(right, [5, 9], warp_only))


def test_zero_ranges_leave_clips_unchanged():
    identity = ClipAugment(hue=0.0, saturation=(1, 1), brightness=(1, 1), contrast=(1, 1),
                           grayscale=0.0, rotation_deg=0.0, zoom=(1, 1), shift=0.0)
    clips = _clips()
    out = _run(clips, [0, 0], identity)
    assert np.abs(out.astype(int) - clips).max() <= 1  # HSV round trip rounding only


def test_bad_ranges_give_one_line_errors():
    with pytest.raises(UsageError, match="hue must be in"):
        ClipAugment(hue=0.7)
    with pytest.raises(UsageError, match="zoom must be a range"):
        ClipAugment(zoom=(1.2, 0.9))
    with pytest.raises(UsageError, match="unknown augmentation keys"):
        ClipAugment.from_json({"blur": 1.0})
    assert ClipAugment.from_json(ClipAugment().to_json()) == ClipAugment()
