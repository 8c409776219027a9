"""MC-JEPA: warping, the unsupervised flow losses, the flow head and joint pretraining."""
from pathlib import Path

import numpy as np
import pytest
from keras import ops

from tests.helpers import MICRO_OVERRIDES, assert_saved_model_equal
from vjepa2.data.motion import synthesize_motion
from vjepa2.models.flow_head import FlowHead, warp
from vjepa2.train.mc_jepa import flow_losses


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from vjepa2.data.motion import generate_motion_clips

    folder = tmp_path_factory.mktemp("motion")
    generate_motion_clips(folder, 6, frames=12, seed=0)
    return folder


def _pair(index=0):
    video, flow, _ = synthesize_motion(seed=0, index=index, frames=2, size=64)
    frames = video.astype("float32") / 255.0
    return frames[None, 0], frames[None, 1], flow[None, 0]


def test_warp_moves_content_by_the_flow_and_reads_zero_outside():
    image = np.random.default_rng(0).random((1, 6, 7, 2)).astype("float32")
    flow = np.zeros((1, 6, 7, 2), "float32")
    flow[..., 0], flow[..., 1] = 1.0, -1.0
    out = np.asarray(warp(image, flow))
    np.testing.assert_allclose(out[0, 1:, :-1], image[0, :-1, 1:], atol=1e-6)
    assert np.all(out[0, 0] == 0) and np.all(out[0, :, -1] == 0)
    half = np.asarray(warp(image, flow * 0.5))  # bilinear between neighbours
    expected = (image[0, 1:, :-1] + image[0, 1:, 1:] + image[0, :-1, :-1] + image[0, :-1, 1:]) / 4
    np.testing.assert_allclose(half[0, 1:, :-1], expected, atol=1e-6)


def _flow_gradient(loss_of, flow):
    import tensorflow as tf

    flow = tf.convert_to_tensor(flow)
    with tf.GradientTape() as tape:
        tape.watch(flow)
        loss = loss_of(flow)
    return np.asarray(tape.gradient(loss, flow))


def test_warp_gradient_at_whole_pixel_flow_is_the_image_difference():
    # At zero flow every sample point sits on a pixel; the flow's gradient there must be the
    # one-sided difference image[x + 1] - image[x] (bilinear is linear to the right), not
    # image[x + 1] alone, or zero-flow starts learn from raw intensities.
    image = np.random.default_rng(2).random((1, 6, 7, 1)).astype("float32")
    grad = _flow_gradient(lambda f: ops.sum(warp(image, f)), np.zeros((1, 6, 7, 2), "float32"))
    np.testing.assert_allclose(grad[0, :, :-1, 0], np.diff(image[0, :, :, 0], axis=1), atol=1e-5)
    np.testing.assert_allclose(grad[0, :-1, :, 1], np.diff(image[0, :, :, 0], axis=0), atol=1e-5)


def test_photometric_gradient_at_zero_flow_points_along_the_true_motion():
    # Descending the photometric loss from zero flow must move the moving pixels' flow
    # towards their true flow (the sign convention of warp and of the loss agree).
    for index in range(3):
        first, second, flow = _pair(index)
        grad = _flow_gradient(lambda f: flow_losses(first, second, f, -f)["photometric"],
                              np.zeros_like(flow))
        moving = np.linalg.norm(flow[0], axis=-1) > 0
        assert np.sum(-grad[0][moving] * flow[0][moving]) > 0


def test_generated_clips_carry_their_true_flow():
    first, second, flow = _pair(3)
    moving = np.linalg.norm(flow[0], axis=-1) > 0
    assert 0.02 < moving.mean() < 0.5
    residual = np.abs(np.asarray(warp(second, flow)) - first)[0].mean(-1)
    still = np.abs(second - first)[0].mean(-1)
    assert residual[moving].mean() < 0.5 * still[moving].mean()


