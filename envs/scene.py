"""The Fetch scene's named elements and its randomiser (what the camera sees at each reset).

`SceneIds` finds the model elements the env touches by name. `SceneRandomizer` draws a scene
from a variation set (`envs.variations`) and writes it into the MuJoCo model: the object's
shape, size and colour, the table's colour and finish, the light, a visual distractor and the
camera pose. It changes model parameters only, never the simulator state, so the task's start
state is drawn after it from the same generator.
"""
from __future__ import annotations

import mujoco
import numpy as np

from envs import variations as variations_lib

TABLE_TOP = 0.4  # z of the table surface (table body at z=0.2, half height 0.2)
HIDDEN_GROUP = 5  # a geom/site group the renderer does not draw (mjvOption shows 0-2)
CAMERA_AZIMUTH_DEG = 90.0  # camera on the table's +y side, looking across at the arm

# Distractor shapes: MuJoCo geom type and size (a capsule or ellipsoid lies along x).
_DISTRACTORS = {
    "sphere": (mujoco.mjtGeom.mjGEOM_SPHERE, [0.03, 0.0, 0.0]),
    "box": (mujoco.mjtGeom.mjGEOM_BOX, [0.028, 0.028, 0.028]),
    "capsule": (mujoco.mjtGeom.mjGEOM_CAPSULE, [0.022, 0.04, 0.0]),
    "ellipsoid": (mujoco.mjtGeom.mjGEOM_ELLIPSOID, [0.045, 0.028, 0.025]),
}


class SceneIds:
    """Indices of the named model elements the env touches.

    Args:
        model: the scene's `mujoco.MjModel` (built from `envs/assets/scene.xml`).

    Raises:
        ValueError: naming the element when the model lacks one.
    """

    def __init__(self, model):
        def gid(kind, name):
            index = mujoco.mj_name2id(model, kind, name)
            if index < 0:
                raise ValueError(f"scene model has no {kind} named {name!r}")
            return index

        o = mujoco.mjtObj
        self.grip_site = gid(o.mjOBJ_SITE, "robot0:grip")
        self.object_body = gid(o.mjOBJ_BODY, "object0")
        self.object_geoms = (gid(o.mjOBJ_GEOM, "object0"), gid(o.mjOBJ_GEOM, "object0_b"))
        self.finger_geoms = (
            gid(o.mjOBJ_GEOM, "robot0:l_gripper_finger_link"),
            gid(o.mjOBJ_GEOM, "robot0:r_gripper_finger_link"),
        )
        self.finger_qpos = np.array(
            [
                model.jnt_qposadr[gid(o.mjOBJ_JOINT, "robot0:l_gripper_finger_joint")],
                model.jnt_qposadr[gid(o.mjOBJ_JOINT, "robot0:r_gripper_finger_joint")],
            ]
        )
        self.finger_actuators = np.array(
            [
                gid(o.mjOBJ_ACTUATOR, "robot0:l_gripper_finger_joint"),
                gid(o.mjOBJ_ACTUATOR, "robot0:r_gripper_finger_joint"),
            ]
        )
        self.mocap_body = gid(o.mjOBJ_BODY, "robot0:mocap")
        self.table_geom = gid(o.mjOBJ_GEOM, "table0")
        self.table_finish_mats = {
            "plain": gid(o.mjOBJ_MATERIAL, "vj_table_mat"),
            "checker": gid(o.mjOBJ_MATERIAL, "vj_table_checker_mat"),
            "speckle": gid(o.mjOBJ_MATERIAL, "vj_table_speckle_mat"),
        }
        self.object_mat = gid(o.mjOBJ_MATERIAL, "vj_object_mat")
        self.distractor_body = gid(o.mjOBJ_BODY, "distractor0")
        self.distractor_geom = gid(o.mjOBJ_GEOM, "distractor0")
        self.distractor_mat = gid(o.mjOBJ_MATERIAL, "vj_distractor_mat")
        self.light = gid(o.mjOBJ_LIGHT, "light0")
        self.camera = gid(o.mjOBJ_CAMERA, "vjepa_cam")

    def object_active_geoms(self, model) -> list[int]:
        """The object's geoms of the current shape (the star's second box only when shown)."""
        return [g for g in self.object_geoms if model.geom_group[g] != HIDDEN_GROUP]


