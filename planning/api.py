"""`Planner`: the planning API for users' own robot or simulator code.

Takes raw numpy frames, states and goal images, checks them, encodes them with the world model
(each goal image once, cached), runs CEM and returns the action(s) to execute with the energy
trace and timings.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import threading
import time
from typing import Any, Sequence

import numpy as np
from keras import ops

from planning._compile import compile_function
from planning.cem import CEMConfig, CEMPlanner, CEMRow, PlanResult
from planning.energy import EnergyConfig, latent_distance
from planning.schedule import SubgoalSchedule
from vjepa2.errors import UsageError


class PlanInputError(UsageError, ValueError):
    """A frame, state, goal or action given to the planner has the wrong shape, dtype or values.

    A `ValueError` for library callers and a `UsageError` for the command line (one line, exit 2).
    """


def _array(x, what):
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise PlanInputError(f"{what} must be a numeric array; received {type(x).__name__} "
                             f"({err})") from None
    if not (arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.number)
            or arr.dtype == np.bool_):
        raise PlanInputError(f"{what} must be a numeric array; received dtype {arr.dtype}")
    return arr


def _check_finite(arr, what):
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise PlanInputError(f"{what} contains NaN or inf ({int(np.sum(~np.isfinite(arr)))} "
                             "values)")


# Float images are in [0, 1]; this margin lets values that a resize or a colour conversion
# pushed just past an end through (a float32 of 1.0 computed as 1.0000001).
IMAGE_FLOAT_MARGIN = 1e-3


def _check_image(arr, what):
    """uint8 in [0, 255] or floating in [0, 1] (finite); one min and one max pass for floats."""
    if arr.dtype == np.uint8:
        return
    if not np.issubdtype(arr.dtype, np.floating):
        raise PlanInputError(f"{what} must be uint8 or floating; received dtype {arr.dtype}")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        _check_finite(arr, what)
    if lo < -IMAGE_FLOAT_MARGIN or hi > 1.0 + IMAGE_FLOAT_MARGIN:
        hint = (" (0..255 values: pass uint8, or divide by 255)" if hi > 1.0 + IMAGE_FLOAT_MARGIN
                and hi <= 255.0 and lo >= 0.0 else "")
        raise PlanInputError(f"{what} are floating, so values must be in [0, 1]; received values "
                             f"in [{lo:g}, {hi:g}]{hint}")


def check_frames(frames) -> np.ndarray:
    """Validates frames and returns them as `(T, H, W, 3)` (a single `(H, W, 3)` gets T=1).

    Accepted values: uint8 in [0, 255], or floating in [0, 1] (finite; a margin of
    `IMAGE_FLOAT_MARGIN` for rounding). Anything else raises `PlanInputError`: a float image in
    0..255 or normalized to -2..2 would otherwise be encoded as a different picture and give a
    confident, wrong plan.
    """
    arr = _array(frames, "frames")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise PlanInputError("frames must be (H, W, 3) or (T, H, W, 3); received shape "
                             f"{np.shape(frames)}")
    if min(arr.shape) == 0:
        raise PlanInputError(f"frames must not be empty; received shape {arr.shape}")
    _check_image(arr, "frames")
    return arr


def check_goal(goal, frame_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Validates one goal image `(H, W, 3)` against the frames' size `frame_hw`.

    Accepted values as for `check_frames`: uint8 in [0, 255] or floating in [0, 1].
    """
    arr = _array(goal, "goal image")
    if arr.ndim != 3 or arr.shape[-1] != 3 or min(arr.shape) == 0:
        raise PlanInputError(f"goal image must be (H, W, 3); received shape {arr.shape}")
    _check_image(arr, "goal image")
    if frame_hw is not None and tuple(arr.shape[:2]) != tuple(frame_hw):
        raise PlanInputError(f"goal image is {arr.shape[0]}x{arr.shape[1]} but the frames are "
                             f"{frame_hw[0]}x{frame_hw[1]}")
    return arr


