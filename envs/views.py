"""What the task camera sees: named views of the Fetch scene.

The grasp is small in the scene camera: at 64 px from 0.74-0.98 m the object is about 4 px wide
and each finger 1-2 px, so one 16 x 16 patch holds the whole grasp. A view says where the
camera is and how it frames the scene:

- `scene`: the orbit camera of the scene variations (`camera_azimuth_deg`, `camera_elevation_deg`,
  `camera_distance`), field of view 45 degrees. The view of every earlier log and model.
- `close`: the same orbit camera zoomed onto the workspace (field of view 28 degrees, a
  1.65x magnification): objects and goals within the workspace square stay in the frame.
- `wrist`: a camera riding on the gripper, behind and above the fingers, looking down past
  them at the table: the fingers and their gap fill the bottom of the frame, the object
  appears once the gripper is above it. It sees nothing of where the object is when the
  gripper is far away.
- `scene+wrist`: the scene and the wrist view side by side in one frame of `S x 2S` pixels.

Views change rendering only, never the simulator state.
"""
from __future__ import annotations

import mujoco
import numpy as np

from vjepa2.errors import UsageError

VIEWS = ("scene", "close", "wrist", "scene+wrist")
SCENE_FOVY = 45.0
CLOSE_FOVY = 28.0
WRIST_FOVY = 70.0
# Wrist camera, relative to the grip site (world axes; the gripper never turns): behind the
# fingers toward the robot (-x) and above them, looking at a point just below the fingertips.
WRIST_OFFSET = np.array([-0.09, 0.0, 0.11])
WRIST_LOOK_AT = np.array([0.035, 0.0, -0.04])


def check_view(view: str) -> str:
    """Returns `view` if it is a known view; raises `UsageError` naming it otherwise."""
    if view not in VIEWS:
        raise UsageError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    return view


def frame_shape(view: str, image_size: int) -> tuple[int, int, int]:
    """The `(H, W, 3)` shape of one frame of `view` at `image_size`."""
    return (image_size, 2 * image_size if check_view(view) == "scene+wrist" else image_size, 3)


def camera_fovy(view: str) -> float:
    """The orbit camera's vertical field of view (degrees) for `view`."""
    return CLOSE_FOVY if view == "close" else SCENE_FOVY


def place_wrist_camera(data, camera: int, grip_pos: np.ndarray) -> None:
    """Moves the wrist camera to its pose relative to the grip site (rendering state only).

    Writes the camera's world pose into `data` (what the renderer reads); the simulator state
    (qpos, qvel, ...) is not touched, and the next `mj_forward` recomputes the pose from the
    model, which is harmless because every wrist frame places the camera again.
    """
    eye = grip_pos + WRIST_OFFSET
    forward = grip_pos + WRIST_LOOK_AT - eye
    data.cam_xpos[camera] = eye
    data.cam_xmat[camera] = _camera_matrix(forward).reshape(-1)


def _camera_matrix(forward: np.ndarray) -> np.ndarray:
    """Rotation (columns: camera x right, y up, z backward) of a camera looking along
    `forward` with the image's up toward +x (away from the robot) when looking straight down."""
    forward = forward / np.linalg.norm(forward)
    up_hint = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    right = np.cross(forward, up_hint)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up, -forward], axis=1)


class ViewRenderer:
    """Renders the frames of one view with one offscreen `mujoco.Renderer`.

    Args:
        model: the scene's `MjModel`; its cameras `vjepa_cam` and `vjepa_wrist` are used.
        view: one of `VIEWS`.
        image_size: side of each camera's square image in pixels.
    """

    def __init__(self, model, view: str, image_size: int):
        self.view = check_view(view)
        self.image_size = int(image_size)
        self.model = model
        self.scene_camera = _camera_id(model, "vjepa_cam")
        self.wrist_camera = _camera_id(model, "vjepa_wrist")
        self._renderer = mujoco.Renderer(model, self.image_size, self.image_size)
        self._option = mujoco.MjvOption()

    def render(self, data, grip_pos: np.ndarray) -> np.ndarray:
        """The view's frame `frame_shape(view, image_size)` uint8 of the current state."""
        if self.view == "scene+wrist":
            return np.concatenate([self._camera(data, "scene", grip_pos),
                                   self._camera(data, "wrist", grip_pos)], axis=1)
        return self._camera(data, "wrist" if self.view == "wrist" else "scene", grip_pos)

    def _camera(self, data, which: str, grip_pos: np.ndarray) -> np.ndarray:
        # The field of view is set at every frame: renderers of several views may share a model.
        if which == "wrist":
            place_wrist_camera(data, self.wrist_camera, grip_pos)
            camera, fovy = self.wrist_camera, WRIST_FOVY
        else:
            camera, fovy = self.scene_camera, camera_fovy(self.view)
        self.model.cam_fovy[camera] = fovy
        self._renderer.update_scene(data, camera=camera, scene_option=self._option)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()


def _camera_id(model, name: str) -> int:
    index = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
    if index < 0:
        raise ValueError(f"scene model has no camera named {name!r}")
    return index
