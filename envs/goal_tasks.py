"""The goal-image tasks: one class per task, as `envs.policies` has one expert per task.

A task object owns what differs between tasks: the start state (after the arm's reset), the
goal sampling, the goal configurations whose renders become the goal images (the sub-goals
`pregrasp`, `grasp`, `near_goal` and the final `goal`), and what success measures. It holds no
state of its own: it acts on the `FetchGoalImageEnv` passed in, through the env's scene
operations (`place_object`, `drive_gripper`, `simulate_pregrasp`, `simulate_holding`), and
draws from the env's generator only, so a seed fixes the episode.

The static description of each task (names, ids, goal names) is `envs.tasks.TaskSpec`, which
imports no simulator; each class here points at its spec.

Example:

```python
import gymnasium as gym
import envs
from envs.goal_tasks import make_task

task = make_task("pick_and_place")
env = gym.make(task.spec.env_id).unwrapped
obs, info = env.reset(seed=0)
list(info["goal_images"]) == list(task.spec.goal_names)  # True
```
"""
from __future__ import annotations

import abc
from typing import Callable

import mujoco
import numpy as np

from envs import tasks as tasks_lib
from envs.scene import TABLE_TOP

WORKSPACE_RANGE = 0.15  # half side of the square (around the start gripper xy) holding objects/goals
MIN_START_DISTANCE = 0.1  # metres between the start gripper xy and the resting object's xy
MIN_GOAL_SEPARATION = 0.08  # metres between start and goal positions, so no episode starts solved
LIFT_HEIGHT = 0.10  # grasp goals: object lifted this far above its start
NEAR_GOAL_HEIGHT = 0.06  # pick-and-place sub-goal: object held this far above the goal


class GoalTask(abc.ABC):
    """Base class of a goal-image task: start state, goal, goal configurations and success.

    Subclasses set `spec` (their `envs.tasks.TaskSpec`) and implement `sample_goal` and
    `goal_configurations`; the default start state is the object resting on the table.
    """

    spec: tasks_lib.TaskSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def requires_grasp(self) -> bool:
        """Whether success also requires the object held between both fingers."""
        return self.spec.requires_grasp

    def reset_start_state(self, env, rng: np.random.Generator) -> None:
        """Places the object at its start (the arm is already at its start pose).

        The default: resting on the table, at a uniform xy within `WORKSPACE_RANGE` of the
        start gripper xy but at least `MIN_START_DISTANCE` from it, yaw within +-0.3 rad.

        Args:
            env: the unwrapped `FetchGoalImageEnv`.
            rng: its generator (`env.np_random`).
        """
        center = env.workspace_center
        yaw = rng.uniform(-0.3, 0.3)
        xy = center.copy()
        while np.linalg.norm(xy - center) < MIN_START_DISTANCE:
            xy = center + rng.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
        env.place_object(np.array([*xy, _rest_z(env)]), yaw)
        mujoco.mj_forward(env.model, env.data)

    @abc.abstractmethod
    def sample_goal(self, env, rng: np.random.Generator) -> np.ndarray:
        """Returns the `(3,)` desired goal (m, world frame) of an episode in its start state."""

    @abc.abstractmethod
    def goal_configurations(self, env, start_object: np.ndarray) -> dict[str, Callable[[], None]]:
        """The goal configurations, in planning order (the last is `"goal"`).

        Args:
            env: the unwrapped env, in the episode's start state with its goal set.
            start_object: `(3,)` object position at the start state.

        Returns:
            Goal name -> a function that drives the simulator from the start state into that
            configuration (the env restores the start state before each and renders after).
        """

    def achieved_goal(self, env) -> np.ndarray:
        """The `(3,)` position success measures: the object's (subclasses may differ)."""
        return env.object_position()

    def is_success(self, achieved_goal, desired_goal, threshold: float, grasped: bool):
        """Whether the task is solved: the goal within `threshold` m (and the object held)."""
        need = grasped if self.requires_grasp else None
        return tasks_lib.is_success(achieved_goal, desired_goal, threshold, need)


class ReachTask(GoalTask):
    """Move the gripper to a point 0.10-0.30 m above the table; success measures the gripper."""

    spec = tasks_lib.TASKS["reach"]

    def sample_goal(self, env, rng):
        xy = env.workspace_center + rng.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
        return np.array([*xy, TABLE_TOP + rng.uniform(0.10, 0.30)])

    def goal_configurations(self, env, start_object):
        return {"goal": lambda: env.drive_gripper(env.goal, grip_ctrl=None)}

    def achieved_goal(self, env):
        return env.gripper_position()