def check_state(state, steps: int, state_dim: int | None = None) -> np.ndarray:
    """Validates a state `(S,)` or `(T, S)` for `steps` frames; returns float32 `(T, S)`."""
    arr = _array(state, "state")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise PlanInputError(f"state must be (S,) or (T, S); received shape {np.shape(state)}")
    if arr.shape[0] != steps:
        raise PlanInputError(f"state has {arr.shape[0]} steps but there are {steps} frames")
    if state_dim is not None and arr.shape[1] != state_dim:
        raise PlanInputError(f"state has {arr.shape[1]} dims but the world model's state_dim is "
                             f"{state_dim}")
    _check_finite(arr, "state")
    return arr.astype("float32")


def check_context_actions(actions, steps: int, action_dim: int) -> np.ndarray | None:
    """Validates the actions between `steps` context frames: `(steps - 1, A)` or `None`."""
    if actions is None:
        return None
    arr = _array(actions, "context_actions")
    if arr.ndim == 1 and steps == 2:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape != (steps - 1, action_dim):
        raise PlanInputError(f"context_actions must be (T - 1, A) = ({steps - 1}, {action_dim}); "
                             f"received shape {np.shape(actions)}")
    _check_finite(arr, "context_actions")
    return arr.astype("float32")


def _bounds(action_space, action_low, action_high):
    if action_space is not None:
        if action_low is not None or action_high is not None:
            raise ValueError("give either action_space or action_low/action_high, not both")
        if not (hasattr(action_space, "low") and hasattr(action_space, "high")):
            raise ValueError("action_space must have low and high (a gymnasium Box); received "
                             f"{type(action_space).__name__}")
        return np.asarray(action_space.low), np.asarray(action_space.high)
    if action_low is None or action_high is None:
        raise ValueError("give an action_space (gymnasium Box) or both action_low and action_high")
    return action_low, action_high


def _image_key(arr: np.ndarray) -> tuple:
    return arr.shape, arr.dtype.str, hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()


def split_env_actions(action, conventions: dict | None, action_dim: int) -> np.ndarray:
    """`(s, A)` env actions for one planned action of a model with frame stride `s` (its
    `conventions`): `action / s` on the delta dims, `action` on the others
    (`Planner.env_actions`)."""
    conventions = conventions or {}
    stride = int(conventions.get("frame_stride", 1))
    action = _array(action, "action").astype("float32").reshape(-1)
    if action.shape[0] != action_dim:
        raise PlanInputError(f"action must have {action_dim} values; received shape "
                             f"{action.shape}")
    _check_finite(action, "action")
    per_step = action.copy()
    delta = [int(d) for d in conventions.get("action_delta_dims", ())]
    per_step[delta] /= stride
    return np.repeat(per_step[None], stride, axis=0)


def current_goal(goal, budgets, state, encode_goal, z_current, distance_kind: str,
                 frame_hw=None):
    """Which goal image a plan aims at now, advancing a sub-goal schedule on the way.

    Args:
        goal: one goal image, a list of sub-goal images (with `budgets`), or a
            `SubgoalSchedule`.
        budgets: re-plans per sub-goal of a list.
        state: where a list's schedule is kept between calls (`list_schedule`, `list_key`).
        encode_goal: `(image, frame_hw) -> (N, D)` latent.
        z_current: `(N, D)` latent of the newest frame.
        distance_kind: the energy's distance, for the observed distance to the goal.

    Returns:
        `(goal_image, goal_z, index, schedule or None, observed distance)`.
    """
    schedule = _schedule_for(goal, budgets, state)
    if schedule is None:
        goal_z = encode_goal(goal, frame_hw)
        return goal, goal_z, 0, None, latent_distance(z_current, goal_z, distance_kind)
    while True:
        goal_image = schedule.goal
        goal_z = encode_goal(goal_image, frame_hw)
        observed = latent_distance(z_current, goal_z, distance_kind)
        if not schedule.observe(observed):
            return goal_image, goal_z, schedule.index, schedule, observed


