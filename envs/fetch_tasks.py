"""Goal-image manipulation tasks on Gymnasium-Robotics' Fetch robot.

`FetchGoalImageEnv` subclasses Gymnasium-Robotics' `MujocoFetchEnv` (the v4 Fetch environments'
base class) rather than wrapping a Fetch env: the subclass keeps Fetch's controller, action
semantics, timing and observation vector exactly, while it must own the parts a wrapper cannot
reach cleanly: the scene model (camera, hidden markers, variable object), the start states, the
goal sampling and the simulated goal images (which save, drive and restore the simulator).
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import mujoco
import numpy as np
from gymnasium import spaces

with contextlib.redirect_stdout(io.StringIO()):
    # Gymnasium-Robotics prints a notice about unrelated Adroit envs on import.
    import gymnasium_robotics
    from gymnasium_robotics.envs.fetch.fetch_env import MujocoFetchEnv

from envs import tasks as tasks_lib
from envs import variations as variations_lib

SCENE_XML = Path(__file__).with_name("assets") / "scene.xml"
FETCH_ASSETS = Path(gymnasium_robotics.__file__).parent / "envs" / "assets" / "fetch"

TABLE_TOP = 0.4  # z of the table surface (table body at z=0.2, half height 0.2)
HIDDEN_GROUP = 5  # a geom/site group the renderer does not draw (mjvOption shows 0-2)
WORKSPACE_RANGE = 0.15  # half side of the square (around the start gripper xy) holding objects/goals
MIN_GOAL_SEPARATION = 0.08  # metres between start and goal positions, so no episode starts solved
LIFT_HEIGHT = 0.10  # grasp task: object lifted this far above its resting height
NEAR_GOAL_HEIGHT = 0.06  # pick-and-place sub-goal: object held this far above the goal
SETTLE_STEPS = 8
CAMERA_AZIMUTH_DEG = 90.0  # camera on the table's +y side, looking across at the arm  # env steps for the gripper to reach a teleported mocap target

_INITIAL_QPOS = {
    "robot0:slide0": 0.405,
    "robot0:slide1": 0.48,
    "robot0:slide2": 0.0,
    "object0:joint": [1.25, 0.53, 0.4, 1.0, 0.0, 0.0, 0.0],
}


class FetchGoalImageEnv(MujocoFetchEnv):
    """Fetch tabletop task with pixel observations, goal images and scene variations.

    One class serves five tasks (`task=`); each is registered as `VJEPA/<Task>-v0` with a
    50-step `TimeLimit`. All tasks share one scene: the Fetch arm, a table, one object and a
    visual distractor, seen by a camera looking down at the workspace.

    **Action space**: `Box(-1, 1, (4,), float32)`, Fetch's: `[dx, dy, dz, grip]`. The first three
    move the end-effector target by `0.05 * a` metres per step (world frame); `grip` sets the
    finger position targets relative to the current opening (+1 opens, -1 closes). The gripper
    orientation is fixed (pointing down). One step is 20 physics steps of 2 ms (0.04 s, 25 Hz).

    **Observation**: a `Dict` with
    - `image`: `(S, S, 3)` uint8 RGB frame of the task camera (S = `image_size`, default 128);
    - `state`: `(4,)` float32 proprio: gripper xyz (m, world frame) and gripper opening
      (finger gap in m, 0 closed .. 0.1 open);
    - `observation`: Fetch's `(25,)` float64 state vector (privileged; for baselines/debugging);
    - `achieved_goal`: `(3,)` float64: the gripper position (reach) or the object position;
    - `desired_goal`: `(3,)` float64 goal position.

    **Start state**: the arm at Fetch's start pose (gripper about 0.2 m above the table), the
    object resting on the table at a uniform position within +-0.15 m of the gripper's xy, at
    least 0.1 m from it, yaw within +-0.3 rad. For reach-with-object the object starts held in the
    closed gripper, 0.05-0.15 m above the table. The scene variation is drawn first.

    **Goals** (all within +-0.15 m of the start gripper xy):
    - `reach`: the gripper at a point 0.10-0.30 m above the table.
    - `push`: the object resting on the table, 0.08-0.25 m from its start.
    - `grasp`: the object held between both fingers, lifted 0.10 m above its start.
    - `reach_with_object`: the held object at a point 0.03-0.20 m above its resting height.
    - `pick_and_place`: the object at a point on the table (half the episodes) or in the air
      (0.03-0.20 m up); sub-goals `pregrasp` (the open fingers lowered around the resting
      object), `grasp` (held and lifted 0.10 m at its start) and `near_goal` (held 0.06 m above
      the goal).
    - `grasp` has the sub-goal `pregrasp` too.

    **Success** (`info["is_success"]`, also `envs.tasks.is_success`): the achieved goal within
    0.05 m of the desired goal; for `grasp` and `reach_with_object` the object must also touch
    both fingers (`info["grasped"]`). Reward: Fetch's sparse reward (0 on success, else -1).

    **Episode end**: never terminated (the goal may be left again, as in Fetch); truncated by the
    registered `TimeLimit` after 50 steps.

    **Goal images**: at reset, every goal configuration is simulated (object and gripper driven to
    it and settled, from the episode's start state) and rendered with the same camera and scene,
    then the simulator is restored exactly. `info["goal_image"]` (the final goal) and
    `info["goal_images"]` (name -> image, in planning order) hold them at reset;
    `goal_image(name)` returns them later. No goal marker is drawn in any frame.

    **Variations**: `info["variation"]` at reset holds the sampled scene values (see
    `envs.variations`); `heldout` never shares a value with `train` or `wide`.

    **Version history**: v0: initial release.

    Args:
        task: one of `envs.tasks.TASK_NAMES`.
        variation: `"train"`, `"wide"` or `"heldout"` scene-variation set.
        image_size: side of the square camera frame in pixels.
        render_mode: `"rgb_array"` (the camera frame) or `None`.
        reward_type: `"sparse"` (Fetch default) or `"dense"` (negative distance).
        pixels: if False, no frame is rendered: `image` and the goal images are all zeros.
            For fast scripted rollouts whose images are not needed (tests, success-rate checks).

    Example:

    ```python
    import gymnasium as gym
    import envs

    env = gym.make("VJEPA/PickAndPlace-v0", variation="heldout", image_size=128)
    obs, info = env.reset(seed=0)
    goals = info["goal_images"]  # {"pregrasp": ..., "grasp": ..., "near_goal": ..., "goal": ...}
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    ```
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        task: str = "reach",
        variation: str = "train",
        image_size: int = 128,
        render_mode: str | None = "rgb_array",
        reward_type: str = "sparse",
        pixels: bool = True,
    ):
        self.spec_task = tasks_lib.get_task(task)
        self.variation_set = variations_lib.get_variation_set(variation)
        if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 1024:
            raise ValueError(f"image_size must be an integer in [16, 1024]; received {image_size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None; received {render_mode!r}")
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense'; received {reward_type!r}")
        self.image_size = int(image_size)
        self.pixels = bool(pixels)
        self._renderer = None
        self._goal_images: dict[str, np.ndarray] = {}
        self._goal_states: dict[str, np.ndarray] = {}
        self._variation: dict = {}
        self._object_half_size = 0.025
        super().__init__(
            model_path=str(SCENE_XML),
            has_object=True,
            block_gripper=False,
            n_substeps=20,
            gripper_extra_height=0.2,
            target_in_the_air=True,
            target_offset=0.0,
            obj_range=WORKSPACE_RANGE,
            target_range=WORKSPACE_RANGE,
            distance_threshold=tasks_lib.SUCCESS_THRESHOLD,
            initial_qpos=dict(_INITIAL_QPOS),
            reward_type=reward_type,
            render_mode=render_mode,
            width=self.image_size,
            height=self.image_size,
        )
        size = self.image_size
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "state": spaces.Box(-np.inf, np.inf, (4,), np.float32),
                "observation": spaces.Box(-np.inf, np.inf, (25,), np.float64),
                "achieved_goal": spaces.Box(-np.inf, np.inf, (3,), np.float64),
                "desired_goal": spaces.Box(-np.inf, np.inf, (3,), np.float64),
            }
        )

    # ------------------------------------------------------------------ simulation set-up

    def _initialize_simulation(self):
        xml = SCENE_XML.read_text()
        xml = xml.replace("{FETCH}", str(FETCH_ASSETS)).replace(
            "{OFFSIZE}", str(max(640, self.image_size))
        )
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._model_names = self._utils.MujocoModelNames(self.model)
        self._ids = _SceneIds(self.model)
        # Markers (goal/object sites, the mocap's axis lines) go to a group the camera never draws.
        self.model.site_group[:] = HIDDEN_GROUP
        self.model.geom_group[self.model.body_geomadr[self._ids.mocap_body] :][
            : self.model.body_geomnum[self._ids.mocap_body]
        ] = HIDDEN_GROUP
        self._base_light_pos = self.model.light_pos[self._ids.light].copy()

        self._env_setup(initial_qpos=self.initial_qpos)
        self.initial_time = self.data.time
        self.initial_qpos = np.copy(self.data.qpos)
        self.initial_qvel = np.copy(self.data.qvel)
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._state_size = mujoco.mj_stateSize(self.model, self._state_spec)
        # Lowest reachable grip-site height: the fingertips stop on the table below it.
        self._finger_reach = self._grip_pos()[2] - min(
            _geom_bottom(self.data, self.model, g) for g in self._ids.finger_geoms
        )
        self._scene_option = mujoco.MjvOption()
        if self.pixels:
            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Resets scene variation, start state and goal; returns `(obs, info)`.

        `info` holds `is_success`, `grasped`, `distance`, `variation`, `goal_image` and
        `goal_images`.
        """
        super(MujocoFetchEnv.__mro__[2], self).reset(seed=seed)  # GoalEnv.reset: seeding, checks
        self._variation = self.variation_set.sample(self.np_random)
        self._apply_variation(self._variation)
        self._reset_start_state()
        self.goal = self._sample_goal()
        self._goal_images, self._goal_states = self._simulate_goals()
        obs = self._get_obs()
        info = self._step_info(obs)
        info["variation"] = dict(self._variation)
        info["goal_images"] = {k: v.copy() for k, v in self._goal_images.items()}
        info["goal_image"] = self._goal_images["goal"].copy()
        return obs, info

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape (4,); received {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite; received {action}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        self._set_action(action)
        self._mujoco_step(action)
        self._step_callback()
        obs = self._get_obs()
        info = self._step_info(obs)
        reward = float(self.compute_reward(obs["achieved_goal"], self.goal, info))
        return obs, reward, False, False, info

    def render(self):
        """Returns the task camera's RGB frame `(S, S, 3)` uint8 (no goal marker)."""
        if self.render_mode is None:
            return None
        return self._render_frame()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()

    def compute_reward(self, achieved_goal, goal, info):
        """Fetch's reward from goals (batched like them); uses `info["grasped"]` when required."""
        grasped = None
        if self.spec_task.requires_grasp and info is not None:
            grasped = _info_field(info, "grasped")
        if self.reward_type == "dense":
            return -tasks_lib.goal_distance(achieved_goal, goal)
        return tasks_lib.sparse_reward(achieved_goal, goal, self.distance_threshold, grasped)

    # ------------------------------------------------------------------ public helpers

    @property
    def task(self) -> str:
        return self.spec_task.name

    def goal_image(self, name: str = "goal") -> np.ndarray:
        """Returns this episode's goal image `name` (`"goal"`, or a sub-goal), `(S, S, 3)` uint8."""
        if name not in self._goal_images:
            raise KeyError(
                f"no goal image {name!r} for task {self.task!r}; available: "
                f"{', '.join(self._goal_images) or 'none before reset'}"
            )
        return self._goal_images[name].copy()

    def goal_sim_state(self, name: str = "goal") -> np.ndarray:
        """Returns the simulator state (mjSTATE_INTEGRATION) the goal image `name` was rendered in."""
        return self._goal_states[name].copy()

    def get_sim_state(self) -> np.ndarray:
        """Returns the full integration state of the simulator (to restore it exactly later)."""
        state = np.empty(self._state_size)
        mujoco.mj_getState(self.model, self.data, state, self._state_spec)
        return state

    def set_sim_state(self, state: np.ndarray) -> None:
        """Restores a state from `get_sim_state` (scene variation and goal are not changed)."""
        mujoco.mj_setState(self.model, self.data, np.asarray(state, np.float64), self._state_spec)
        mujoco.mj_forward(self.model, self.data)

    def privileged_state(self) -> dict:
        """Simulator quantities the scripted policies use (never given to learned agents)."""
        return {
            "grip_pos": self._grip_pos().copy(),
            "object_pos": self._object_pos().copy(),
            "gripper_opening": float(self._gripper_opening()),
            "object_half_size": float(self._object_half_size),
            "goal": self.goal.copy(),
            "grasped": self._grasped(),
            "table_top": TABLE_TOP,
            "min_grip_z": self._min_grip_z(),
            "workspace_center": self.initial_gripper_xpos[:2].copy(),
            "task": self.task,
        }

    # ------------------------------------------------------------------ observations

    def _get_obs(self):
        fetch = super()._get_obs()  # Fetch's vector; achieved_goal = object position
        grip = self._grip_pos()
        achieved = grip.copy() if self.spec_task.achieved == "gripper" else self._object_pos().copy()
        state = np.array([*grip, self._gripper_opening()], dtype=np.float32)
        return {
            "image": self._render_frame(),
            "state": state,
            "observation": fetch["observation"].astype(np.float64),
            "achieved_goal": achieved.astype(np.float64),
            "desired_goal": np.asarray(self.goal, np.float64).reshape(-1).copy()
            if np.size(self.goal) == 3
            else np.zeros(3),
        }

    def _step_info(self, obs) -> dict:
        grasped = self._grasped()
        need = grasped if self.spec_task.requires_grasp else None
        return {
            "is_success": tasks_lib.is_success(
                obs["achieved_goal"], obs["desired_goal"], self.distance_threshold, need
            ),
            "grasped": grasped,
            "distance": float(tasks_lib.goal_distance(obs["achieved_goal"], obs["desired_goal"])),
        }

    def _render_frame(self) -> np.ndarray:
        if not self.pixels:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        self._renderer.update_scene(self.data, camera=self._ids.camera, scene_option=self._scene_option)
        return self._renderer.render().copy()

    def _render_callback(self):
        # Fetch moves its goal-marker site here; this scene draws no marker.
        pass

    # ------------------------------------------------------------------ simulator queries

    def _grip_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._ids.grip_site]

    def _object_pos(self) -> np.ndarray:
        return self.data.xpos[self._ids.object_body]

    def _gripper_opening(self) -> float:
        return float(self.data.qpos[self._ids.finger_qpos].sum())

    def _min_grip_z(self) -> float:
        return TABLE_TOP + self._finger_reach + 0.004

    def _grasped(self) -> bool:
        """Whether the object touches both fingers (it is held between them)."""
        touching = set()
        object_geoms = self._ids.object_geoms
        for contact in self.data.contact[: self.data.ncon]:
            g1, g2 = int(contact.geom1), int(contact.geom2)
            if g1 in object_geoms:
                touching.add(g2)
            elif g2 in object_geoms:
                touching.add(g1)
        return all(g in touching for g in self._ids.finger_geoms)

    # ------------------------------------------------------------------ variations

    def _apply_variation(self, v: dict) -> None:
        m, ids = self.model, self._ids
        half = v["object_half_size"]
        self._object_half_size = half
        shape = v["object_shape"]
        main, extra = ids.object_geoms
        if shape == "cylinder":
            _set_geom(m, main, mujoco.mjtGeom.mjGEOM_CYLINDER, [half, half, 0.0])
        else:
            _set_geom(m, main, mujoco.mjtGeom.mjGEOM_BOX, [half, half, half])
        # The star: a second, smaller box turned 45 degrees whose corners poke out 20% past
        # the first box's faces (union of the two = an eight-pointed star prism).
        b = half * 1.2 / np.sqrt(2.0)
        _set_geom(m, extra, mujoco.mjtGeom.mjGEOM_BOX, [b, b, half])
        _enable_geom(m, extra, shape == "star_prism")
        m.mat_rgba[ids.object_mat] = variations_lib.hsv_to_rgba(
            v["object_hue"], v["object_saturation"], v["object_value"]
        )
        table_rgba = variations_lib.hsv_to_rgba(v["table_hue"], v["table_saturation"], v["table_value"])
        table_mat = ids.table_finish_mats[v["table_finish"]]
        m.geom_matid[ids.table_geom] = table_mat
        m.mat_rgba[table_mat] = table_rgba
        # Light: intensity and a tilt away from vertical, at a random heading.
        d = v["light_diffuse"]
        m.light_diffuse[ids.light] = [d, d, d]
        tilt = np.deg2rad(v["light_tilt_deg"])
        heading = self.np_random.uniform(0.0, 2.0 * np.pi)
        m.light_dir[ids.light] = [
            np.sin(tilt) * np.cos(heading),
            np.sin(tilt) * np.sin(heading),
            -np.cos(tilt),
        ]
        # Distractor: visual only, off to one side of the workspace.
        dshape = v["distractor_shape"]
        dsize = {
            "sphere": [0.03, 0.0, 0.0],
            "box": [0.028, 0.028, 0.028],
            "capsule": [0.022, 0.04, 0.0],
            "ellipsoid": [0.045, 0.028, 0.025],
        }[dshape]
        dtype = {
            "sphere": mujoco.mjtGeom.mjGEOM_SPHERE,
            "box": mujoco.mjtGeom.mjGEOM_BOX,
            "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
            "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID,
        }[dshape]
        _set_geom(m, ids.distractor_geom, dtype, dsize)
        m.mat_rgba[ids.distractor_mat] = variations_lib.hsv_to_rgba(v["distractor_hue"], 0.7, 0.8)
        # A lying capsule/ellipsoid (axis along x) rests on the table without a joint.
        m.geom_quat[ids.distractor_geom] = (
            [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0] if dshape == "capsule" else [1, 0, 0, 0]
        )
        resting = dsize[0] if dshape in ("sphere", "capsule") else dsize[2]
        # Behind the workspace as the camera sees it, so it never hides the object or gripper.
        center = self.initial_gripper_xpos[:2]
        m.body_pos[ids.distractor_body] = [
            center[0] + self.np_random.uniform(-0.14, 0.14),
            center[1] - self.np_random.uniform(0.23, 0.29),
            TABLE_TOP + resting,
        ]
        # Camera: orbit the workspace centre; looks down at `elevation` degrees.
        lookat = np.array([center[0] - 0.02, center[1] - 0.03, TABLE_TOP + 0.08])
        # Seen from the side (+y), the arm enters from the left and never hides the gripper.
        az = np.deg2rad(CAMERA_AZIMUTH_DEG + v["camera_azimuth_deg"])
        el = np.deg2rad(v["camera_elevation_deg"])
        dist = v["camera_distance"]
        offset = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        m.cam_pos[ids.camera] = lookat + dist * offset
        m.cam_quat[ids.camera] = _look_at_quat(-offset)

    # ------------------------------------------------------------------ start states and goals

    def _reset_start_state(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.data.time = self.initial_time
        self.data.qpos[:] = self.initial_qpos
        self.data.qvel[:] = self.initial_qvel
        mujoco.mj_forward(self.model, self.data)
        # mj_resetData zeroes the mocap pose; re-weld it to the gripper with Fetch's fixed
        # downward orientation, or the first steps would twist the wrist.
        self._utils.reset_mocap2body_xpos(self.model, self.data)
        self.data.mocap_quat[0] = [1.0, 0.0, 1.0, 0.0]
        rest_z = TABLE_TOP + self._object_half_size
        center = self.initial_gripper_xpos[:2]
        yaw = self.np_random.uniform(-0.3, 0.3)
        if self.task == "reach_with_object":
            xy = center + self.np_random.uniform(-0.10, 0.10, size=2)
            self._place_object(np.array([*xy, rest_z]), yaw)
            lift = self.np_random.uniform(0.05, 0.15)
            self._simulate_holding(np.array([*xy, rest_z + lift]))
            return
        xy = center.copy()
        while np.linalg.norm(xy - center) < 0.1:
            xy = center + self.np_random.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
        self._place_object(np.array([*xy, rest_z]), yaw)
        mujoco.mj_forward(self.model, self.data)

    def _sample_goal(self) -> np.ndarray:
        rng = self.np_random
        center = self.initial_gripper_xpos[:2]
        rest_z = TABLE_TOP + self._object_half_size
        obj = self._object_pos().copy()
        task = self.task
        if task == "reach":
            xy = center + rng.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
            return np.array([*xy, TABLE_TOP + rng.uniform(0.10, 0.30)])
        if task == "grasp":
            return np.array([obj[0], obj[1], rest_z + LIFT_HEIGHT])
        while True:
            xy = center + rng.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
            if task == "push":
                if 0.08 <= np.linalg.norm(xy - obj[:2]) <= 0.25:
                    return np.array([*xy, rest_z])
                continue
            if task == "reach_with_object":
                goal = np.array([*xy, rest_z + rng.uniform(0.03, 0.20)])
            else:  # pick_and_place: on the table or in the air, like FetchPickAndPlace
                z = rest_z + (rng.uniform(0.03, 0.20) if rng.uniform() < 0.5 else 0.0)
                goal = np.array([*xy, z])
            if np.linalg.norm(goal - obj) >= MIN_GOAL_SEPARATION:
                return goal

    def _simulate_goals(self) -> tuple[dict, dict]:
        """Drives the simulator into each goal configuration, renders it, then restores it."""
        start = self.get_sim_state()
        images, states = {}, {}
        obj = self._object_pos().copy()
        for name in self.spec_task.goal_names:
            self.set_sim_state(start)
            if self.task == "reach":
                self._drive_gripper(self.goal, grip_ctrl=None)
            elif self.task == "push":
                self._place_object(self.goal, yaw=None)
                above = self.goal + [0.0, 0.0, self._object_half_size + 0.05]
                self._drive_gripper(above, grip_ctrl=0.0, pin=self.goal)
            elif name == "pregrasp":
                self._simulate_pregrasp(obj)
            elif name == "grasp":
                self._simulate_holding(np.array([obj[0], obj[1], obj[2] + LIFT_HEIGHT]))
            elif name == "near_goal":
                self._simulate_holding(self.goal + [0.0, 0.0, NEAR_GOAL_HEIGHT])
            else:
                self._simulate_holding(self.goal)
            # Positions derived from qpos lag one physics step until mj_forward.
            mujoco.mj_forward(self.model, self.data)
            states[name] = self.get_sim_state()
            images[name] = self._render_frame()
        self.set_sim_state(start)
        return images, states

    def _place_object(self, pos: np.ndarray, yaw: float | None) -> None:
        qpos = self._utils.get_joint_qpos(self.model, self.data, "object0:joint").copy()
        qpos[:3] = pos
        if yaw is not None:
            qpos[3:] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self._utils.set_joint_qpos(self.model, self.data, "object0:joint", qpos)
        self._utils.set_joint_qvel(self.model, self.data, "object0:joint", np.zeros(6))
        mujoco.mj_forward(self.model, self.data)

    def _drive_gripper(self, target, grip_ctrl, steps=SETTLE_STEPS, pin=None) -> None:
        """Moves the grip site to `target` through the mocap weld, optionally pinning the object.

        Args:
            target: grip-site position (m); clipped to the reachable height above the table.
            grip_ctrl: finger position target (0 closed .. 0.05 open) or None to keep the current.
            steps: env steps (20 physics steps each) to simulate.
            pin: object position held fixed (zero velocity) after each step, or None.
        """
        target = np.asarray(target, np.float64).copy()
        target[2] = max(target[2], self._min_grip_z())
        pinned = None
        if pin is not None:
            pinned = self._utils.get_joint_qpos(self.model, self.data, "object0:joint").copy()
            pinned[:3] = pin
        for _ in range(steps):
            # Re-aim the mocap by the remaining error: converges despite the weld's softness.
            self.data.mocap_pos[0] += target - self._grip_pos()
            if grip_ctrl is not None:
                self.data.ctrl[self._ids.finger_actuators] = grip_ctrl
            mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
            if pinned is not None:
                self._utils.set_joint_qpos(self.model, self.data, "object0:joint", pinned)
                self._utils.set_joint_qvel(self.model, self.data, "object0:joint", np.zeros(6))
                mujoco.mj_forward(self.model, self.data)

    @contextlib.contextmanager
    def _object_contacts_off(self):
        """Lets the arm pass through the object inside the block; its contacts come back after."""
        geoms = self._ids.object_active_geoms(self.model)
        for g in geoms:
            self.model.geom_contype[g] = self.model.geom_conaffinity[g] = 0
        try:
            yield
        finally:
            for g in geoms:
                self.model.geom_contype[g] = self.model.geom_conaffinity[g] = 1

    def _simulate_pregrasp(self, object_pos: np.ndarray) -> None:
        """Simulates the open fingers lowered around the object resting at `object_pos`."""
        object_pos = np.asarray(object_pos, np.float64)
        target = np.array([object_pos[0], object_pos[1], max(object_pos[2], self._min_grip_z())])
        with self._object_contacts_off():
            self._drive_gripper(target, grip_ctrl=0.05, pin=object_pos)
        self._drive_gripper(target, grip_ctrl=0.05, steps=2, pin=object_pos)
        mujoco.mj_forward(self.model, self.data)

    def _simulate_holding(self, object_pos: np.ndarray) -> None:
        """Simulates the object held between the closed fingers at `object_pos` and settles it."""
        object_pos = np.asarray(object_pos, np.float64)
        grip_target = object_pos.copy()
        # Fingers open around the object with its contacts off, so the arm can pass through it.
        with self._object_contacts_off():
            self._place_object(object_pos, yaw=None)
            self._drive_gripper(grip_target, grip_ctrl=0.05, pin=object_pos)
        self._drive_gripper(grip_target, grip_ctrl=0.0, steps=4, pin=object_pos)
        self._drive_gripper(grip_target, grip_ctrl=0.0, steps=4)
        mujoco.mj_forward(self.model, self.data)


class _SceneIds:
    """Indices of the named model elements this env touches."""

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
        self.table_mat = gid(o.mjOBJ_MATERIAL, "vj_table_mat")
        self.table_checker_mat = gid(o.mjOBJ_MATERIAL, "vj_table_checker_mat")
        self.table_finish_mats = {
            "plain": self.table_mat, "checker": self.table_checker_mat,
            "speckle": gid(o.mjOBJ_MATERIAL, "vj_table_speckle_mat")}
        self.object_mat = gid(o.mjOBJ_MATERIAL, "vj_object_mat")
        self.distractor_body = gid(o.mjOBJ_BODY, "distractor0")
        self.distractor_geom = gid(o.mjOBJ_GEOM, "distractor0")
        self.distractor_mat = gid(o.mjOBJ_MATERIAL, "vj_distractor_mat")
        self.light = gid(o.mjOBJ_LIGHT, "light0")
        self.camera = gid(o.mjOBJ_CAMERA, "vjepa_cam")

    def object_active_geoms(self, model):
        return [g for g in self.object_geoms if model.geom_group[g] != HIDDEN_GROUP]


def _set_geom(model, geom: int, geom_type, size) -> None:
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


def _enable_geom(model, geom: int, enabled: bool) -> None:
    model.geom_contype[geom] = model.geom_conaffinity[geom] = 1 if enabled else 0
    model.geom_group[geom] = 0 if enabled else HIDDEN_GROUP


def _geom_bottom(data, model, geom: int) -> float:
    """Lowest world z of a box geom."""
    extent = np.abs(data.geom_xmat[geom].reshape(3, 3)) @ model.geom_size[geom]
    return float(data.geom_xpos[geom][2] - extent[2])


def _look_at_quat(forward: np.ndarray) -> np.ndarray:
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


def _info_field(info, key):
    if isinstance(info, dict):
        return info.get(key)
    return np.array([i.get(key) for i in info])  # a batch of info dicts (HER relabelling)
