"""Tests of the RLDS collector and the clip reader."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from envs.collect import CollectConfig, collect
from tests.envs_helpers import dying_episode, failing_episode
from vjepa2.cli import main
from vjepa2.data import rlds
from vjepa2.errors import UsageError

SIZE = 32


def _episodes(out):
    """Every episode of the dataset in `out`, with its steps stacked into arrays."""
    builder = tfds.builder_from_directory(str(out))
    episodes = []
    for ep in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)):
        steps = list(ep["steps"])
        ep["steps"] = tf.nest.map_structure(lambda *xs: np.stack(xs), *steps)
        episodes.append(ep)
    return episodes


def test_collect_read_round_trip(tmp_path):
    out = tmp_path / "logs"
    config = CollectConfig(task="grasp", variation="heldout", image_size=SIZE, seed=100)
    summary = collect(config, episodes=2, out=out, workers=1, videos=True, progress=False)
    assert summary["present"] == 2 and not summary["failed"]
    episodes = sorted(_episodes(out), key=lambda e: e["episode_metadata"]["seed"])
    assert [e["episode_metadata"]["seed"] for e in episodes] == [100, 101]
    ep = episodes[0]
    steps = ep["steps"]
    assert ep["episode_metadata"]["task"] == b"grasp"
    assert ep["episode_metadata"]["variation"] == b"heldout"
    assert steps["observation"]["image"].shape == (51, SIZE, SIZE, 3)
    assert steps["is_first"][0] and steps["is_last"][-1] and not steps["is_terminal"].any()
    assert steps["is_first"].sum() == 1 and steps["is_last"].sum() == 1
    assert (out / "videos" / "episode-00000100.mp4").exists()
    # Clips hold exactly the stored values, with actions summed over the frame stride.
    clips = rlds.make_clip_dataset(out, clip_length=3, frame_stride=2, batch_size=64,
                                   shuffle=False, drop_remainder=False)
    batch = next(iter(clips))
    assert batch["frames"].dtype == tf.uint8 and batch["frames"].shape[1:] == (3, SIZE, SIZE, 3)
    in_file_order = _episodes(out)
    for i in range(len(batch["start"])):
        e = in_file_order[int(batch["episode"][i])]["steps"]
        s = int(batch["start"][i])
        idx = [s, s + 2, s + 4]
        np.testing.assert_array_equal(batch["frames"][i], e["observation"]["image"][idx])
        np.testing.assert_array_equal(batch["states"][i], e["observation"]["state"][idx])
        expect = np.stack([e["action"][j:j + 2].sum(0) for j in idx])
        expect[:, 3] = [e["action"][j:j + 2, 3].mean() for j in idx]
        np.testing.assert_allclose(batch["actions"][i], expect, rtol=1e-6)


def test_interrupted_collection_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "logs"
    config = CollectConfig(task="reach", variation="train", image_size=SIZE)
    first = collect(config, 5, out, workers=1, progress=False, episode_fn=failing_episode)
    assert [f["id"] for f in first["failed"]] == [3]
    assert first["present"] == 4  # the completed ones are kept and readable
    assert len(_episodes(out)) == 4
    # A worker killed mid-run: reported, and the dataset stays readable.
    second = collect(config, 6, out, workers=2, progress=False, episode_fn=dying_episode)
    assert second["failed"]
    assert len(_episodes(out)) == second["present"] < 6
    assert not list((out / "episodes").glob(".*tmp*"))
    argv = ["collect", "--task", "reach", "--variation", "train", "--episodes", "6",
            "--workers", "2", "--out", str(out), "--image-size", str(SIZE)]
    assert main(argv) == 0
    seeds = sorted(int(e["episode_metadata"]["seed"]) for e in _episodes(out))
    assert seeds == list(range(6))
    assert main(argv) == 0  # nothing left to do
    assert len(_episodes(out)) == 6


def test_collect_rejects_bad_input(tmp_path):
    with pytest.raises(UsageError, match="unknown task 'fly'"):
        CollectConfig(task="fly", variation="train")
    with pytest.raises(UsageError, match="unknown variation 'test'"):
        CollectConfig(task="reach", variation="test")
    with pytest.raises(UsageError, match="--noise"):
        CollectConfig(task="reach", variation="train", noise=-1.0)
    (tmp_path / "collect.json").write_text(json.dumps(
        {"task": "push", "variation": "train", "image_size": 128, "noise": None, "seed": 0}))
    with pytest.raises(UsageError, match="task='push'"):
        collect(CollectConfig(task="reach", variation="train"), 1, tmp_path, progress=False)
    with pytest.raises(UsageError, match="no RLDS dataset"):
        rlds.make_clip_dataset(tmp_path / "nothing")


def test_droid_style_keys_read_through_key_mapping(tmp_path):
    features = rlds.episode_features(
        observation={
            "exterior_image_1_left": tfds.features.Image(shape=(18, 32, 3)),
            "cartesian_position": tfds.features.Tensor(shape=(6,), dtype=tf.float64),
            "gripper_position": tfds.features.Tensor(shape=(1,), dtype=tf.float64),
        },
        action_dim=7,
        metadata={"file_path": tfds.features.Text()},
    )
    rng = np.random.default_rng(0)
    length = 12
    cart = rng.normal(size=(length, 6))
    grip = rng.uniform(size=(length, 1))
    images = rng.integers(0, 255, size=(length, 18, 32, 3), dtype=np.uint8)
    actions = rng.normal(size=(length, 7)).astype(np.float32)
    steps = [
        {"observation": {"exterior_image_1_left": images[t], "cartesian_position": cart[t],
                         "gripper_position": grip[t]},
         "action": actions[t], "reward": 0.0, "discount": 1.0, "is_first": t == 0,
         "is_last": t == length - 1, "is_terminal": t == length - 1}
        for t in range(length)
    ]
    rlds.write_episode_file(rlds.episode_path(tmp_path, 0), features,
                            {"steps": steps, "episode_metadata": {"file_path": "droid/0"}})
    rlds.finalize_dataset(tmp_path, features)
    batch = next(iter(rlds.make_clip_dataset(tmp_path, rlds.DROID_KEYMAP, clip_length=4,
                                             batch_size=2, shuffle=False, image_size=16)))
    assert batch["frames"].shape == (2, 4, 16, 16, 3)
    np.testing.assert_allclose(batch["states"][1], np.concatenate([cart, grip], 1)[1:5], rtol=1e-6)
    np.testing.assert_allclose(batch["actions"][0], actions[0:4])
    from_state = rlds.KeyMap(**{**rlds.DROID_KEYMAP.__dict__, "action_from_state": True})
    batch = next(iter(rlds.make_clip_dataset(tmp_path, from_state, clip_length=4, frame_stride=2,
                                             batch_size=1, shuffle=False)))
    state = np.concatenate([cart, grip], 1)
    np.testing.assert_allclose(batch["actions"][0], state[[2, 4, 6, 8]] - state[[0, 2, 4, 6]],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="no key 'observation/wrist_image'"):
        rlds.make_clip_dataset(tmp_path, rlds.KeyMap(image="observation/wrist_image",
                                                     state="observation/cartesian_position"))
