"""Tests of the RLDS step format: language instructions, decoding only what is read, summed dims."""
import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import envs
from envs.collect import CollectConfig, collect, make_features, run_episode
from envs.policies import make_policy
from vjepa2.data import rlds
from vjepa2.errors import UsageError

SIZE = 16


def _write(out, language_instruction, length=6, wrist=False):
    """One episode with an `image` camera (and an 8 px `wrist_image` one); returns its images."""
    observation = {"image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                   "state": tfds.features.Tensor(shape=(4,), dtype=tf.float32)}
    if wrist:
        observation["wrist_image"] = tfds.features.Image(shape=(8, 8, 3))
    features = rlds.episode_features(observation, action_dim=4,
                                     metadata={"seed": tfds.features.Scalar(dtype=tf.int64)},
                                     language_instruction=language_instruction)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(length, SIZE, SIZE, 3), dtype=np.uint8)
    steps = []
    for t in range(length):
        obs = {"image": images[t], "state": np.full(4, t, np.float32)}
        if wrist:
            obs["wrist_image"] = np.zeros((8, 8, 3), np.uint8)
        step = {"observation": obs, "action": np.ones(4, np.float32), "reward": 0.0,
                "discount": 1.0, "is_first": t == 0, "is_last": t == length - 1,
                "is_terminal": False}
        if language_instruction:
            step["language_instruction"] = "push the object to the goal"
        steps.append(step)
    rlds.write_episode_file(rlds.episode_path(out, 0), features,
                            {"steps": steps, "episode_metadata": {"seed": 0}})
    rlds.finalize_dataset(out, features)
    return images


def _first_batch(out):
    return next(iter(rlds.make_clip_dataset(out, clip_length=2, batch_size=1, shuffle=False)))


@pytest.mark.parametrize("language_instruction", [False, True])
def test_datasets_with_and_without_instructions_read_alike(tmp_path, language_instruction):
    images = _write(tmp_path, language_instruction)
    batch = _first_batch(tmp_path)
    np.testing.assert_array_equal(batch["frames"][0], images[:2])
    np.testing.assert_array_equal(batch["states"][0], [[0] * 4, [1] * 4])


def test_reader_decodes_only_the_camera_it_reads(tmp_path, monkeypatch):
    images = _write(tmp_path, language_instruction=True, wrist=True)
    decoded = []
    original = tfds.features.Image.decode_example

    def spy(self, example):
        decoded.append(tuple(self.shape))
        return original(self, example)

    monkeypatch.setattr(tfds.features.Image, "decode_example", spy)
    np.testing.assert_array_equal(_first_batch(tmp_path)["frames"][0], images[:2])
    assert set(decoded) == {(SIZE, SIZE, 3)}  # never the (8, 8, 3) wrist camera


def test_summed_action_dims_are_the_dims_a_clip_sums():
    assert rlds.KeyMap().summed_action_dims(4) == (0, 1, 2)
    assert rlds.KeyMap(delta_action_dims=(0, 1)).summed_action_dims(4) == (0, 1)
    # DROID read as V-JEPA 2-AC does: state differences, every dim summed over the stride.
    droid = rlds.KeyMap(**{**rlds.DROID_KEYMAP.__dict__, "action_from_state": True})
    assert droid.summed_action_dims(7) == tuple(range(7))
    assert droid.read_keys() == ("observation/exterior_image_1_left",
                                 "observation/cartesian_position", "observation/gripper_position")


def test_collected_steps_carry_the_task_instruction(tmp_path):
    config = CollectConfig(task="push", variation="train", image_size=SIZE)
    env = gym.make(envs.TASKS["push"].env_id, image_size=SIZE, pixels=False)
    episode = run_episode(env, make_policy("push", env), config, episode_id=0)
    env.close()
    features = make_features(SIZE)
    rlds.write_episode_file(rlds.episode_path(tmp_path, 0), features, episode)
    rlds.finalize_dataset(tmp_path, features)
    builder = tfds.builder_from_directory(str(tmp_path))
    (stored,) = tfds.as_numpy(builder.as_dataset(split="train"))
    texts = {step["language_instruction"].decode() for step in stored["steps"]}
    assert texts == {envs.TASKS["push"].instruction}
    assert len(_first_batch(tmp_path)["frames"][0]) == 2


def test_resuming_a_collection_without_instructions_is_refused(tmp_path):
    (tmp_path / "collect.json").write_text(
        '{"task": "reach", "variation": "train", "image_size": 16, "noise": null, "seed": 0}')
    with pytest.raises(UsageError, match="language_instruction=None"):
        collect(CollectConfig(task="reach", variation="train", image_size=16), 1, tmp_path,
                progress=False)
