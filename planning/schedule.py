"""Sub-goal schedules: a sequence of goal images, each pursued for a budget of re-plans.

The reference splits pick-and-place into two sub-goal images (object grasped; object near the
goal) and the final goal, pursued for 4 + 10 + 4 re-plans. A schedule advances when a budget is
spent or, optionally, when the planner's own latent distance from the current observation to the
sub-goal falls below `stop_energy`. It never reads the simulator's success signal.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class SubgoalSchedule:
    """Which goal image to plan towards, step by step.

    Args:
        goals: goal images, each `(H, W, 3)`, in the order to reach them.
        budgets: re-plans (executed actions) allowed per goal, one positive int each.
        stop_energy: if set, a goal counts as reached when the observed frame's latent distance to
            it (the energy kind of the planner, no rollout) is `<= stop_energy`: the schedule then
            moves to the next goal, or, for the last one, is `done`.
        early_advance: whether the stop rule also ends an intermediate sub-goal before its
            budget is spent. With `False` only the last goal has a stop rule and the others get
            their whole budgets (the reference's fixed 4 + 10 + 4): a latent distance small
            enough to call a goal reached is often not close enough to grasp from.

    Example:

    >>> schedule = SubgoalSchedule([grasped, lifted, goal], budgets=[4, 10, 4])
    >>> planner.plan(frame, state, schedule)   # plans towards schedule.goal, counts one step
    """

    def __init__(self, goals: Sequence, budgets: Sequence[int], stop_energy: float | None = None,
                 early_advance: bool = True):
        goals = list(goals)
        budgets = list(budgets)
        if not goals:
            raise ValueError("goals must hold at least one goal image; received an empty list")
        if len(budgets) != len(goals):
            raise ValueError("budgets must have one entry per goal; "
                             f"received {len(budgets)} budgets for {len(goals)} goals")
        for b in budgets:
            if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
                raise ValueError(f"budgets must be positive ints; received budgets={budgets!r}")
        if stop_energy is not None and not (np.isfinite(stop_energy) and stop_energy >= 0):
            raise ValueError("stop_energy must be >= 0 or None; "
                             f"received stop_energy={stop_energy!r}")
        self.goals = goals
        self.budgets = tuple(int(b) for b in budgets)
        self.stop_energy = None if stop_energy is None else float(stop_energy)
        self.early_advance = bool(early_advance)
        self.reset()

    def reset(self):
        """Back to the first goal with its full budget."""
        self.index = 0
        self.used = 0
        self.reached = False
        self.exhausted = False

    @property
    def goal(self):
        """The goal image to plan towards now."""
        return self.goals[self.index]

    @property
    def is_last(self) -> bool:
        return self.index == len(self.goals) - 1

    @property
    def done(self) -> bool:
        """True once the last goal is reached (stop rule) or its budget is spent."""
        return self.reached or self.exhausted

    @property
    def total_budget(self) -> int:
        return sum(self.budgets)

    def observe(self, energy: float) -> bool:
        """Applies the stop rule to the current observation's energy to the current goal.

        Returns:
            True if the current goal counts as reached (the caller then re-measures against the
            next goal, if any).
        """
        if self.stop_energy is None or self.done or energy > self.stop_energy:
            return False
        if not self.is_last and not self.early_advance:
            return False
        if self.is_last:
            self.reached = True
        else:
            self._advance()
        return True

    def step(self):
        """Counts one executed action against the current goal's budget."""
        if self.done:
            return
        self.used += 1
        if self.used >= self.budgets[self.index]:
            if self.is_last:
                self.exhausted = True
            else:
                self._advance()

    def _advance(self):
        self.index += 1
        self.used = 0
