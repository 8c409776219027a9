"""Layers: 3D RoPE, attention, transformer block, tubelet embedding."""
import keras
import numpy as np
import pytest
from keras import ops

from vjepa2.layers.attention import RoPEAttention
from vjepa2.layers.block import TransformerBlock
from vjepa2.layers.patch_embed import TubeletEmbedding, grid_positions, ids_to_positions
from vjepa2.layers.rope import apply_rope, rope_angles, rope_segment_size


def _rotate(x, positions, axis_mask=None):
    cos, sin = rope_angles(np.asarray(positions, "float32"), x.shape[-1], axis_mask)
    return np.asarray(apply_rope(x, cos, sin))


def test_segment_sizes_match_reference_split():
    assert rope_segment_size(64) == 20  # 20 + 20 + 20 rotated, 4 unrotated
    assert rope_segment_size(32) == 10
    assert rope_segment_size(88) == 28


def test_rope_is_a_rotation_that_keeps_norms():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 2, 64)).astype("float32")
    positions = rng.integers(0, 9, size=(5, 3))
    y = _rotate(x, positions)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    # The features beyond the three segments are not rotated.
    np.testing.assert_array_equal(y[..., 60:], x[..., 60:])


def test_rope_score_depends_only_on_relative_offset():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, 1, 1, 64)).astype("float32")
    k = rng.normal(size=(1, 1, 1, 64)).astype("float32")
    scores = []
    for shift in ([0, 0, 0], [3, -2, 5], [7, 4, 1]):
        pq = np.array([[2, 5, 1]]) + shift
        pk = np.array([[4, 1, 6]]) + shift
        scores.append(float(np.sum(_rotate(q, pq) * _rotate(k, pk))))
    np.testing.assert_allclose(scores, scores[0], rtol=1e-4)
    # ... and a different offset gives a different score on every axis.
    for axis in range(3):
        offset = np.zeros(3, int)
        offset[axis] = 3
        other = float(np.sum(_rotate(q, [[2, 5, 1]]) * _rotate(k, [[4, 1, 6] + offset])))
        assert abs(other - scores[0]) > 1e-3


def test_axis_mask_rotates_time_only():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 1, 1, 64)).astype("float32")
    time_only = np.array([[1.0, 0.0, 0.0]])
    a = _rotate(x, [[3, 5, 7]], time_only)
    b = _rotate(x, [[3, 0, 0]])
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_attention_is_permutation_equivariant_with_positions():
    """With RoPE there is no absolute position table: permuting tokens together with their
    positions permutes the outputs."""
    layer = RoPEAttention(48, 2, name="attn")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 48)).astype("float32")
    pos = rng.integers(0, 5, size=(2, 6, 3))
    perm = rng.permutation(6)
    out = np.asarray(layer(x, rope=rope_angles(pos, 24)))
    out_perm = np.asarray(layer(x[:, perm], rope=rope_angles(pos[:, perm], 24)))
    np.testing.assert_allclose(out_perm, out[:, perm], atol=1e-5)


def test_attention_mask_blocks_information_flow():
    layer = RoPEAttention(48, 2, name="attn")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 4, 48)).astype("float32")
    pos = np.zeros((4, 3), "int32")
    causal = np.tril(np.ones((4, 4), bool))
    base = np.asarray(layer(x, rope=rope_angles(pos, 24), attention_mask=causal))
    x2 = x.copy()
    x2[:, 3] += 10.0
    changed = np.asarray(layer(x2, rope=rope_angles(pos, 24), attention_mask=causal))
    np.testing.assert_allclose(changed[:, :3], base[:, :3], atol=1e-5)
    assert np.abs(changed[:, 3] - base[:, 3]).max() > 1e-3


def test_bad_head_config_errors_name_the_values():
    with pytest.raises(ValueError, match="received dim=50, num_heads=3"):
        RoPEAttention(50, 3)
    with pytest.raises(ValueError, match="head dim must be >= 6"):
        RoPEAttention(8, 2)


def test_block_output_projection_init_is_depth_scaled():
    shallow = TransformerBlock(64, 2, 128, layer_index=1)
    deep = TransformerBlock(64, 2, 128, layer_index=16)
    shallow.build((None, None, 64))
    deep.build((None, None, 64))
    ratio = np.std(np.asarray(shallow.fc2.kernel)) / np.std(np.asarray(deep.fc2.kernel))
    assert 3.0 < ratio < 5.0  # sqrt(32 / 2) = 4


def test_tubelet_embedding_equals_strided_conv3d():
    layer = TubeletEmbedding(8, tubelet_size=2, patch_size=4)
    video = np.random.default_rng(5).normal(size=(2, 4, 8, 12, 3)).astype("float32")
    tokens = np.asarray(layer(video))
    conv = keras.layers.Conv3D(8, (2, 4, 4), strides=(2, 4, 4))
    conv.build(video.shape)
    conv.set_weights([np.asarray(layer.kernel), np.asarray(layer.bias)])
    expected = np.asarray(conv(video)).reshape(2, -1, 8)  # row-major over (t, h, w)
    np.testing.assert_allclose(tokens, expected, atol=1e-5)
    ids = np.array([[0, 5, 11], [2, 3, 4]], "int32")
    np.testing.assert_allclose(np.asarray(layer(video, token_ids=ids)),
                               np.take_along_axis(expected, ids[..., None], 1), atol=1e-5)


def test_tubelet_embedding_rejects_indivisible_video():
    layer = TubeletEmbedding(8, tubelet_size=2, patch_size=16)
    with pytest.raises(ValueError, match="height must be divisible by 16"):
        layer(np.zeros((1, 2, 40, 32, 3), "float32"))
    with pytest.raises(ValueError, match="frames must be divisible by 2"):
        layer(np.zeros((1, 3, 32, 32, 3), "float32"))


def test_grid_positions_round_trip_ids():
    grid = (2, 3, 4)
    positions = np.asarray(grid_positions(grid))
    ids = np.arange(24)[None]
    np.testing.assert_array_equal(np.asarray(ids_to_positions(ids, grid))[0], positions)
    assert tuple(positions[13]) == (1, 0, 1)
    assert ops.shape(positions) == (24, 3)
