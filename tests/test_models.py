"""VideoEncoder, MaskedPredictor and presets."""
import keras
import numpy as np
import pytest

from tests.helpers import assert_saved_model_equal, micro_encoder, micro_predictor, random_video
from vjepa2.models import MaskedPredictor, VideoEncoder
from vjepa2.presets import PRESETS, encoder_param_count, predictor_param_count


def test_encoder_accepts_any_divisible_clip_size():
    encoder = micro_encoder()
    assert encoder(random_video(2, 4, 64)).shape == (2, 2 * 4 * 4, 48)
    assert encoder(random_video(1, 2, 32)[:, :, :, :32]).shape == (1, 1 * 2 * 2, 48)
    assert encoder(np.zeros((1, 6, 48, 80, 3), "float32")).shape == (1, 3 * 3 * 5, 48)


def test_encoder_context_tokens_keep_true_positions():
    """Encoding a subset gives the same result as encoding the subset's tokens in any order
    (positions, not order, drive attention)."""
    encoder = micro_encoder()
    video = random_video(1, 4, 64)
    ids = np.array([[3, 9, 17, 30]], "int32")
    out = np.asarray(encoder(video, token_ids=ids))
    perm = np.array([2, 0, 3, 1])
    out_perm = np.asarray(encoder(video, token_ids=ids[:, perm]))
    np.testing.assert_allclose(out_perm, out[:, perm], atol=1e-5)


def test_predictor_returns_exactly_the_target_positions():
    keras.utils.set_random_seed(0)
    encoder, predictor = micro_encoder(), micro_predictor()
    video = random_video(2, 4, 64)
    context_ids = np.array([[0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]], "int32")
    target_ids = np.array([[20, 7, 31], [1, 2, 30]], "int32")
    context = encoder(video, token_ids=context_ids)
    out = np.asarray(predictor(context, context_ids, target_ids, grid=(2, 4, 4)))
    assert out.shape == (2, 3, 48)
    # Output i is the prediction for target_ids[:, i]: reordering targets reorders outputs.
    perm = np.array([2, 0, 1])
    out_perm = np.asarray(predictor(context, context_ids, target_ids[:, perm], grid=(2, 4, 4)))
    np.testing.assert_allclose(out_perm, out[:, perm], atol=1e-5)
    # Distinct targets get distinct predictions: positions reach the identical mask tokens
    # only through RoPE. (Sharpen attention, which is near-uniform at init.)
    predictor.mask_tokens.assign(
        np.random.default_rng(1).normal(size=predictor.mask_tokens.shape).astype("float32"))
    for block in predictor.blocks:
        block.attn.qkv.kernel.assign(np.asarray(block.attn.qkv.kernel) * 50.0)
    out = np.asarray(predictor(context, context_ids, target_ids, grid=(2, 4, 4)))
    assert np.abs(out[0, 0] - out[0, 1]).max() > 1e-3  # without RoPE: equal to ~1e-7


def test_predictor_mask_tokens_start_at_zero_and_index_is_checked():
    predictor = micro_predictor()
    np.testing.assert_array_equal(np.asarray(predictor.mask_tokens), 0.0)
    with pytest.raises(ValueError, match="mask_index must be in"):
        predictor(np.zeros((1, 2, 48), "float32"), np.zeros((1, 2), "int32"),
                  np.ones((1, 1), "int32"), grid=(1, 2, 2), mask_index=5)


def test_encoder_keras_round_trip_is_exact(tmp_path):
    encoder = micro_encoder()
    video = random_video(1, 4, 64)
    assert_saved_model_equal(encoder, video, tmp_path)


def test_predictor_keras_round_trip_is_exact(tmp_path):
    predictor = micro_predictor()
    context = np.random.default_rng(0).normal(size=(1, 4, 48)).astype("float32")
    ids = np.array([[0, 1, 2, 3]], "int32")
    targets = np.array([[5, 6]], "int32")
    assert_saved_model_equal(
        predictor, None, tmp_path,
        call=lambda m: m(context, ids, targets, grid=(2, 2, 2), mask_index=1))


def test_save_to_preset_round_trip(tmp_path):
    encoder = micro_encoder()
    video = random_video(1, 2, 32)
    encoder.save_to_preset(tmp_path / "enc")
    restored = VideoEncoder.from_preset(tmp_path / "enc")
    np.testing.assert_array_equal(np.asarray(restored(video)), np.asarray(encoder(video)))
    assert restored.get_config()["embed_dim"] == 48
    with pytest.raises(ValueError, match="holds a VideoEncoder, not a MaskedPredictor"):
        MaskedPredictor.from_preset(tmp_path / "enc")


def test_unknown_preset_and_bad_config_errors():
    with pytest.raises(ValueError, match="unknown preset 'nope'; known presets: tiny"):
        VideoEncoder.from_preset("nope")
    with pytest.raises(ValueError, match="received embed_dim=100, num_heads=3"):
        VideoEncoder(embed_dim=100, num_heads=3)


def test_param_count_formula_matches_built_models():
    encoder, predictor = micro_encoder(), micro_predictor()
    assert encoder.count_params() == encoder_param_count(**encoder.get_config())
    assert predictor.count_params() == predictor_param_count(**predictor.get_config())
    tiny = VideoEncoder.from_preset("tiny")
    assert tiny.count_params() == encoder_param_count(**PRESETS["tiny"]["encoder"])


@pytest.mark.parametrize("name, reference", [
    ("large", 303.9e6),  # ViT-L/16, "~300M"
    ("huge", 632e6),  # ViT-H/16: 632M by its widths and depth (the paper rounds to "~600M")
    ("giant", 1.012e9),  # ViT-g/16, "~1.0B"
])
def test_reference_preset_sizes_without_allocating(name, reference):
    count = encoder_param_count(**PRESETS[name]["encoder"])
    assert abs(count - reference) / reference < 0.02
    predictor = predictor_param_count(**PRESETS[name]["predictor"])
    assert abs(predictor - 22e6) / 22e6 < 0.05  # the reference 12 x 384 predictor, ~22M
    assert PRESETS[name]["predictor"]["embed_dim"] == 384
    assert PRESETS[name]["predictor"]["depth"] == 12
