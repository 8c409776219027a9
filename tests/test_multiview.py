"""Frames of several camera views side by side: encoding, the world model and the state probe."""
import json

import keras
import numpy as np
import pytest

from tests.helpers import micro_encoder
from vjepa2.errors import UsageError
from vjepa2.models import ActionConditionedPredictor
from vjepa2.models.world_model import (WorldModel, WorldModelConventions, encode_frames,
                                       frame_grid, frame_views)
from vjepa2.train import state_probe

SIZE = 32


def _frames(batch=2, steps=2, views=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, steps, SIZE, views * SIZE, 3), dtype=np.uint8)


def _world_model(views):
    keras.utils.set_random_seed(1)
    encoder = micro_encoder(depth=1)
    predictor = ActionConditionedPredictor.from_preset(
        "tiny", embed_dim=24, depth=1, num_heads=2, mlp_dim=48, encoder_dim=48, action_dim=4,
        state_dim=4)
    conventions = WorldModelConventions(
        action_dim=4, state_dim=4, image_size=SIZE, action_delta_dims=(0, 1, 2),
        state_delta_dims=(0, 1, 2), action_to_state_scale=(0.05, 0.05, 0.05),
        view="scene+wrist" if views == 2 else "scene", frame_views=views)
    return WorldModel(encoder, predictor, conventions)


def test_a_two_view_frame_encodes_as_its_views_one_after_the_other():
    keras.utils.set_random_seed(0)
    encoder = micro_encoder(depth=1)
    frames = _frames()
    z = np.asarray(encode_frames(encoder, frames))
    left = np.asarray(encode_frames(encoder, frames[:, :, :, :SIZE]))
    right = np.asarray(encode_frames(encoder, frames[:, :, :, SIZE:]))
    assert z.shape == (2, 2, 8, 48)  # 2 views x 2 x 2 patches
    np.testing.assert_allclose(z, np.concatenate([left, right], axis=2), atol=1e-5)
    assert frame_views(frames.shape) == 2
    assert frame_grid(frames.shape, 16) == (4, 2)


def test_frames_that_are_not_whole_views_are_refused():
    with pytest.raises(ValueError, match="width a multiple of height"):
        frame_views((1, 32, 40, 3))


def test_world_model_reads_two_views_and_resizes_each():
    model = _world_model(views=2)
    frames = _frames(batch=1, steps=2)
    z = np.asarray(model.encode(frames))
    assert z.shape == (1, 2, 8, 48)
    # Frames rendered at twice the size are resized view by view (each view 2x2 area -> 1).
    big = np.repeat(np.repeat(frames, 2, axis=2), 2, axis=3)
    np.testing.assert_allclose(np.asarray(model.encode(big)), z, atol=1e-4)
    actions = np.zeros((3, 2, 4), np.float32)
    states = np.zeros((1, 1, 4), np.float32)
    out = np.asarray(model.rollout(z[:, -1:], states, actions))
    assert out.shape == (3, 2, 8, 48)
    with pytest.raises(ValueError, match=r"reads 2 camera view\(s\) side by side"):
        model.encode(frames[:, :, :, :SIZE])


def test_conventions_default_to_the_scene_view():
    c = WorldModelConventions(action_dim=4, state_dim=4, image_size=64)
    assert (c.view, c.frame_views) == ("scene", 1)
    with pytest.raises(UsageError, match="frame_views must be a positive integer"):
        WorldModelConventions(action_dim=4, state_dim=4, image_size=64, frame_views=0)


# ------------------------------------------------------------------------------ the state probe


def _probe_file(path, n=120, size=32, seed=0):
    """Labelled frames whose labels are drawn into the pixels: open fingers as a bright scene,
    the object x as a bar's position in the wrist view."""
    rng = np.random.default_rng(seed)
    gap = rng.uniform(0.0, 0.1, n)
    obj = rng.uniform(-0.1, 0.1, (n, 3))
    scene = np.zeros((n, size, size, 3), np.uint8)
    scene[:] = np.where(gap > 0.075, 200, 50).astype(np.uint8)[:, None, None, None]
    wrist = np.zeros((n, size, size, 3), np.uint8)
    cols = ((obj[:, 0] + 0.1) / 0.2 * (size - 4)).astype(int)
    for i, c in enumerate(cols):
        wrist[i, :, c:c + 4] = 255
    np.savez(path, frames_scene=scene, frames_wrist=wrist, finger_gap=gap,
             in_hand=gap < 0.03, object_xyz=obj, gripper_xyz=obj * 0.5,
             episode=np.arange(n) // 10, step=np.arange(n) % 10,
             meta=np.asarray(json.dumps({"views": ["scene", "wrist"]})))
    return str(path)


