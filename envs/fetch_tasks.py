"""Goal-image manipulation tasks on Gymnasium-Robotics' Fetch robot.

`FetchGoalImageEnv` subclasses Gymnasium-Robotics' `MujocoFetchEnv` (the v4 Fetch environments'
base class) rather than wrapping a Fetch env: the subclass keeps Fetch's controller, action
semantics, timing and observation vector exactly, while it must own the parts a wrapper cannot
reach cleanly: the scene model (camera, hidden markers, variable object), the start states, the
goal sampling and the simulated goal images (which save, drive and restore the simulator).

The env is the simulator side; what differs between tasks lives in one `envs.goal_tasks` class
per task, and the scene variations in `envs.scene.SceneRandomizer`.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mujoco
import numpy as np
from gymnasium import spaces

with contextlib.redirect_stdout(io.StringIO()):
    # Gymnasium-Robotics prints a notice about unrelated Adroit envs on import.
    import gymnasium_robotics
    from gymnasium_robotics.envs.fetch.fetch_env import MujocoFetchEnv

from envs import goal_tasks
from envs import tasks as tasks_lib
from envs import variations as variations_lib
from envs import views as views_lib
from envs.scene import TABLE_TOP, SceneIds, SceneRandomizer, geom_bottom, hide_markers

SCENE_XML = Path(__file__).with_name("assets") / "scene.xml"
FETCH_ASSETS = Path(gymnasium_robotics.__file__).parent / "envs" / "assets" / "fetch"

SETTLE_STEPS = 8  # env steps for the gripper to reach a teleported mocap target

_INITIAL_QPOS = {
    "robot0:slide0": 0.405,
    "robot0:slide1": 0.48,
    "robot0:slide2": 0.0,
    "object0:joint": [1.25, 0.53, 0.4, 1.0, 0.0, 0.0, 0.0],
}


class FetchGoalImageEnv(MujocoFetchEnv):
    """Fetch tabletop task with pixel observations, goal images and scene variations.

    One class serves five tasks (`task=`, each an `envs.goal_tasks` class); each is registered
    as `VJEPA/<Task>-v0` with a 50-step `TimeLimit`. All tasks share one scene: the Fetch arm, a
    table, one object and a visual distractor, seen by a camera looking down at the workspace.

    **Action space**: `Box(-1, 1, (4,), float32)`, Fetch's: `[dx, dy, dz, grip]`. The first three
    move the end-effector target by `0.05 * a` metres per step (world frame); `grip` sets the
    finger position targets relative to the current opening (+1 opens, -1 closes). The gripper
    orientation is fixed (pointing down). One step is 20 physics steps of 2 ms (0.04 s, 25 Hz).

    **Observation**: a `Dict` with
    - `image`: `(S, S, 3)` uint8 RGB frame of the view (S = `image_size`, default 128);
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

    **Version history**: v0: initial release; `view` added (default `scene`, as before).

    Args:
        task: one of `envs.tasks.TASK_NAMES`.
        variation: `"train"`, `"wide"` or `"heldout"` scene-variation set.
        image_size: side of the square camera frame in pixels.
        render_mode: `"rgb_array"` (the camera frame) or `None`.
        reward_type: `"sparse"` (Fetch default) or `"dense"` (negative distance).
        pixels: if False, no frame is rendered: `image` and the goal images are all zeros.
            For fast scripted rollouts whose images are not needed (tests, success-rate checks).
        view: what the camera sees, one of `envs.views.VIEWS` (`scene+wrist`: `S x 2S` frames).

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
        view: str = "scene",
    ):
        self.goal_task = goal_tasks.make_task(task)
        self.variation_set = variations_lib.get_variation_set(variation)
        if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 1024:
            raise ValueError(f"image_size must be an integer in [16, 1024]; received {image_size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None; received {render_mode!r}")
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense'; received {reward_type!r}")
        self.image_size = int(image_size)
        self.view = views_lib.check_view(view)
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
            obj_range=goal_tasks.WORKSPACE_RANGE,
            target_range=goal_tasks.WORKSPACE_RANGE,
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
                "image": spaces.Box(0, 255, views_lib.frame_shape(self.view, size), np.uint8),
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
        self._ids = SceneIds(self.model)
        hide_markers(self.model, self._ids)
        self._scene = SceneRandomizer(self.model, self._ids, self.variation_set)

        self._env_setup(initial_qpos=self.initial_qpos)
        self.initial_time = self.data.time
        self.initial_qpos = np.copy(self.data.qpos)
        self.initial_qvel = np.copy(self.data.qvel)
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._state_size = mujoco.mj_stateSize(self.model, self._state_spec)
        # Lowest reachable grip-site height: the fingertips stop on the table below it.
        self._finger_reach = self._grip_pos()[2] - min(
            geom_bottom(self.data, self.model, g) for g in self._ids.finger_geoms
        )
        if self.pixels:
            self._renderer = views_lib.ViewRenderer(self.model, self.view, self.image_size)

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Resets scene variation, start state and goal; returns `(obs, info)`.

        `info` holds `is_success`, `grasped`, `distance`, `variation`, `goal_image` and
        `goal_images`.
        """
        # BaseRobotEnv.reset: seeding and checks, and also Fetch's own object placement and a
        # goal draw (`_sample_goal`) in the previous scene. Both are overwritten below, but
        # their draws are part of every seed's sequence: dropping them changes every episode.
        super(MujocoFetchEnv.__mro__[2], self).reset(seed=seed)
        self._variation = self._scene.randomize(self.np_random, self.workspace_center)
        self._object_half_size = self._variation["object_half_size"]
        self._reset_arm()
        self.goal_task.reset_start_state(self, self.np_random)
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
        if self.goal_task.requires_grasp and info is not None:
            grasped = _info_field(info, "grasped")
        if self.reward_type == "dense":
            return -tasks_lib.goal_distance(achieved_goal, goal)
        return tasks_lib.sparse_reward(achieved_goal, goal, self.distance_threshold, grasped)

    # ------------------------------------------------------------------ public helpers

    @property
    def task(self) -> str:
        return self.goal_task.name

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
        achieved = self.goal_task.achieved_goal(self)
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
        return {
            "is_success": self.goal_task.is_success(
                obs["achieved_goal"], obs["desired_goal"], self.distance_threshold, grasped
            ),
            "grasped": grasped,
            "distance": float(tasks_lib.goal_distance(obs["achieved_goal"], obs["desired_goal"])),
        }

    def _render_frame(self) -> np.ndarray:
        if not self.pixels:
            return np.zeros(views_lib.frame_shape(self.view, self.image_size), np.uint8)
        return self._renderer.render(self.data, self._grip_pos())

    def _render_callback(self):
        # Fetch moves its goal-marker site here; this scene draws no marker.
        pass

    # ------------------------------------------------------------------ simulator queries

    @property
    def workspace_center(self) -> np.ndarray:
        """`(2,)` xy of the start gripper position (m): the centre of objects' and goals' square."""
        return self.initial_gripper_xpos[:2]

    @property
    def object_half_size(self) -> float:
        """This episode's object half extent (m): its centre rests this far above the table."""
        return self._object_half_size

    def gripper_position(self) -> np.ndarray:
        """A copy of the grip site's `(3,)` world position (m)."""
        return self._grip_pos().copy()

    def object_position(self) -> np.ndarray:
        """A copy of the object's `(3,)` world position (m)."""
        return self._object_pos().copy()

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

    # ------------------------------------------------------------------ scene operations
    # The task objects (`envs.goal_tasks`) set up start states and goal configurations with these.

    def _reset_arm(self) -> None:
        """The arm at Fetch's start pose, everything at rest (before the task places the object)."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.time = self.initial_time
        self.data.qpos[:] = self.initial_qpos
        self.data.qvel[:] = self.initial_qvel
        mujoco.mj_forward(self.model, self.data)
        # mj_resetData zeroes the mocap pose; re-weld it to the gripper with Fetch's fixed
        # downward orientation, or the first steps would twist the wrist.
        self._utils.reset_mocap2body_xpos(self.model, self.data)
        self.data.mocap_quat[0] = [1.0, 0.0, 1.0, 0.0]

    def _sample_goal(self) -> np.ndarray:
        # Fetch's reset calls it too (see `reset`), so it must stay this task's goal draw.
        return self.goal_task.sample_goal(self, self.np_random)

    def _simulate_goals(self) -> tuple[dict, dict]:
        """Drives the simulator into each goal configuration, renders it, then restores it."""
        start = self.get_sim_state()
        images, states = {}, {}
        configurations = self.goal_task.goal_configurations(self, self.object_position())
        for name, drive in configurations.items():
            self.set_sim_state(start)
            drive()
            # Positions derived from qpos lag one physics step until mj_forward.
            mujoco.mj_forward(self.model, self.data)
            states[name] = self.get_sim_state()
            images[name] = self._render_frame()
        self.set_sim_state(start)
        return images, states

    def place_object(self, pos: np.ndarray, yaw: float | None) -> None:
        """Teleports the object to `pos` (m) at rest; `yaw` (rad) about z, or None to keep it."""
        qpos = self._utils.get_joint_qpos(self.model, self.data, "object0:joint").copy()
        qpos[:3] = pos
        if yaw is not None:
            qpos[3:] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self._utils.set_joint_qpos(self.model, self.data, "object0:joint", qpos)
        self._utils.set_joint_qvel(self.model, self.data, "object0:joint", np.zeros(6))
        mujoco.mj_forward(self.model, self.data)

    def drive_gripper(self, target, grip_ctrl, steps=SETTLE_STEPS, pin=None) -> None:
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

    def simulate_pregrasp(self, object_pos: np.ndarray) -> None:
        """Simulates the open fingers lowered around the object resting at `object_pos`."""
        object_pos = np.asarray(object_pos, np.float64)
        target = np.array([object_pos[0], object_pos[1], max(object_pos[2], self._min_grip_z())])
        with self._object_contacts_off():
            self.drive_gripper(target, grip_ctrl=0.05, pin=object_pos)
        self.drive_gripper(target, grip_ctrl=0.05, steps=2, pin=object_pos)
        mujoco.mj_forward(self.model, self.data)

    def simulate_holding(self, object_pos: np.ndarray) -> None:
        """Simulates the object held between the closed fingers at `object_pos` and settles it."""
        object_pos = np.asarray(object_pos, np.float64)
        grip_target = object_pos.copy()
        # Fingers open around the object with its contacts off, so the arm can pass through it.
        with self._object_contacts_off():
            self.place_object(object_pos, yaw=None)
            self.drive_gripper(grip_target, grip_ctrl=0.05, pin=object_pos)
        self.drive_gripper(grip_target, grip_ctrl=0.0, steps=4, pin=object_pos)
        self.drive_gripper(grip_target, grip_ctrl=0.0, steps=4)
        mujoco.mj_forward(self.model, self.data)


def _info_field(info, key):
    if isinstance(info, dict):
        return info.get(key)
    return np.array([i.get(key) for i in info])  # a batch of info dicts (HER relabelling)
