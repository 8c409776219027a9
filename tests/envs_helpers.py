"""Helpers for the env/collector tests.

Rendering (Mesa EGL) and TensorFlow crash when loaded in one process, and the test process
imports TensorFlow elsewhere; so every check that renders runs in a fresh spawned process
through `run_isolated`. This module must not import TensorFlow.
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os

import numpy as np


def run_isolated(fn, *args):
    """Runs module-level `fn(*args)` in a fresh spawned process; returns its result."""
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result(timeout=300)


def check_all_envs() -> dict:
    """check_env on every id, a render check, same-seed determinism and goal-image checks."""
    import warnings

    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import envs

    report = {}
    for env_id in envs.register_envs():
        env = gym.make(env_id, image_size=64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # Unbounded Box spaces are Fetch's convention for positions; only that is allowed.
            warnings.filterwarnings("ignore", message=".*Box observation space (min|max)imum")
            check_env(env.unwrapped, skip_render_check=True)
        u = env.unwrapped
        obs, info = env.reset(seed=7)
        frame = env.render()
        a = [obs["image"]]
        actions = np.random.default_rng(0).uniform(-1, 1, size=(5, 4)).astype(np.float32)
        for action in actions:
            a.append(env.step(action)[0]["image"])
        obs2, info2 = env.reset(seed=7)
        b = [obs2["image"]] + [env.step(action)[0]["image"] for action in actions]
        goals = {}
        for name in info["goal_images"]:
            state_now = u.get_sim_state()
            u.set_sim_state(u.goal_sim_state(name))
            goal_obs = u._get_obs()
            priv = u.privileged_state()
            goals[name] = {
                "image_equal": bool(np.array_equal(goal_obs["image"], u.goal_image(name))),
                "success": bool(u._step_info(goal_obs)["is_success"]),
                "grip_to_object": float(np.linalg.norm(priv["grip_pos"] - priv["object_pos"])),
                "object_lift": float(priv["object_pos"][2] - priv["table_top"]
                                     - priv["object_half_size"]),
                "finger_gap": float(goal_obs["state"][3]),
                "grasped": bool(priv["grasped"]),
            }
            u.set_sim_state(state_now)
        report[env_id] = {
            "render_equal_obs": bool(np.array_equal(frame, obs["image"])),
            "render_shape": frame.shape,
            "same_seed_same_frames": all(np.array_equal(x, y) for x, y in zip(a, b)),
            "frames_change": not np.array_equal(a[0], a[-1]),
            "goal_image_differs_from_start": not np.array_equal(info["goal_image"], obs["image"]),
            "goals": goals,
            "goal_names": list(info["goal_images"]),
            "variation": info["variation"],
        }
        env.close()
    return report


def reset_variations(env_id: str, variation: str, seeds) -> list:
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make(env_id, variation=variation, pixels=False)
    values = [env.reset(seed=int(s))[1]["variation"] for s in seeds]
    env.close()
    return values


def failing_episode(env, policy, config, episode_id):
    """An `episode_fn` for collect that raises on episode id 3 (a crashing episode)."""
    from envs.collect import run_episode

    if episode_id == 3:
        raise RuntimeError("simulated crash in episode 3")
    return run_episode(env, policy, config, episode_id)


def dying_episode(env, policy, config, episode_id):
    """An `episode_fn` whose worker process dies abruptly on episode id 5 (like a kill -9)."""
    from envs.collect import run_episode

    if episode_id == 5:
        os._exit(1)
    return run_episode(env, policy, config, episode_id)
