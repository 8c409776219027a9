"""Receding-horizon control (MPC): plan, execute the first action, observe, re-plan.

Runs a `Planner` against any gymnasium environment with pixel observations. An episode ends when
the sub-goal budgets are spent, when the planner's own stop rule fires (the observed frame's latent
distance to the final goal falls below a threshold), or when the environment ends the episode.
The simulator's success signal is never read here: callers read it afterwards from `infos` or
`final_observation`.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np
from keras import ops

from planning.api import PlanInputError, Planner
from planning.cem import PlanResult
from planning.energy import latent_distance
from planning.schedule import SubgoalSchedule


@dataclasses.dataclass(frozen=True)
class MPCResult:
    """What one MPC episode did.

    Attributes:
        actions: `(T, A)` executed actions.
        plan_energy: `(T,)` energy of each executed plan (imagined outcome vs. its sub-goal).
        observed_energy: `(T,)` latent distance of the observation each plan started from to
            that plan's sub-goal.
        final_energy: latent distance of the last observation to the final goal.
        plan_seconds: `(T,)` wall-clock seconds of each plan, encoding included.
        goal_index: `(T,)` sub-goal each step aimed at.
        steps: executed steps `T`.
        stop_reason: `"budget"`, `"stop_energy"` or `"env_end"` (terminated or truncated).
        final_observation: the last observation.
        infos: the `info` dicts of `reset` and of every step, for reading success afterwards.
        plans: the `PlanResult` of every step.
        frames: the observed frames `(T + 1)` when `record_frames=True`, else `None`.
    """

    actions: np.ndarray
    plan_energy: np.ndarray
    observed_energy: np.ndarray
    final_energy: float
    plan_seconds: np.ndarray
    goal_index: np.ndarray
    steps: int
    stop_reason: str
    final_observation: Any
    infos: list
    plans: list
    frames: list | None = None


@dataclasses.dataclass(frozen=True)
class GripperLatch:
    """Executes one action dim as a binary open/close command that switches with hysteresis.

    A gripper commanded by the sign of a continuous value (Fetch: the finger target moves by
    the command, so any value past a few hundredths opens or closes fully) follows the
    planner's sampling noise whenever the energy barely depends on it, and drops what it holds.
    The latch executes `high` or `low` and switches only when the planned value is at least
    `threshold` away from zero in the other direction; it starts at `initial`, or, when that is
    `None`, the first plan of an episode sets it. Many learned robot policies binarize the
    gripper the same way.

    Args:
        dim: index of the gripper in the action vector (negative counts from the end).
        threshold: `|planned value|` needed to switch, in action units.
        low: the executed "close" command.
        high: the executed "open" command.
        initial: `"low"`, `"high"` or `None` (the first plan decides).
        hold_on_switch: on a step where the latched command changes, execute zero on every
            other dim (for delta actions: the arm holds still), so the fingers close or open
            in place instead of while the arm moves, as a blocking gripper command on a real
            robot does. The first command of an episode is not a switch.
        at_subgoal_start: let only the first plan of each sub-goal switch the latch (within
            a sub-goal the command stays): each goal image of a schedule then fixes one gripper
            state, chosen by the planner when the image is first pursued; the first sub-goal
            keeps `initial`, which is therefore required. A controller rule, not part of
            the reference method: it keeps a model that cannot see the fingers from switching
            them on a whim.
    """

    dim: int = -1
    threshold: float = 0.6
    low: float = -1.0
    high: float = 1.0
    initial: str | None = None
    hold_on_switch: bool = False
    at_subgoal_start: bool = False

    def __post_init__(self):
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)):
            raise TypeError(f"dim must be an int; received dim={self.dim!r}")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"threshold must be >= 0; received threshold={self.threshold!r}")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError("low must be < high (both finite); "
                             f"received low={self.low!r}, high={self.high!r}")
        if self.initial not in (None, "low", "high"):
            raise ValueError("initial must be 'low', 'high' or None; "
                             f"received initial={self.initial!r}")
        if self.at_subgoal_start and self.initial is None:
            raise ValueError("at_subgoal_start needs initial ('low' or 'high'); received "
                             "initial=None")

    def start(self) -> float | None:
        """The latched command at the start of an episode."""
        return None if self.initial is None else getattr(self, self.initial)

    def apply(self, action: np.ndarray, latched: float | None,
              may_switch: bool = True) -> tuple[np.ndarray, float]:
        """Returns the action to execute and the new latched command; with `may_switch` False
        the latched command is kept whatever the plan says."""
        action = np.array(action, copy=True)
        value = float(action[self.dim])
        middle = (self.low + self.high) / 2
        previous = latched
        if latched is None or (may_switch and abs(value - middle) >= self.threshold):
            latched = self.high if value >= middle else self.low
        if self.hold_on_switch and previous is not None and latched != previous:
            action[:] = 0.0
        action[self.dim] = latched
        return action, latched


def _reader(key, what) -> Callable:
    if callable(key):
        return key

    def read(obs):
        if not isinstance(obs, dict):
            raise PlanInputError(f"the observation is a {type(obs).__name__}, not a dict; pass "
                                 f"{what}_key as a callable that extracts the {what}")
        if key not in obs:
            raise PlanInputError(f"the observation has no key {key!r} (keys: {sorted(obs)}); "
                                 f"pass {what}_key")
        return obs[key]

    return read


class MPC:
    """Receding-horizon control of a gymnasium environment towards goal images.

    Each step encodes the current frame once (earlier context frames keep their encodings),
    plans with the `Planner`, executes the first action and re-plans.

    Args:
        planner: a `Planner`.
        env: a gymnasium environment whose observations hold a frame and a state.
        goals: a goal image `(H, W, 3)` (then `max_steps` is its budget); a list of
            `(goal_image, budget)` pairs, pursued in order (the reference's pick-and-place:
            4 + 10 + 4); or a `SubgoalSchedule`.
        max_steps: cap on executed steps; defaults to the schedule's total budget.
        frame_key: observation key of the frame, or a callable `obs -> (H, W, 3)`.
        state_key: observation key of the proprio state, or a callable `obs -> (S,)`.
        context_frames: how many recent frames the world model sees (the reference: 1).
        stop_energy: if set, a sub-goal counts as reached when the observed frame's latent
            distance to it is `<= stop_energy`; reaching the last one ends the episode.
        record_frames: keep the observed frames in the result (for videos).
        early_advance: whether the stop rule may also end an intermediate sub-goal early (see
            `SubgoalSchedule`).
        gripper: a `GripperLatch` to execute the gripper dim as open/close with hysteresis, or
            `None` to execute the planned value as is. `actions` records what was executed.
        execute_stride: a world model trained at a frame stride of `s` env steps
            (`conventions["frame_stride"]`) plans actions that span `s` steps; execute each as
            `s` env steps (`Planner.env_actions`). False when `env` already does that.

    Example:

    >>> mpc = MPC(planner, env, [(grasped, 4), (lifted, 10), (goal, 4)])
    >>> result = mpc.run(seed=0)
    >>> result.infos[-1]["is_success"]   # read afterwards, never during planning
    """

    def __init__(self, planner: Planner, env, goals, *, max_steps: int | None = None,
                 frame_key: str | Callable = "image", state_key: str | Callable = "state",
                 context_frames: int = 1, stop_energy: float | None = None,
                 record_frames: bool = False, early_advance: bool = True,
                 gripper: GripperLatch | None = None, execute_stride: bool = True):
        if not callable(getattr(planner, "plan_encoded", None)):
            raise TypeError(f"planner must be a planning.Planner (or a client of a "
                            f"BatchingPlanner); received {type(planner).__name__}")
        if context_frames < 1:
            raise ValueError(f"context_frames must be >= 1; received {context_frames}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None; received {max_steps}")
        self.planner = planner
        self.env = env
        if gripper is not None and not isinstance(gripper, GripperLatch):
            raise TypeError(f"gripper must be a GripperLatch or None; received "
                            f"{type(gripper).__name__}")
        self.gripper = gripper
        self.schedule = self._make_schedule(goals, max_steps, stop_energy, early_advance)
        self.max_steps = self.schedule.total_budget if max_steps is None else int(max_steps)
        self.read_frame = _reader(frame_key, "frame")
        self.read_state = _reader(state_key, "state")
        self.context_frames = int(context_frames)
        self.record_frames = record_frames
        self.execute_stride = bool(execute_stride)

    @staticmethod
    def _make_schedule(goals, max_steps, stop_energy, early_advance) -> SubgoalSchedule:
        if isinstance(goals, SubgoalSchedule):
            if stop_energy is not None:
                raise ValueError("set stop_energy on the SubgoalSchedule itself, not on MPC")
            return goals
        if isinstance(goals, np.ndarray):
            if max_steps is None:
                raise ValueError("a single goal image needs max_steps (its step budget)")
            return SubgoalSchedule([goals], [max_steps], stop_energy)
        if isinstance(goals, Sequence) and goals and all(
                isinstance(g, (tuple, list)) and len(g) == 2 for g in goals):
            images, budgets = zip(*goals)
            return SubgoalSchedule(images, budgets, stop_energy, early_advance)
        raise ValueError("goals must be a goal image, a list of (goal_image, budget) pairs or a "
                         f"SubgoalSchedule; received {type(goals).__name__}")

    def _gripper(self, result: PlanResult, latched, indices) -> tuple[np.ndarray, Any]:
        """The planned first action with the gripper latch applied (if any)."""
        action = result.first_action
        if self.gripper is None:
            return action, latched
        may_switch = (not self.gripper.at_subgoal_start
                      or (bool(indices) and result.goal_index != indices[-1]))
        return self.gripper.apply(action, latched, may_switch)

    def _execute(self, action: np.ndarray, infos: list) -> tuple[Any, bool, bool]:
        """Steps the env with `action` (as its env steps when `execute_stride`)."""
        for env_action in (self.planner.env_actions(action) if self.execute_stride
                           else [action]):
            obs, _, terminated, truncated, info = self.env.step(env_action)
            infos.append(info)
            if terminated or truncated:
                break
        return obs, terminated, truncated

    def run(self, seed: int | None = None, options: dict | None = None) -> MPCResult:
        """Runs one episode from `env.reset(seed=seed, options=options)`.

        Args:
            seed: seeds the environment's reset and, when not `None`, re-seeds the planner's
                noise, so that an episode is reproducible from its seed alone.
            options: passed to `env.reset`.

        Returns:
            An `MPCResult`.
        """
        planner, schedule = self.planner, self.schedule
        planner.reset(seed)
        schedule.reset()
        obs, info = self.env.reset(seed=seed, options=options)
        infos = [info]
        latents = collections.deque(maxlen=self.context_frames)
        states = collections.deque(maxlen=self.context_frames)
        past_actions = collections.deque(maxlen=max(self.context_frames - 1, 1))
        actions, plan_energy, observed, seconds, indices, plans = [], [], [], [], [], []
        frames = [] if self.record_frames else None
        stop_reason = "budget"
        latched = None if self.gripper is None else self.gripper.start()
        for _ in range(self.max_steps):
            t0 = time.perf_counter()
            frame = np.asarray(self.read_frame(obs))
            if frames is not None:
                frames.append(frame.copy())
            # Only the newest frame is encoded; older context frames keep their latents.
            latents.append(planner.encode(frame)[0])
            states.append(np.asarray(self.read_state(obs), "float32").reshape(-1))
            context_actions = None
            if len(latents) > 1:
                context_actions = np.stack(list(past_actions)[-(len(latents) - 1):])
            result: PlanResult = planner.plan_encoded(
                ops.stack(list(latents)), np.stack(states), schedule,
                context_actions=context_actions, frame_hw=frame.shape[:2])
            seconds.append(time.perf_counter() - t0)
            if schedule.reached:
                stop_reason = "stop_energy"
                break
            action, latched = self._gripper(result, latched, indices)
            obs, terminated, truncated = self._execute(action, infos)
            past_actions.append(action)
            actions.append(action)
            plan_energy.append(result.energy)
            observed.append(result.observed_energy)
            indices.append(result.goal_index)
            plans.append(result)
            if terminated or truncated:
                stop_reason = "env_end"
                break
            if schedule.done:
                break
        if frames is not None and stop_reason != "stop_energy":
            frames.append(np.asarray(self.read_frame(obs)).copy())
        final_goal = planner.encode_goal(schedule.goals[-1])
        final_energy = latent_distance(planner.encode(np.asarray(self.read_frame(obs)))[0],
                                       final_goal, planner.distance_kind)
        return MPCResult(
            actions=np.asarray(actions, "float32").reshape(-1, planner.action_dim),
            plan_energy=np.asarray(plan_energy, "float32"),
            observed_energy=np.asarray(observed, "float32"),
            final_energy=final_energy,
            plan_seconds=np.asarray(seconds[:len(actions)], "float64"),
            goal_index=np.asarray(indices, "int32"),
            steps=len(actions),
            stop_reason=stop_reason,
            final_observation=obs,
            infos=infos,
            plans=plans,
            frames=frames,
        )