def hide_markers(model, ids: SceneIds) -> None:
    """Moves every site and the mocap's axis-line geoms to a group the camera never draws."""
    model.site_group[:] = HIDDEN_GROUP
    first = model.body_geomadr[ids.mocap_body]
    model.geom_group[first : first + model.body_geomnum[ids.mocap_body]] = HIDDEN_GROUP


class SceneRandomizer:
    """Draws scene variations from one set and writes them into the MuJoCo model.

    Every value except three comes from the variation set (see `envs.variations`); the light's
    heading and the distractor's position on the table are drawn here, after the set's values,
    from the same generator.

    Args:
        model: the scene's `mujoco.MjModel`; changed in place.
        ids: its `SceneIds`.
        variation_set: the `envs.variations.VariationSet` to draw from.

    Example:

    ```python
    randomizer = SceneRandomizer(env.model, SceneIds(env.model), variations.HELDOUT)
    values = randomizer.randomize(env.np_random, center=env.initial_gripper_xpos[:2])
    ```
    """

    def __init__(self, model, ids: SceneIds, variation_set: variations_lib.VariationSet):
        self.model = model
        self.ids = ids
        self.variation_set = variation_set

    def randomize(self, rng: np.random.Generator, center: np.ndarray) -> dict:
        """Draws one scene and applies it.

        Args:
            rng: the env's generator (`env.np_random`).
            center: `(2,)` xy of the workspace centre (the start gripper position), metres.

        Returns:
            The drawn values (`VariationSet.sample`'s JSON-serializable dict).
        """
        values = self.variation_set.sample(rng)
        self.apply(values, rng, center)
        return values

    def apply(self, v: dict, rng: np.random.Generator, center: np.ndarray) -> None:
        """Writes the values `v` into the model, drawing the light heading and distractor spot."""
        self._apply_object(v)
        self._apply_table(v)
        self._apply_light(v, rng)
        self._apply_distractor(v, rng, center)
        self._apply_camera(v, center)

    def _apply_object(self, v: dict) -> None:
        m = self.model
        half = v["object_half_size"]
        main, extra = self.ids.object_geoms
        if v["object_shape"] == "cylinder":
            set_geom(m, main, mujoco.mjtGeom.mjGEOM_CYLINDER, [half, half, 0.0])
        else:
            set_geom(m, main, mujoco.mjtGeom.mjGEOM_BOX, [half, half, half])
        # The star: a second, smaller box turned 45 degrees whose corners poke out 20% past
        # the first box's faces (union of the two = an eight-pointed star prism).
        b = half * 1.2 / np.sqrt(2.0)
        set_geom(m, extra, mujoco.mjtGeom.mjGEOM_BOX, [b, b, half])
        enable_geom(m, extra, v["object_shape"] == "star_prism")
        m.mat_rgba[self.ids.object_mat] = variations_lib.hsv_to_rgba(
            v["object_hue"], v["object_saturation"], v["object_value"]
        )

    def _apply_table(self, v: dict) -> None:
        m = self.model
        table_rgba = variations_lib.hsv_to_rgba(v["table_hue"], v["table_saturation"], v["table_value"])
        table_mat = self.ids.table_finish_mats[v["table_finish"]]
        m.geom_matid[self.ids.table_geom] = table_mat
        m.mat_rgba[table_mat] = table_rgba

    def _apply_light(self, v: dict, rng: np.random.Generator) -> None:
        # Intensity and a tilt away from vertical, at a random heading.
        m, light = self.model, self.ids.light
        d = v["light_diffuse"]
        m.light_diffuse[light] = [d, d, d]
        tilt = np.deg2rad(v["light_tilt_deg"])
        heading = rng.uniform(0.0, 2.0 * np.pi)
        m.light_dir[light] = [
            np.sin(tilt) * np.cos(heading),
            np.sin(tilt) * np.sin(heading),
            -np.cos(tilt),
        ]

    def _apply_distractor(self, v: dict, rng: np.random.Generator, center: np.ndarray) -> None:
        # Visual only, off to one side of the workspace.
        m, ids = self.model, self.ids
        shape = v["distractor_shape"]
        geom_type, size = _DISTRACTORS[shape]
        set_geom(m, ids.distractor_geom, geom_type, size)
        m.mat_rgba[ids.distractor_mat] = variations_lib.hsv_to_rgba(v["distractor_hue"], 0.7, 0.8)
        # A lying capsule (axis along x) rests on the table without a joint.
        m.geom_quat[ids.distractor_geom] = (
            [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0] if shape == "capsule" else [1, 0, 0, 0]
        )
        resting = size[0] if shape in ("sphere", "capsule") else size[2]
        # Behind the workspace as the camera sees it, so it never hides the object or gripper.
        x = center[0] + rng.uniform(-0.14, 0.14)
        y = center[1] - rng.uniform(0.23, 0.29)
        m.body_pos[ids.distractor_body] = [x, y, TABLE_TOP + resting]

    def _apply_camera(self, v: dict, center: np.ndarray) -> None:
        # Orbit the workspace centre, looking down at `elevation` degrees; seen from the side
        # (+y), the arm enters from the left and never hides the gripper.
        lookat = np.array([center[0] - 0.02, center[1] - 0.03, TABLE_TOP + 0.08])
        az = np.deg2rad(CAMERA_AZIMUTH_DEG + v["camera_azimuth_deg"])
        el = np.deg2rad(v["camera_elevation_deg"])
        offset = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        self.model.cam_pos[self.ids.camera] = lookat + v["camera_distance"] * offset
        self.model.cam_quat[self.ids.camera] = look_at_quat(-offset)


