"""Labelled frames for frozen-latent probes: what can a world model read from what it sees?

Play episodes (`envs.policies.PlayPolicy`, which moves, opens and closes the gripper and grasps
and lifts the object) in the pick-and-place scene, rendered in several views at once from the
same simulator states, each frame labelled with simulator truth: the finger gap, whether the
object is held between both fingers, the object's and the gripper's xyz. Episode `i` uses seed
`seed + i`, so the same seeds give the same trajectories in every view and variation set.

    vjepa2 make-probe-data --variation heldout --episodes 40 --seed 5000 --out heldout.npz

The `.npz` holds `frames_<view>` `(N, S, S, 3)` uint8 per view, `finger_gap` (m), `in_hand`
(bool), `object_xyz` and `gripper_xyz` (m, world frame), `episode` and `step` `(N,)`, and a JSON
`meta` string (views, variation, seeds, image size, frame stride). Rendering runs in worker
processes (never beside TensorFlow); the file is written atomically.
"""
from __future__ import annotations

import atexit
import concurrent.futures as futures
import io
import json
import multiprocessing
import os

import numpy as np

from envs import views as views_lib
from vjepa2.errors import UsageError

CAMERA_VIEWS = ("scene", "close", "wrist")  # `scene+wrist` is `scene` beside `wrist`
LABELS = ("finger_gap", "in_hand", "object_xyz", "gripper_xyz", "episode", "step")

_WORKER: dict = {}


def _init(variation: str, views: tuple[str, ...], image_size: int, grasp_probability: float,
          parent_pid: int) -> None:
    import gymnasium as gym

    import envs
    from envs.policies import PlayPolicy
    from vjepa2.processes import die_with_parent

    die_with_parent(parent_pid)
    env = gym.make(envs.TASKS["pick_and_place"].env_id, variation=variation,
                   image_size=image_size, pixels=False)
    base = env.unwrapped
    renderers = {v: views_lib.ViewRenderer(base.model, v, image_size) for v in views}

    def close():
        for r in renderers.values():
            r.close()
        env.close()

    atexit.register(close)
    _WORKER.update(env=env, base=base, renderers=renderers,
                   policy=PlayPolicy(env, grasp_probability=grasp_probability))


def record_episode(seed: int, frame_stride: int) -> dict:
    """One play episode's frames (every `frame_stride`-th step) in each view, with labels."""
    w = _WORKER
    env, base, policy = w["env"], w["base"], w["policy"]
    obs, _ = env.reset(seed=seed)
    policy.reset(seed=seed)
    out = {f"frames_{v}": [] for v in w["renderers"]} | {k: [] for k in LABELS}
    step, done = 0, False
    while True:
        if step % frame_stride == 0:
            s = base.privileged_state()
            for view, renderer in w["renderers"].items():
                out[f"frames_{view}"].append(renderer.render(base.data, s["grip_pos"]))
            out["finger_gap"].append(s["gripper_opening"])
            out["in_hand"].append(bool(s["grasped"]))
            out["object_xyz"].append(s["object_pos"])
            out["gripper_xyz"].append(s["grip_pos"])
            out["episode"].append(seed)
            out["step"].append(step)
        if done:
            break
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        done, step = terminated or truncated, step + 1
    return {k: np.asarray(v) for k, v in out.items()}


def make_probe_data(out: str, variation: str, episodes: int, seed: int, image_size: int = 128,
                    views: tuple[str, ...] = CAMERA_VIEWS, frame_stride: int = 2,
                    workers: int = 2, grasp_probability: float = 0.6) -> dict:
    """Renders `episodes` play episodes and writes the labelled frames to `out` (`.npz`).

    Returns the file's `meta` dict. Raises `UsageError` on bad arguments.
    """
    from vjepa2.files import atomic_write

    for view in views:
        if view not in CAMERA_VIEWS:
            raise UsageError(f"unknown camera view {view!r}; expected some of "
                             f"{', '.join(CAMERA_VIEWS)}")
    if episodes < 1 or frame_stride < 1 or workers < 1:
        raise UsageError(f"episodes, frame_stride and workers must be >= 1; received "
                         f"{episodes}, {frame_stride}, {workers}")
    if not out.endswith(".npz"):
        raise UsageError(f"--out must name a .npz file; received {out!r}")
    seeds = [seed + i for i in range(episodes)]
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init,
            initargs=(variation, tuple(views), image_size, grasp_probability,
                      os.getpid())) as pool:
        parts = list(pool.map(record_episode, seeds, [frame_stride] * len(seeds)))
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    meta = {"variation": variation, "views": list(views), "seeds": [seeds[0], seeds[-1]],
            "image_size": image_size, "frame_stride": frame_stride, "task": "pick_and_place",
            "policy": "play", "grasp_probability": grasp_probability,
            "frames": int(len(arrays["episode"]))}
    arrays["meta"] = np.asarray(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(out, buffer.getvalue())
    return meta