def test_the_unsupervised_losses_prefer_the_true_flow_to_zero_flow():
    for index in range(3):
        first, second, flow = _pair(index)
        true = flow_losses(first, second, flow, -flow)
        zero = flow_losses(first, second, np.zeros_like(flow), np.zeros_like(flow))
        assert float(true["photometric"]) < float(zero["photometric"])
        assert float(true["cycle"]) < 0.05


@pytest.mark.parametrize("patch_size", [16, 8])
def test_flow_head_outputs_full_resolution_flow_and_round_trips(tmp_path, patch_size):
    head = FlowHead(token_dim=8, patch_size=patch_size, widths=(4, 4, 4), hidden=8)
    first, second, _ = _pair()
    side = 64 // patch_size
    tokens = np.random.default_rng(1).normal(size=(1, side * side, 8)).astype("float32")
    assert head(first, second, tokens).shape == (1, 64, 64, 2)
    assert_saved_model_equal(head, None, tmp_path, call=lambda m: m(first, second, tokens))
    with pytest.raises(ValueError, match="power of two"):
        FlowHead(token_dim=8, patch_size=12)


def test_the_8_px_family_preset_gives_an_8_by_8_grid_per_tubelet():
    from vjepa2.models import VideoEncoder

    encoder = VideoEncoder.from_preset("family-tiny-p8")
    clip = np.zeros((1, 4, 64, 64, 3), "float32")
    assert encoder.patch_size == 8 and encoder(clip).shape == (1, 2 * 8 * 8, 192)


def _config(videos, out, **kwargs):
    from vjepa2.train.pretrain import PretrainConfig

    return PretrainConfig(videos=str(videos), out=str(out), steps=2, batch_size=2, frames=4,
                          resolution=64, fps=8.0, checkpoint_every=2, warmup_steps=0,
                          decay_steps=1, workers=1, **{"motion_weight": 1.0, **kwargs})


OVERRIDES = {**MICRO_OVERRIDES, "flow_head": dict(widths=(4, 4, 4), hidden=8, radius=1)}


def test_a_joint_step_trains_encoder_and_flow_head_and_both_reload_equal(tmp_path):
    from vjepa2.models import VideoEncoder
    from vjepa2.train.pretrain import build_trainer, make_mask_sampler

    config = _config("unused", tmp_path / "run")
    trainer = build_trainer(config, OVERRIDES)
    clips = np.stack([synthesize_motion(0, i, frames=4, size=64)[0] for i in range(2)])
    batch = {"video": (clips / 255.0 - 0.45).astype("float32") / 0.25}
    for i, masks in enumerate(make_mask_sampler(config).sample_batch(2, 0)):
        batch[f"context_ids_{i}"], batch[f"target_ids_{i}"] = masks["context_ids"], masks[
            "target_ids"]
    before = [np.asarray(v) for v in trainer.flow_head.weights + trainer.encoder.weights]
    logs = trainer.train_step(batch)
    assert float(logs["flow_photometric"]) > 0 and "jepa" in logs
    after = [np.asarray(v) for v in trainer.flow_head.weights + trainer.encoder.weights]
    assert all(np.any(a != b) for a, b in zip(before, after))  # every weight moved
    trainer.flow_head.save_to_preset(tmp_path / "flow_head")
    trainer.encoder.save_to_preset(tmp_path / "student")
    head = FlowHead.from_preset(tmp_path / "flow_head")
    encoder = VideoEncoder.from_preset(tmp_path / "student")
    first, second = batch["video"][:, 0], batch["video"][:, 1]
    pair = np.stack([first, second], axis=1)
    np.testing.assert_array_equal(np.asarray(head(first, second, encoder(pair))),
                                  np.asarray(trainer.pair_flows(first, second)[0]))


@pytest.mark.slow
def test_pretrain_with_motion_writes_the_flow_head_and_a_flow_picture(clips, tmp_path):
    from vjepa2.train.pretrain import pretrain

    pretrain(_config(clips, tmp_path / "run"), verbose=0, preset_overrides=OVERRIDES)
    run = tmp_path / "run"
    assert (run / "flow.png").is_file() and (run / "flow_head" / "config.json").is_file()
    assert "flow_photometric" in (run / "metrics.jsonl").read_text()


