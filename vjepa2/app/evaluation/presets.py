"""Named planner presets per task: the settings each results row was measured with.

`vjepa2 evaluate --task T` plans with `PRESETS[T]["default"]`, the task's best measured
setting; `--preset NAME` picks another row of the task's table (or a saved `evaluation.json`),
and `--set field=value` changes one field. Every preset is stated in the env's action units
(Fetch: xyz in units of `STEP_METRES` = 0.05 m per step, gripper in [-1, 1]); limits the
reference gives in metres are converted here, once.

Names shared by every task:
- `default`: the task's best measured setting (what the README's results table reports).
- `reference_method`: the reference's goal images, a Gaussian gripper and no controller rule,
  at the CPU budget of `CEMConfig()`: what the world model does with the published method alone.
- `reference`: the same with the V-JEPA 2-AC paper's CEM budget (800 x 10 x horizon 1, an L1
  ball of 0.075 m on each step's xyz move).
- `notebook`: the same with the public notebook's CEM budget (400 x 10 x horizon 2, momentum
  0.15, per-axis clip 0.05 m on xyz and 0.75 on the gripper).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from envs.policies import STEP_METRES
from envs.tasks import TASK_NAMES, get_task
from planning.cem import CEMConfig
from planning.mpc import GripperLatch
from planning.preset import PlannerPreset, PresetError
from vjepa2.errors import UsageError

# The reference's sub-goal images: pick-and-place pursues the object grasped, then held near
# the goal, then the goal; every other task its final goal image alone.
REFERENCE_GOALS = {"pick_and_place": ("grasp", "near_goal", "goal")}
# The reference's pick-and-place re-plans per sub-goal image (the pre-grasp weighs like the
# grasp), scaled to an episode's budget by `subgoal_budgets`.
REFERENCE_SUBGOAL_REPLANS = {"pregrasp": 4, "grasp": 4, "near_goal": 10, "goal": 4}


def metres(value: float) -> float:
    """A length in metres as xyz action units."""
    return value / STEP_METRES


# Grasp and pick-and-place: the pre-grasp sub-goal, an xyz clip of 0.05 m per axis, 4 CEM
# iterations, the gripper searched as open vs closed (paired) and latched, switchable only at
# the start of a sub-goal with the arm held still; no stop rule (it cannot tell a 4 cm lift from
# 10 cm). Validation seeds 2000-2019 (grasp): 9/20 against 3/20 for the earlier setting.
_PAIRED_GRIPPER = dict(
    cem=CEMConfig(iterations=4, clip=(metres(0.05),) * 3 + (1.0,), binary_dims=(3,)),
    gripper=GripperLatch(threshold=0.6, initial="high", hold_on_switch=True,
                         at_subgoal_start=True),
    stop_energy=None,
)
# The earlier controller rule: a Gaussian gripper through a latch that any plan may switch.
_GAUSSIAN_LATCH = dict(
    cem=CEMConfig(iterations=4, clip=(metres(0.05),) * 3 + (1.0,)),
    gripper=GripperLatch(threshold=0.6),
    stop_energy=None,
)


def _shared(task: str) -> dict[str, PlannerPreset]:
    goals = REFERENCE_GOALS.get(task, ("goal",))
    notebook = CEMConfig.notebook(action_dim=4)
    notebook = notebook.replace(clip=tuple(metres(c) if i < 3 else c
                                           for i, c in enumerate(notebook.clip)))
    return {
        "reference_method": PlannerPreset(
            goals=goals, description="the reference's goal images, Gaussian gripper, no "
            "controller rule; CPU budget"),
        "reference": PlannerPreset.reference(STEP_METRES, goals=goals, stop_energy="model"),
        "notebook": PlannerPreset(
            cem=notebook, goals=goals,
            description="the public V-JEPA 2-AC notebook's planner: 400 x 10 x H2"),
    }


def _table() -> dict[str, dict[str, PlannerPreset]]:
    table = {task: _shared(task) for task in TASK_NAMES}
    table["reach"]["default"] = PlannerPreset(description="CEM 64 x 2 x H1, model's stop rule")
    table["push"]["default"] = PlannerPreset(description="CEM 64 x 2 x H1, model's stop rule")
    table["reach_with_object"]["default"] = PlannerPreset(
        gripper=GripperLatch(threshold=0.6, initial="low"),
        description="the gripper latched, starting closed (the task starts holding the "
        "object); validation seeds 2000-2009: 7/10 against 3/10 without")
    table["reach_with_object"]["free_gripper"] = PlannerPreset(
        description="the gripper planned freely (no latch)")
    for task in ("grasp", "pick_and_place"):
        table[task]["default"] = PlannerPreset(
            **_PAIRED_GRIPPER, description="pre-grasp sub-goal, paired gripper search, latch "
            "switched at sub-goal starts with the arm held (a controller rule)")
        table[task]["latch"] = PlannerPreset(
            **_GAUSSIAN_LATCH, description="pre-grasp sub-goal, Gaussian gripper through a "
            "latch any plan may switch (a controller rule)")
    # Measured (README row) with the stop rule allowed to end a sub-goal early.
    table["pick_and_place"]["reference_method"] = table["pick_and_place"][
        "reference_method"].replace(early_advance=True)
    return {task: {"default": rows.pop("default"), **rows} for task, rows in table.items()}


PRESETS: dict[str, dict[str, PlannerPreset]] = _table()


def resolve_preset(task: str, preset: str | PlannerPreset | None = None,
                   overrides: list[str] | tuple[str, ...] = ()) -> tuple[str, PlannerPreset]:
    """The preset an evaluation of `task` plans with, and its name.

    Args:
        task: a task name.
        preset: `None` (the task's `default`), a name in `PRESETS[task]`, a `PlannerPreset`,
            or the path of a saved `evaluation.json` / `results.json` (its recorded preset).
        overrides: `field=value` assignments applied after (`PlannerPreset.override`).

    Returns:
        `(name, preset)`; a preset from a file is named by its path, a given one `"custom"`,
        and overrides append `+set`.
    """
    table = PRESETS[get_task(task).name]
    if preset is None:
        name, value = "default", table["default"]
    elif isinstance(preset, PlannerPreset):
        name, value = "custom", preset
    elif preset in table:
        name, value = preset, table[preset]
    elif Path(preset).is_file():
        name, value = str(preset), _preset_from_file(Path(preset))
    else:
        raise UsageError(f"unknown preset {preset!r} for {task}; expected one of "
                         f"{', '.join(table)} or a saved evaluation.json")
    try:
        if overrides:
            value, name = value.override(overrides), f"{name}+set"
        check_goals(task, value)
    except PresetError as error:
        raise UsageError(str(error)) from None
    return name, value


def check_goals(task: str, preset: PlannerPreset) -> None:
    """Raises `PresetError` if the preset's goal images are not the task's."""
    spec = get_task(task)
    unknown = [g for g in preset.goals or () if g not in spec.goal_names]
    if unknown:
        raise PresetError(f"goals must name goal images of {task} ({', '.join(spec.goal_names)})"
                          f"; received {','.join(preset.goals)}")


def _preset_from_file(path: Path) -> PlannerPreset:
    try:
        data = json.loads(path.read_text())
        recorded = (data.get("planner") or {}).get("preset")
        if not isinstance(recorded, dict):
            raise UsageError(f"--preset {path} records no planner preset (a planner "
                             "evaluation's evaluation.json or results.json has one)")
        return PlannerPreset.from_dict(recorded)
    except json.JSONDecodeError:
        raise UsageError(f"--preset {path} is not JSON") from None
    except PresetError as error:
        raise UsageError(f"--preset {path}: {error}") from None


def subgoal_budgets(goal_names: Sequence[str], max_steps: int) -> list[int]:
    """Splits `max_steps` re-plans over the sub-goals in the reference's proportions.

    Pick-and-place's `grasp`, `near_goal`, `goal` get 4 : 10 : 4 (the reference's 4 + 10 + 4
    re-plans), rounded by largest remainder so that the budgets sum to `max_steps`; a single
    goal gets all of it.

    Args:
        goal_names: the task's goal-image names in pursuit order.
        max_steps: the episode's step budget.

    Returns:
        One positive budget per goal.
    """
    names = list(goal_names)
    if len(names) == 1:
        return [int(max_steps)]
    if max_steps < len(names):
        raise UsageError(f"--max-steps must be >= {len(names)} (one step per sub-goal "
                         f"{', '.join(names)}); received {max_steps}")
    weights = np.asarray([REFERENCE_SUBGOAL_REPLANS[n] for n in names], "float64")
    exact = max_steps * weights / weights.sum()
    budgets = np.maximum(np.floor(exact).astype(int), 1)
    # Largest remainder first; ties go to the larger share (rounded: 6 * 4 / 18 vs 6 * 10 / 18
    # must tie exactly).
    order = np.lexsort((-weights, -np.round(exact - np.floor(exact), 9)))
    i = 0
    while budgets.sum() < max_steps:
        budgets[order[i % len(order)]] += 1
        i += 1
    while budgets.sum() > max_steps:  # only when the floor of 1 pushed the sum over
        budgets[int(np.argmax(budgets))] -= 1
    return [int(b) for b in budgets]