class PushTask(GoalTask):
    """Push the object to a resting spot 0.08-0.25 m from its start."""

    spec = tasks_lib.TASKS["push"]

    def sample_goal(self, env, rng):
        obj = env.object_position()
        while True:
            xy = env.workspace_center + rng.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
            if 0.08 <= np.linalg.norm(xy - obj[:2]) <= 0.25:
                return np.array([*xy, _rest_z(env)])

    def goal_configurations(self, env, start_object):
        def goal():
            # The object at the goal, the closed gripper just above it (as after a push).
            env.place_object(env.goal, yaw=None)
            above = env.goal + [0.0, 0.0, env.object_half_size + 0.05]
            env.drive_gripper(above, grip_ctrl=0.0, pin=env.goal)

        return {"goal": goal}


class GraspTask(GoalTask):
    """Grasp the object and lift it `LIFT_HEIGHT` above its resting height, in place."""

    spec = tasks_lib.TASKS["grasp"]

    def sample_goal(self, env, rng):
        obj = env.object_position()
        return np.array([obj[0], obj[1], _rest_z(env) + LIFT_HEIGHT])

    def goal_configurations(self, env, start_object):
        return {
            "pregrasp": lambda: env.simulate_pregrasp(start_object),
            "goal": lambda: env.simulate_holding(env.goal),
        }


class ReachWithObjectTask(GoalTask):
    """Carry the object, held from the start, to a point 0.03-0.20 m above its resting height."""

    spec = tasks_lib.TASKS["reach_with_object"]

    def reset_start_state(self, env, rng):
        # Held in the closed gripper 0.05-0.15 m above the table, near the workspace centre.
        yaw = rng.uniform(-0.3, 0.3)
        xy = env.workspace_center + rng.uniform(-0.10, 0.10, size=2)
        env.place_object(np.array([*xy, _rest_z(env)]), yaw)
        lift = rng.uniform(0.05, 0.15)
        env.simulate_holding(np.array([*xy, _rest_z(env) + lift]))

    def sample_goal(self, env, rng):
        obj = env.object_position()
        while True:
            xy = env.workspace_center + rng.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
            goal = np.array([*xy, _rest_z(env) + rng.uniform(0.03, 0.20)])
            if np.linalg.norm(goal - obj) >= MIN_GOAL_SEPARATION:
                return goal

    def goal_configurations(self, env, start_object):
        return {"goal": lambda: env.simulate_holding(env.goal)}


class PickAndPlaceTask(GoalTask):
    """Pick the object up and place it at a point on the table or in the air."""

    spec = tasks_lib.TASKS["pick_and_place"]

    def sample_goal(self, env, rng):
        obj = env.object_position()
        while True:
            xy = env.workspace_center + rng.uniform(-WORKSPACE_RANGE, WORKSPACE_RANGE, size=2)
            # On the table or in the air (half the episodes each), like FetchPickAndPlace.
            z = _rest_z(env) + (rng.uniform(0.03, 0.20) if rng.uniform() < 0.5 else 0.0)
            goal = np.array([*xy, z])
            if np.linalg.norm(goal - obj) >= MIN_GOAL_SEPARATION:
                return goal

    def goal_configurations(self, env, start_object):
        lifted = np.array([start_object[0], start_object[1], start_object[2] + LIFT_HEIGHT])
        return {
            "pregrasp": lambda: env.simulate_pregrasp(start_object),
            "grasp": lambda: env.simulate_holding(lifted),
            "near_goal": lambda: env.simulate_holding(env.goal + [0.0, 0.0, NEAR_GOAL_HEIGHT]),
            "goal": lambda: env.simulate_holding(env.goal),
        }


TASK_CLASSES: dict[str, type[GoalTask]] = {
    cls.spec.name: cls
    for cls in (ReachTask, PushTask, GraspTask, ReachWithObjectTask, PickAndPlaceTask)
}


def make_task(name: str) -> GoalTask:
    """Returns the task object `name`; raises `UsageError` naming the value otherwise."""
    tasks_lib.get_task(name)
    return TASK_CLASSES[name]()


def _rest_z(env) -> float:
    """Height of the object's centre when it rests on the table."""
    return TABLE_TOP + env.object_half_size