def test_motion_pairs_limits_the_flow_loss_to_the_batchs_first_pairs(tmp_path):
    from vjepa2.errors import UsageError
    from vjepa2.train.pretrain import build_trainer

    clips = np.stack([synthesize_motion(0, i, frames=4, size=64)[0] for i in range(2)])
    clips = (clips / 255.0).astype("float32")
    later = clips.copy()  # every pair but the first (clip 0, frames 0 and 1) changed
    later[0, 2:], later[1] = clips[1, 2:], clips[0]
    first = clips.copy()
    first[0, 1] = clips[1, 1]
    for pairs, later_changes in ((1, False), (None, True)):
        trainer = build_trainer(_config("unused", tmp_path / "run", motion_pairs=pairs),
                                OVERRIDES)

        def loss(video):
            return float(trainer.motion_loss(video, training=False)[0])

        assert (loss(later) != loss(clips)) == later_changes
        assert loss(first) != loss(clips)
    with pytest.raises(UsageError, match="motion_pairs must be >= 1; received 0"):
        _config("unused", tmp_path / "run", motion_pairs=0)
    with pytest.raises(UsageError, match="--motion-pairs 2 needs --motion-weight > 0"):
        _config("unused", tmp_path / "run", motion_pairs=2, motion_weight=0.0)


def test_moving_digits_are_real_scans_with_their_flow_and_keep_the_digits_split(tmp_path):
    from vjepa2.data.digits import load_digits_scans, split_digits
    from vjepa2.data.motion import _UNIT
    from vjepa2.data.moving_digits import synthesize_moving_digit, write_moving_digits
    from vjepa2.data.video_io import read_video
    from vjepa2.data.video_sources import list_videos

    scans, labels = load_digits_scans()
    for index in range(4):
        video, flow, direction = synthesize_moving_digit(scans[index], 0, index, frames=3)
        ink = np.linalg.norm(flow[0], axis=-1) > 0
        assert 0.05 < ink.mean() < 0.5 and np.all(video[..., 0] == video[..., 2])
        velocity = flow[0][ink]
        speed = float(np.abs(velocity).max())
        assert 1.0 <= speed <= 2.5 and np.allclose(velocity, np.array(_UNIT[direction]) * speed)
        frames = video[..., :1].astype("float32") / 255.0
        residual = np.abs(np.asarray(warp(frames[None, 1], flow[None, 0])) - frames[None, 0])
        still = np.abs(frames[1] - frames[0])
        assert residual[0][ink].mean() < 0.2 * still[ink].mean()
    write_moving_digits(tmp_path, clips_per_digit=2, frames=4, count=10, seed=3)
    order, held = split_digits(10, 0.3, 3)
    scan_of = {}
    for name in ("pretrain", "train", "heldout"):
        rows = list_videos(str(tmp_path / f"{name}.csv"))
        scan_of[name] = [int(Path(path).name.split("_")[1]) for path, _ in rows]
        assert [label for _, label in rows] == [int(labels[i]) for i in scan_of[name]]
    assert sorted(scan_of["heldout"]) == sorted(order[:held].tolist())
    assert not set(scan_of["heldout"]) & set(scan_of["pretrain"])
    assert len(scan_of["pretrain"]) == 2 * len(scan_of["train"]) == 2 * (10 - held)
    path, direction = list_videos(str(tmp_path / "heldout_direction.csv"))[0]
    decoded, _ = read_video(path)
    video, _, expected = synthesize_moving_digit(scans[scan_of["heldout"][0]], 3,
                                                 scan_of["heldout"][0] * 16, frames=4)
    assert direction == expected and decoded.shape == video.shape
    assert np.corrcoef(decoded.ravel(), video.ravel().astype(float))[0, 1] > 0.95
