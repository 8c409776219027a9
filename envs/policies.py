"""Scripted policies: a noisy expert per task and an exploratory play policy.

The policies read privileged simulator state (`env.unwrapped.privileged_state()`), never the
camera, and return Fetch actions `[dx, dy, dz, grip]` in [-1, 1] (float32). They are used to
collect robot logs whose actions look like a robot's: experts finish the task most of the time
(their Gaussian action noise makes them fail now and then), and the play policy wanders, opens
and closes the gripper, and now and then grasps and lifts the object.

Each policy owns a `numpy.random.Generator` seeded through `reset(seed)`, so an episode
(env seed, policy seed) is reproducible.

Example:

```python
import gymnasium as gym
import envs
from envs.policies import make_policy

env = gym.make("VJEPA/Push-v0")
policy = make_policy("push", env, noise=0.1)
obs, info = env.reset(seed=3)
policy.reset(seed=3)
for _ in range(50):
    obs, reward, terminated, truncated, info = env.step(policy(obs))
```
"""
from __future__ import annotations

import abc

import numpy as np

from envs import tasks as tasks_lib
from vjepa2.errors import UsageError

STEP_METRES = 0.05  # Fetch scales position actions by this many metres per step
DEFAULT_NOISE = 0.1  # std of the Gaussian noise on the expert's xyz action
OPEN, CLOSE = 1.0, -1.0
POLICY_NAMES = (*tasks_lib.TASK_NAMES, "play")
PLAY_INSTRUCTION = "play with the object: move around, open and close the gripper, grasp and lift it"


def _toward(current, target, max_speed=1.0) -> np.ndarray:
    """The xyz action that moves `current` toward `target`, capped at `max_speed` per axis."""
    return np.clip((np.asarray(target) - np.asarray(current)) / STEP_METRES, -max_speed, max_speed)


class ScriptedPolicy(abc.ABC):
    """Base class: holds the env, the noise level and the policy's own random generator.

    Args:
        env: the (possibly wrapped) `FetchGoalImageEnv`.
        noise: std of Gaussian noise added to the xyz part of each action (0 = clean).
        seed: seed of the policy's generator (reseeded by `reset(seed)`).
    """

    def __init__(self, env, noise: float = DEFAULT_NOISE, seed: int | None = None):
        if not np.isfinite(noise) or noise < 0:
            raise UsageError(f"noise must be a finite number >= 0; received {noise}")
        self.env = env.unwrapped
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Starts a new episode (call after `env.reset`); reseeds the generator if `seed` given."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    @property
    def instruction(self) -> str:
        """What this policy does, in words (its logs' `language_instruction`): the env's task."""
        return tasks_lib.TASKS[self.env.task].instruction

    def __call__(self, obs) -> np.ndarray:
        s = self.env.privileged_state()
        self.noise_scale = 1.0
        xyz, grip = self.act(s)
        noise = self.noise * self.noise_scale
        xyz = np.asarray(xyz, np.float64) + self.rng.normal(0.0, noise, size=3)
        return np.clip(np.array([*xyz, grip], np.float32), -1.0, 1.0)

    @abc.abstractmethod
    def act(self, s: dict) -> tuple[np.ndarray, float]:
        """Returns the clean (xyz action, gripper command) for privileged state `s`."""


class ReachExpert(ScriptedPolicy):
    """Moves the closed gripper straight to the goal."""

    def act(self, s):
        return _toward(s["grip_pos"], s["goal"]), CLOSE


class PushExpert(ScriptedPolicy):
    """Pushes the object with the closed gripper along the line from the object to the goal.

    Phases: rise and align behind the object (opposite the goal), descend to pushing height,
    push; it re-aligns whenever the gripper drifts off the pushing line.
    """

    def reset(self, seed=None):
        super().reset(seed)
        self.phase = "align"

    def act(self, s):
        grip, obj, goal, half = s["grip_pos"], s["object_pos"], s["goal"], s["object_half_size"]
        to_goal = goal[:2] - obj[:2]
        dist = np.linalg.norm(to_goal)
        if dist < 0.015:
            return np.zeros(3), CLOSE
        u = to_goal / dist
        push_z = max(obj[2], s["min_grip_z"])
        hover_z = obj[2] + half + 0.05
        behind = obj[:2] - u * (half + 0.035)
        rel = grip[:2] - obj[:2]
        lateral = abs(rel[0] * u[1] - rel[1] * u[0])
        along = rel @ u  # negative when the gripper is behind the object
        if self.phase == "push" and (lateral > 0.02 or along > -half * 0.5):
            self.phase = "align"
        if self.phase == "align":
            if grip[2] < hover_z - 0.02 and np.linalg.norm(grip[:2] - behind) > 0.02:
                return _toward(grip, [grip[0], grip[1], hover_z]), CLOSE  # rise first
            if np.linalg.norm(grip[:2] - behind) < 0.012:
                self.phase = "descend"
            return _toward(grip, [*behind, hover_z]), CLOSE
        if self.phase == "descend":
            if grip[2] < push_z + 0.012:
                self.phase = "push"
            return _toward(grip, [*behind, push_z]), CLOSE
        # Aim past the object's near face by up to 3 cm: pushes at most ~0.03 m per step.
        target = obj[:2] - u * (half + 0.012) + u * min(dist, 0.03)
        return _toward(grip, [*target, push_z], max_speed=0.7), CLOSE


