"""MuJoCo manipulation tasks with goal images, scene variations and scripted policies."""
import os

# Headless rendering by default: MuJoCo picks its GL backend at import time.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from envs.tasks import ENV_IDS, NAMESPACE, TASK_NAMES, TASKS, is_success  # noqa: E402


def register_envs() -> tuple[str, ...]:
    """Registers every task as `VJEPA/<Task>-v0` (50-step TimeLimit); safe to call repeatedly.

    Returns:
        The registered environment ids.
    """
    import gymnasium

    for spec in TASKS.values():
        if spec.env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=spec.env_id,
            entry_point="envs.fetch_tasks:FetchGoalImageEnv",
            max_episode_steps=tasks_max_steps(),
            kwargs={"task": spec.name},
        )
    return ENV_IDS


def tasks_max_steps() -> int:
    from envs.tasks import MAX_EPISODE_STEPS

    return MAX_EPISODE_STEPS


register_envs()

__all__ = ["ENV_IDS", "NAMESPACE", "TASK_NAMES", "TASKS", "is_success", "register_envs"]