def set_geom(model, geom: int, geom_type, size) -> None:
    """Changes a geom's type and size, keeping the collision bounds MuJoCo precomputed in sync."""
    size = np.asarray(size, np.float64)
    model.geom_type[geom] = geom_type
    model.geom_size[geom] = size
    if geom_type == mujoco.mjtGeom.mjGEOM_BOX:
        half = size
    elif geom_type == mujoco.mjtGeom.mjGEOM_CYLINDER:
        half = np.array([size[0], size[0], size[1]])
    elif geom_type == mujoco.mjtGeom.mjGEOM_CAPSULE:
        half = np.array([size[0], size[0], size[1] + size[0]])
    elif geom_type == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
        half = size
    else:  # sphere
        half = np.array([size[0]] * 3)
    model.geom_rbound[geom] = float(np.linalg.norm(half))
    model.geom_aabb[geom] = [0.0, 0.0, 0.0, *half]


def enable_geom(model, geom: int, enabled: bool) -> None:
    """Shows a geom and turns its contacts on, or hides it and turns them off."""
    model.geom_contype[geom] = model.geom_conaffinity[geom] = 1 if enabled else 0
    model.geom_group[geom] = 0 if enabled else HIDDEN_GROUP


def geom_bottom(data, model, geom: int) -> float:
    """Lowest world z of a box geom."""
    extent = np.abs(data.geom_xmat[geom].reshape(3, 3)) @ model.geom_size[geom]
    return float(data.geom_xpos[geom][2] - extent[2])


def look_at_quat(forward: np.ndarray) -> np.ndarray:
    """Quaternion of a MuJoCo camera looking along `forward` with the image's up toward +z."""
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    # MuJoCo cameras look along their -z axis, x to the right, y up.
    mat = np.stack([right, up, -forward], axis=1)
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat
