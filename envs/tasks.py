"""Task names, environment ids and the pure success/reward functions of the goal-image tasks.

Success is read from simulator state: the distance between the achieved goal (the gripper
position for reach, the object position otherwise) and the desired goal must be below
`SUCCESS_THRESHOLD` metres; the grasp and reach-with-object tasks also require the object to be
held between both fingers (see `FetchGoalImageEnv`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vjepa2.errors import UsageError

NAMESPACE = "VJEPA"
SUCCESS_THRESHOLD = 0.05  # metres, as in Gymnasium-Robotics Fetch
MAX_EPISODE_STEPS = 50  # Fetch's episode length: 2 s of control at 25 Hz


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task.

    Args:
        name: snake_case task name used on the command line (`--task`).
        env_name: CamelCase name in the environment id `VJEPA/<env_name>-v0`.
        achieved: what `achieved_goal` measures: `"gripper"` or `"object"`.
        requires_grasp: whether success also requires the object held between both fingers.
        goal_names: names of the goal images, in the order a planner should pursue them; the
            last one is always `"goal"`.
        instruction: what the task asks, in words; the `language_instruction` of its logged
            steps (as in Open X-Embodiment datasets).
    """

    name: str
    env_name: str
    achieved: str
    requires_grasp: bool
    goal_names: tuple[str, ...]
    instruction: str

    @property
    def env_id(self) -> str:
        return f"{NAMESPACE}/{self.env_name}-v0"


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("reach", "Reach", "gripper", False, ("goal",),
                 "move the gripper to the position shown in the goal image"),
        TaskSpec("push", "Push", "object", False, ("goal",),
                 "push the object to the position shown in the goal image"),
        TaskSpec("grasp", "Grasp", "object", True, ("pregrasp", "goal"),
                 "grasp the object and lift it as shown in the goal image"),
        TaskSpec("reach_with_object", "ReachWithObject", "object", True, ("goal",),
                 "carry the held object to the position shown in the goal image"),
        TaskSpec("pick_and_place", "PickAndPlace", "object", False,
                 ("pregrasp", "grasp", "near_goal", "goal"),
                 "pick up the object and place it at the position shown in the goal image"),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
ENV_IDS: tuple[str, ...] = tuple(spec.env_id for spec in TASKS.values())


def get_task(name: str) -> TaskSpec:
    """Returns the `TaskSpec` named `name`; raises `UsageError` naming the value otherwise."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
    return TASKS[name]


def goal_distance(achieved_goal, desired_goal) -> np.ndarray:
    """Euclidean distance over the last axis; works on single goals and batches."""
    achieved_goal = np.asarray(achieved_goal, dtype=np.float64)
    desired_goal = np.asarray(desired_goal, dtype=np.float64)
    if achieved_goal.shape != desired_goal.shape:
        raise ValueError(
            "achieved_goal and desired_goal must have the same shape; received "
            f"{achieved_goal.shape} and {desired_goal.shape}"
        )
    return np.linalg.norm(achieved_goal - desired_goal, axis=-1)


def is_success(achieved_goal, desired_goal, threshold: float = SUCCESS_THRESHOLD, grasped=None):
    """Whether the achieved goal is within `threshold` metres of the desired goal.

    Args:
        achieved_goal: `(..., 3)` achieved positions (gripper or object).
        desired_goal: `(..., 3)` goal positions, same shape.
        threshold: success radius in metres (strict: `distance < threshold`).
        grasped: optional boolean (or array broadcastable to the batch) that must also hold,
            for the tasks whose goal is to hold the object.

    Returns:
        A boolean (or boolean array for batched inputs).
    """
    ok = goal_distance(achieved_goal, desired_goal) < threshold
    if grasped is not None:
        ok = np.logical_and(ok, np.asarray(grasped, dtype=bool))
    return ok if np.ndim(ok) else bool(ok)


def sparse_reward(achieved_goal, desired_goal, threshold: float = SUCCESS_THRESHOLD, grasped=None):
    """Fetch's sparse reward: 0 on success, -1 otherwise (float32, batched like `is_success`)."""
    return np.asarray(is_success(achieved_goal, desired_goal, threshold, grasped), np.float32) - 1.0