class GraspExpert(ScriptedPolicy):
    """Opens above the object, descends, closes, then carries the object to the goal.

    Serves grasp (goal: lifted in place) and pick-and-place (goal: anywhere); if the object
    slips out it starts over.
    """

    def reset(self, seed=None):
        super().reset(seed)
        self.phase = "approach"
        self.closing_steps = 0

    def act(self, s):
        grip, obj, half = s["grip_pos"], s["object_pos"], s["object_half_size"]
        grasp_z = max(obj[2], s["min_grip_z"])
        if self.phase in ("lift", "carry") and not s["grasped"] and self.closing_steps > 4:
            if obj[2] < s["table_top"] + half + 0.01:  # dropped on the table: start over
                self.phase, self.closing_steps = "approach", 0
        if self.phase == "approach":
            target = [obj[0], obj[1], obj[2] + half + 0.05]
            if np.linalg.norm(grip[:2] - obj[:2]) < 0.01 and abs(grip[2] - target[2]) < 0.03:
                self.phase = "descend"
            return _toward(grip, target), OPEN
        # A careful hand near the object: the noise shrinks while descending and closing.
        if self.phase == "descend":
            self.noise_scale = 0.3
            target = [obj[0], obj[1], grasp_z]
            if abs(grip[2] - grasp_z) < 0.006:
                self.phase = "close"
            return _toward(grip, target), OPEN
        if self.phase == "close":
            self.noise_scale = 0.0
            self.closing_steps += 1
            if self.closing_steps >= 3:
                self.phase, self.lift_z = "lift", grasp_z + 0.04
            return np.zeros(3), CLOSE
        self.closing_steps += 1
        if self.phase == "lift":
            # Straight up first: a sideways jerk right after closing shakes the object loose.
            self.noise_scale = 0.3
            if grip[2] > self.lift_z - 0.01:
                self.phase = "carry"
            return _toward(grip, [grip[0], grip[1], self.lift_z], max_speed=0.6), CLOSE
        # Carry: place the object (not the grip site) on the goal.
        target = s["goal"] + (grip - obj)
        return _toward(grip, target, max_speed=0.6), CLOSE


class CarryExpert(ScriptedPolicy):
    """Carries the already-held object to the goal, keeping the gripper closed."""

    def act(self, s):
        target = s["goal"] + (s["grip_pos"] - s["object_pos"])
        return _toward(s["grip_pos"], target, max_speed=0.8), CLOSE


class PlayPolicy(ScriptedPolicy):
    """Exploratory play: random end-effector motion, random gripper commands, and now and then
    a scripted grasp of the object followed by a lift and a random carry.

    Args:
        env: the env.
        noise: std of the Gaussian jitter on every xyz action.
        seed: seed of the generator.
        grasp_probability: chance, at each new waypoint, of a grasp-and-lift segment.
    """

    instruction = PLAY_INSTRUCTION  # not the scene's task: play ignores the goal

    def __init__(self, env, noise: float = DEFAULT_NOISE, seed=None, grasp_probability=0.3):
        super().__init__(env, noise, seed)
        if not 0.0 <= grasp_probability <= 1.0:
            raise UsageError(f"grasp_probability must be in [0, 1]; received {grasp_probability}")
        self.grasp_probability = grasp_probability
        self._grasp = GraspExpert(env, noise=0.0)

    def reset(self, seed=None):
        super().reset(seed)
        self.waypoint = None
        self.speed = 1.0
        self.grip = CLOSE
        self.mode = "wander"
        self.mode_steps = 0

    def _new_waypoint(self, s):
        center = s["workspace_center"]
        xy = center + self.rng.uniform(-0.18, 0.18, size=2)
        z = self.rng.uniform(s["min_grip_z"], s["table_top"] + 0.30)
        self.waypoint = np.array([*xy, z])
        self.speed = self.rng.uniform(0.3, 1.0)
        if self.rng.uniform() < self.grasp_probability:
            self.mode, self.mode_steps = "grasp", 0
            self._grasp.reset()
            self._grasp_goal = np.array([*xy, s["table_top"] + self.rng.uniform(0.08, 0.25)])

    def act(self, s):
        self.mode_steps += 1
        if self.mode == "grasp":
            s = dict(s, goal=self._grasp_goal)
            xyz, grip = self._grasp.act(s)
            done = np.linalg.norm(s["object_pos"] - self._grasp_goal) < 0.04
            if done or self.mode_steps > 30:
                self.mode, self.waypoint = "wander", None
                if self.rng.uniform() < 0.5:
                    self.grip = OPEN  # drop it
            return xyz, grip
        if self.waypoint is None or np.linalg.norm(s["grip_pos"] - self.waypoint) < 0.02:
            self._new_waypoint(s)
            if self.mode == "grasp":
                return self.act(s)
        if self.rng.uniform() < 0.1:
            self.grip = float(self.rng.choice([OPEN, CLOSE, 0.0]))
        return _toward(s["grip_pos"], self.waypoint, max_speed=self.speed), self.grip


_EXPERTS = {
    "reach": ReachExpert,
    "push": PushExpert,
    "grasp": GraspExpert,
    "reach_with_object": CarryExpert,
    "pick_and_place": GraspExpert,
    "play": PlayPolicy,
}


def make_policy(name: str, env, noise: float | None = None, seed: int | None = None) -> ScriptedPolicy:
    """Returns the scripted policy `name` (a task name, or `"play"`) for `env`.

    Args:
        name: one of `POLICY_NAMES`.
        env: the env it acts in (its task must match an expert's name).
        noise: xyz action noise std; None for `DEFAULT_NOISE`.
        seed: seed of the policy's own generator.
    """
    if name not in _EXPERTS:
        raise UsageError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
    task = env.unwrapped.task
    if name != "play" and name != task:
        raise UsageError(f"the {name!r} expert cannot act in the {task!r} task")
    policy = _EXPERTS[name](env, noise=DEFAULT_NOISE if noise is None else noise, seed=seed)
    policy.reset(seed)
    return policy