def _schedule_for(goal, budgets, state):
    if isinstance(goal, SubgoalSchedule):
        return goal
    if isinstance(goal, (list, tuple)):
        if budgets is None:
            raise PlanInputError(f"a list of {len(goal)} sub-goal images needs budgets "
                                 "(re-plans per sub-goal)")
        images = [check_goal(g) for g in goal]
        key = (tuple(_image_key(g) for g in images), tuple(budgets))
        if key != state.list_key:
            state.list_schedule = SubgoalSchedule(images, budgets)
            state.list_key = key
        return state.list_schedule
    if budgets is not None:
        raise PlanInputError("budgets apply only to a list of sub-goal images; received a "
                             "single goal")
    return None


class Planner:
    """Plans actions towards goal images with a world model.

    The world model follows `planning.WorldModel`. Each goal image is encoded once and cached;
    frames are encoded once per call. With a list of sub-goal images (or a `SubgoalSchedule`),
    each `plan` call counts as one re-plan against the current sub-goal's budget.

    Args:
        world_model: the world model (`encode` and a traceable `rollout`).
        action_space: a gymnasium `Box` (or anything with `low`/`high`); or give
            `action_low` and `action_high`.
        action_low: `(A,)` lower bounds, when no `action_space`.
        action_high: `(A,)` upper bounds, when no `action_space`.
        config: a `CEMConfig`; defaults to `CEMConfig()`.
        energy: an `EnergyConfig` (default L1 on the final step) or an energy callable.
        goal_cache_size: goal latents kept (least recently used are dropped).

    Example:

    >>> planner = Planner(world_model, env.action_space, config=CEMConfig())
    >>> result = planner.plan(frame, state, goal_image)
    >>> env.step(result.first_action)
    """

    def __init__(self, world_model, action_space=None, *, action_low=None, action_high=None,
                 config: CEMConfig | None = None, energy: EnergyConfig | Any = None,
                 goal_cache_size: int = 16):
        if not callable(getattr(world_model, "encode", None)):
            raise TypeError("world_model must have a callable encode(); received "
                            f"{type(world_model).__name__}")
        if goal_cache_size < 1:
            raise ValueError(f"goal_cache_size must be >= 1; received {goal_cache_size}")
        low, high = _bounds(action_space, action_low, action_high)
        self.world_model = world_model
        self._encode = (compile_function(world_model.encode, exact_shapes=True)
                        if getattr(world_model, "traceable_encode", False)
                        else world_model.encode)
        self.cem = CEMPlanner(world_model, low, high, config, energy)
        self.config = self.cem.config
        self.action_dim = self.cem.action_dim
        self.state_dim = getattr(world_model, "state_dim", None)
        energy_config = self.cem.energy_config
        self.distance_kind = energy_config.kind if energy_config is not None else "l1"
        self._goal_cache: collections.OrderedDict = collections.OrderedDict()
        self._goal_cache_size = int(goal_cache_size)
        self._goal_lock = threading.Lock()
        self._session = PlanSession(self.cem._row)

    @classmethod
    def from_run(cls, run_dir, action_space=None, *, config: CEMConfig | None = None,
                 energy: EnergyConfig | None = None, **planner_kwargs) -> "Planner":
        """Builds a planner from a trained run folder.

        Loads the world model with `vjepa2.models.world_model.load_world_model(run_dir)`,
        imported here so that `planning` does not depend on the model code until it is used.
        When `action_space` is not given, the loaded model's `conventions["action_low"]` and
        `conventions["action_high"]` are used if present.
        """
        from vjepa2.models.world_model import load_world_model

        world_model = load_world_model(run_dir)
        if action_space is None and "action_low" not in planner_kwargs:
            conventions = getattr(world_model, "conventions", None) or {}
            if "action_low" in conventions and "action_high" in conventions:
                planner_kwargs["action_low"] = conventions["action_low"]
                planner_kwargs["action_high"] = conventions["action_high"]
        return cls(world_model, action_space, config=config, energy=energy, **planner_kwargs)

    def reset(self, seed: int | None = None):
        """Starts a new episode: forgets the warm start and any sub-goal progress."""
        self._session.reset(seed)

    def new_session(self, seed: int | None = None) -> "PlanSession":
        """The per-problem state of one more robot or episode planned with this planner (its
        noise generator, warm start and sub-goal progress), for `plan_batch`."""
        return PlanSession(self.cem.new_row(seed))

    def encode(self, frames):
        """Encodes frames `(T, H, W, 3)` or `(H, W, 3)` into latents `(T, N, D)` (a tensor)."""
        frames = check_frames(frames)
        z = ops.convert_to_tensor(self._encode(frames[None]), "float32")
        if len(z.shape) != 4 or z.shape[0] != 1 or z.shape[1] != frames.shape[0]:
            raise ValueError(f"world_model.encode returned shape {tuple(z.shape)}; expected "
                             f"(1, {frames.shape[0]}, N, D)")
        if not bool(ops.convert_to_numpy(ops.all(ops.isfinite(z)))):
            raise ValueError("world_model.encode returned NaN or inf")
        return z[0]

    def encode_goal(self, goal, frame_hw: tuple[int, int] | None = None):
        """Encodes one goal image `(H, W, 3)` into `(N, D)`, from the cache when seen before
        (the cache is shared by every session and safe to use from several threads)."""
        goal = check_goal(goal, frame_hw)
        key = _image_key(goal)
        with self._goal_lock:
            if key in self._goal_cache:
                self._goal_cache.move_to_end(key)
                return self._goal_cache[key]
        z = self.encode(goal)[0]
        with self._goal_lock:
            self._goal_cache[key] = z
            while len(self._goal_cache) > self._goal_cache_size:
                self._goal_cache.popitem(last=False)
        return z

    def env_actions(self, action) -> np.ndarray:
        """Splits one planned action into the env actions it stands for.

        A world model trained with `frame_stride = s` (its conventions) plans actions that span
        `s` env steps, summed over them on the delta dims and averaged on the others; this
        returns the `(s, A)` env actions to execute in order: `action / s` on the delta dims,
        `action` on the others. With `s = 1` it is `action[None]`.

        Raises:
            PlanInputError: `action` has the wrong size or a NaN or inf (never sent to a robot).
        """
        return split_env_actions(action, getattr(self.world_model, "conventions", None),
                                 self.action_dim)

    def plan(self, frames, state, goal, *, context_actions=None,
             budgets: Sequence[int] | None = None,
             session: "PlanSession | None" = None) -> PlanResult:
        """Plans from raw observations.

        Args:
            frames: `(T, H, W, 3)` context frames (oldest first) or one frame `(H, W, 3)`,
                uint8 in [0, 255] or floating in [0, 1].
            state: `(S,)` or `(T, S)` proprio state of those frames.
            goal: a goal image `(H, W, 3)` of the frames' size (values as `frames`); or a list
                of sub-goal images with `budgets`; or a `SubgoalSchedule`.
            context_actions: `(T - 1, A)` actions taken between the context frames.
            budgets: re-plans per sub-goal, when `goal` is a list.
            session: whose warm start and noise to use (`new_session`); default: the
                planner's own.

        Returns:
            A `PlanResult`; `first_action` is the action to execute, `goal_index` the sub-goal
            aimed at, `observed_energy` the latest frame's distance to that sub-goal.

        Raises:
            PlanInputError: a wrong shape, dtype or value range, or a NaN or inf, in any input.
        """
        start = time.perf_counter()
        frames = check_frames(frames)
        states = check_state(state, frames.shape[0], self.state_dim)
        context_actions = check_context_actions(context_actions, frames.shape[0],
                                                self.action_dim)
        z = self.encode(frames)
        request = PlanRequest(z, states, goal, context_actions, budgets, frames.shape[1:3],
                              session)
        return self._plan_requests([request], time.perf_counter() - start, start)[0]

    def plan_encoded(self, z_context, states, goal, *, context_actions=None,
                     budgets: Sequence[int] | None = None,
                     frame_hw: tuple[int, int] | None = None,
                     session: "PlanSession | None" = None) -> PlanResult:
        """Like `plan`, from context latents `(T, N, D)` already encoded with `encode`.

        `frame_hw` (the frames' height and width) lets the goal image's size be checked.
        """
        return self.plan_batch([self.request(z_context, states, goal,
                                             context_actions=context_actions, budgets=budgets,
                                             frame_hw=frame_hw, session=session)])[0]

    def request(self, z_context, states, goal, *, context_actions=None,
                budgets: Sequence[int] | None = None, frame_hw: tuple[int, int] | None = None,
                session: "PlanSession | None" = None) -> "PlanRequest":
        """A checked plan request from encoded observations, for `plan_batch`."""
        z = ops.convert_to_tensor(z_context, "float32")
        if len(z.shape) != 3:
            raise PlanInputError(f"z_context must be (T, N, D); received shape {tuple(z.shape)}")
        states = check_state(states, z.shape[0], self.state_dim)
        context_actions = check_context_actions(context_actions, z.shape[0], self.action_dim)
        return PlanRequest(z, states, goal, context_actions, budgets, frame_hw, session)

    def plan_batch(self, requests: Sequence["PlanRequest"]) -> list[PlanResult]:
        """Plans several problems (robots, episodes) in one compiled call.

        Each request carries its own `session` (`new_session`: noise generator, warm start,
        sub-goal progress), so a problem is planned as it would be alone (up to float
        rounding). Requests must share the context length.
        """
        return self._plan_requests(list(requests), 0.0, time.perf_counter())

    def _target(self, request: "PlanRequest"):
        """The request's current goal latent, sub-goal index, schedule and observed distance;
        a new goal drops the session's warm start (the previous plan is a poor start)."""
        session = request.session
        goal_image, goal_z, index, schedule, observed = current_goal(
            request.goal, request.budgets, session, self.encode_goal, request.z[-1],
            self.distance_kind, request.frame_hw)
        key = _image_key(np.asarray(goal_image))
        if key != session.goal_key:
            session.row.reset()
            session.goal_key = key
        return goal_z, index, schedule, observed

    def _plan_requests(self, requests, encode_seconds, start):
        for request in requests:
            if request.session is None:
                request.session = self._session
        steps = {int(r.z.shape[0]) for r in requests}
        if len(steps) != 1:
            raise PlanInputError(f"batched requests must share the context length; received "
                                 f"{sorted(steps)}")
        t0 = time.perf_counter()
        targets = [self._target(r) for r in requests]
        encode_seconds += time.perf_counter() - t0
        stack = ops.stack
        context = None if requests[0].context_actions is None else ops.convert_to_tensor(
            np.stack([r.context_actions for r in requests]))
        results = self.cem.plan_batch(
            stack([r.z for r in requests]), ops.convert_to_tensor(np.stack(
                [r.states for r in requests])), context, stack([t[0] for t in targets]),
            [r.session.row for r in requests])
        out = []
        for result, (_, index, schedule, observed) in zip(results, targets):
            if schedule is not None:
                schedule.step()
            timings = dict(result.timings, encode=encode_seconds,
                           total=time.perf_counter() - start)
            out.append(dataclasses.replace(result, timings=timings, goal_index=index,
                                           observed_energy=observed))
        return out


@dataclasses.dataclass
class PlanSession:
    """What one robot or episode keeps between plans: the CEM search state (noise generator,
    warm start) and the progress through a list of sub-goal images."""

    row: CEMRow
    list_schedule: SubgoalSchedule | None = None
    list_key: Any = None
    goal_key: Any = None

    def reset(self, seed: int | None = None) -> None:
        self.row.reset(seed)
        self.list_schedule = self.list_key = self.goal_key = None


@dataclasses.dataclass
class PlanRequest:
    """One problem of a batched plan: checked context latents `(T, N, D)`, states `(T, S)`,
    goal (image, list of images with `budgets`, or a `SubgoalSchedule`), context actions, and
    the session it belongs to."""

    z: Any
    states: np.ndarray
    goal: Any
    context_actions: np.ndarray | None = None
    budgets: Sequence[int] | None = None
    frame_hw: tuple[int, int] | None = None
    session: PlanSession | None = None
