"""Rendering checks of the camera views, run in a spawned process (no TensorFlow beside EGL)."""
from __future__ import annotations

import numpy as np


def _segment(model, data, view, size, grip, geoms):
    """Pixels of `geoms` in one camera of `view` (a segmentation render)."""
    import mujoco

    from envs import views

    r = views.ViewRenderer(model, view, size)
    r._renderer.enable_segmentation_rendering()
    frame = r.render(data, grip)
    r.close()
    ids = frame[..., 0]
    types = frame[..., 1]
    return np.isin(ids, geoms) & (types == int(mujoco.mjtObj.mjOBJ_GEOM))


def view_report(size: int = 64) -> dict:
    """Frame shapes, state invariance and how many pixels the fingers and object fill."""
    import gymnasium as gym

    import envs  # noqa: F401

    report = {"shapes": {}, "state_unchanged": {}}
    for view in ("scene", "close", "wrist", "scene+wrist"):
        env = gym.make("VJEPA/PickAndPlace-v0", variation="heldout", image_size=size, view=view)
        u = env.unwrapped
        obs, info = env.reset(seed=3)
        before = u.get_sim_state()
        frame = env.render()
        report["shapes"][view] = [list(obs["image"].shape), list(frame.shape),
                                  list(info["goal_image"].shape)]
        report["state_unchanged"][view] = bool(np.array_equal(before, u.get_sim_state()))
        env.close()
    env = gym.make("VJEPA/PickAndPlace-v0", variation="heldout", image_size=size, pixels=False)
    u = env.unwrapped
    env.reset(seed=3)
    fingers, obj = list(u._ids.finger_geoms), u._ids.object_active_geoms(u.model)
    counts, masks = {}, []
    for step in range(2):
        grip = u.gripper_position()
        for view in ("scene", "close", "wrist"):
            counts[f"{view}_fingers_{step}"] = int(_segment(u.model, u.data, view, size, grip,
                                                            fingers).sum())
            counts[f"{view}_object_{step}"] = int(_segment(u.model, u.data, view, size, grip,
                                                           obj).sum())
        masks.append(_segment(u.model, u.data, "wrist", size, grip, fingers))
        for _ in range(8):  # move the gripper 0.16 m along x and 0.08 m up
            env.step(np.array([0.4, 0.0, 0.2, 0.0], np.float32))
    report["counts"] = counts
    report["wrist_finger_iou"] = float((masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum())
    env.close()
    return report


def probe_data_report(path: str) -> dict:
    """Makes a small probe-data file twice with the same seeds; reports its contents."""
    from envs.probe_data import make_probe_data

    meta = make_probe_data(path, "wide", episodes=2, seed=11, image_size=32,
                           views=("scene", "wrist"), frame_stride=5, workers=1)
    data = dict(np.load(path))
    make_probe_data(path + ".again.npz", "wide", episodes=2, seed=11, image_size=32,
                    views=("scene", "wrist"), frame_stride=5, workers=2)
    again = dict(np.load(path + ".again.npz"))
    return {"meta": meta, "shapes": {k: list(v.shape) for k, v in data.items()},
            "same": all(np.array_equal(data[k], again[k]) for k in data if k != "meta"),
            "episodes": sorted(set(data["episode"].tolist())),
            "held_gaps": data["finger_gap"][data["in_hand"]].tolist()}