def test_labelled_frames_compose_views_and_downsample(tmp_path):
    path = _probe_file(tmp_path / "p.npz")
    frames, labels = state_probe.load_labelled_frames(path, "scene+wrist", 16)
    assert frames.shape == (120, 16, 32, 3)
    data = np.load(path)
    np.testing.assert_array_equal(frames[:, :, 16:], state_probe.downsample(data["frames_wrist"],
                                                                            16))
    block = data["frames_scene"][0, :2, :2].astype(float).mean(axis=(0, 1))
    np.testing.assert_array_equal(frames[0, 0, 0], np.round(block).astype(np.uint8))
    with pytest.raises(UsageError, match="has no close frames"):
        state_probe.load_labelled_frames(path, "close")
    with pytest.raises(UsageError, match="resolution 12 does not divide"):
        state_probe.downsample(data["frames_scene"], 12)


def test_r2_and_scores():
    y = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 2.5], [2.0, 1.0, 3.0]])
    assert state_probe.r2(y, y)["all"] == pytest.approx(1.0)
    assert state_probe.r2(y, np.broadcast_to(y.mean(0), y.shape))["all"] == pytest.approx(0.0)
    truth = {"finger_open": np.array([1, 1, 0, 1]), "in_hand": np.array([0, 0, 0, 1]),
             "object_xyz": np.eye(4, 3), "gripper_xyz": np.eye(4, 3)[[1, 2, 3, 0]] * 2}
    s = state_probe.score(dict(truth), truth)
    assert s["finger_open"] == {"accuracy": 1.0, "majority_class": 0.75, "items": 4}
    assert s["object_xyz"]["r2"]["all"] == pytest.approx(1.0)
    # A shift shared by both estimates (a camera placed differently) cancels in the relative one.
    shifted = dict(truth, object_xyz=truth["object_xyz"] + 0.6,
                   gripper_xyz=truth["gripper_xyz"] + 0.6)
    s = state_probe.score(shifted, truth)
    assert s["object_xyz"]["r2"]["all"] < 0.5
    assert s["object_minus_gripper"]["r2"]["all"] == pytest.approx(1.0)


def test_ridge_probe_reads_what_the_pixels_show(tmp_path):
    train = _probe_file(tmp_path / "train.npz", seed=0)
    test = _probe_file(tmp_path / "test.npz", seed=1)
    (xf, xl), (tf_, tl) = (state_probe.load_labelled_frames(p, "scene+wrist") for p in
                           (train, test))
    flat = lambda f: f.reshape(len(f), -1).astype(np.float64) / 255.0  # noqa: E731
    predicted, _ = state_probe.ridge_probe(flat(xf), state_probe.targets(xl), flat(tf_),
                                           xl["episode"])
    s = state_probe.score(predicted, state_probe.targets(tl))
    assert s["finger_open"]["accuracy"] > 0.9
    assert s["object_xyz"]["r2"]["x"] > 0.9


def test_state_probe_command_end_to_end(tmp_path):
    from vjepa2.cli import main

    encoder = micro_encoder(depth=1)
    encoder.save_to_preset(str(tmp_path / "enc"))
    train = _probe_file(tmp_path / "train.npz", seed=0)
    test = _probe_file(tmp_path / "test.npz", seed=1)
    out = tmp_path / "probe"
    code = main(["probe-states", "--encoder", str(tmp_path / "enc"), "--train", train,
                 "--heldout", test, "--view", "scene+wrist", "--epochs", "2", "--out", str(out),
                 "--probe-seeds", "2"])
    assert code == 0
    r = json.loads((out / "results.json").read_text())
    assert r["frame_shape"] == [32, 64, 3]
    for name in ("pretrained", "random_init"):
        assert r[name]["tokens"] == [8, 48]
        for probe in ("attentive", "ridge"):
            assert 0.0 <= r[name][probe]["finger_open"]["accuracy"] <= 1.0
        seeds, mean = r[name]["attentive_seeds"], r[name]["attentive_mean"]
        assert len(seeds) == 2 and seeds[0] == r[name]["attentive"]
        assert mean["object_xyz"]["r2"]["all"] == pytest.approx(
            np.mean([s["object_xyz"]["r2"]["all"] for s in seeds]))
        assert mean["in_hand"]["items"] == seeds[0]["in_hand"]["items"]
    assert main(["probe-states", "--encoder", str(tmp_path / "enc"), "--train", train,
                 "--heldout", test, "--view", "top", "--out", str(out / "x")]) == 2
