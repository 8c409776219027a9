"""Running one evaluation episode (planner or baseline) and turning it into a record.

The planner never sees the simulator: it plans through `PlannerView`, which passes on only the
camera frame and the proprio state. Success, distances and privileged state are read from the
env's infos after the episode, when the record is made.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import numpy as np

from planning.api import Planner
from planning.mpc import MPC
from planning.preset import PlannerPreset
from planning.remote_env import RemoteEnv


class PlannerView:
    """The env as the planning loop sees it: camera frame and proprio state only.

    `step` returns an observation with only `image` and `state`, a zero reward and an empty
    `info`, so nothing in the loop can read the simulator's success, distance, goal position or
    privileged state. The full infos of every env step and the observations the planner saw are
    kept here and read after the episode. The episode's reset happens before the loop (its
    `info` carries the goal images); the loop's own `reset` with the same seed is answered from
    it instead of resetting twice.

    With a world model trained at `frame_stride` env steps per frame, one planned action spans
    `frame_stride` env steps: on `delta_dims` (increments, summed over the stride in training)
    each step gets `action / frame_stride`, the other dims are repeated.
    """

    KEYS = ("image", "state")

    def __init__(self, env, seed: int | None, obs: dict, info: dict, frame_stride: int = 1,
                 delta_dims: Sequence[int] = ()):
        self.env = env
        self.action_space = env.action_space
        self._pending = (seed, obs, info)
        self.infos: list[dict] = []
        self.observations: list[dict] = []
        self.frame_stride = int(frame_stride)
        self._scale = np.ones(env.action_space.shape, "float32")
        self._scale[list(delta_dims)] = 1.0 / self.frame_stride

    def _view(self, obs: dict) -> dict:
        return {k: obs[k] for k in self.KEYS}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._pending is not None and self._pending[0] == seed and options is None:
            _, obs, info = self._pending
        else:
            obs, info = self.env.reset(seed=seed, options=options)
        self._pending = None
        self.infos, self.observations = [info], [obs]
        return self._view(obs), {}

    def step(self, action):
        per_step = np.asarray(action, "float32") * self._scale
        for _ in range(self.frame_stride):
            obs, _, terminated, truncated, info = self.env.step(per_step)
            self.infos.append(info)
            if terminated or truncated:
                break
        self.observations.append(obs)
        return self._view(obs), 0.0, terminated, truncated, {}


@dataclasses.dataclass
class Episode:
    """One finished episode, before it is turned into a record."""

    seed: int
    infos: list
    actions: np.ndarray
    action_seconds: list
    stop_reason: str
    goal_names: list
    goal_index: list
    frames: list | None = None
    goals: list | None = None  # the goal image each frame was compared with (videos)
    plan_energy: list | None = None
    observed_energy: list | None = None
    final_energy: float | None = None
    cem_best: list | None = None


@dataclasses.dataclass(frozen=True)
class EpisodeSetting:
    """What every planner episode of one evaluation shares.

    Args:
        preset: the planner preset.
        goal_names: the goal images pursued, in order.
        budgets: re-plans per goal image (sum: `replans`).
        replans: planned actions per episode (env steps // `frame_stride`).
        stop_energy: the resolved stop rule threshold (`None`: none).
        frame_stride: env steps per planned action (the world model's frame stride).
        delta_dims: action dims that are increments (split over the stride).
    """

    preset: PlannerPreset
    goal_names: tuple[str, ...]
    budgets: tuple[int, ...]
    replans: int
    stop_energy: float | None
    frame_stride: int = 1
    delta_dims: tuple[int, ...] = (0, 1, 2)


def run_planner_episode(env: RemoteEnv, planner: Planner, seed: int, setting: EpisodeSetting,
                        record: bool) -> Episode:
    """One MPC episode towards the task's goal images; the planner sees only `PlannerView`."""
    goal_names, preset = list(setting.goal_names), setting.preset
    obs, info = env.reset(seed=seed)
    goal_images = [np.asarray(info["goal_images"][n]) for n in goal_names]
    view = PlannerView(env, seed, obs, info, setting.frame_stride, setting.delta_dims)
    mpc = MPC(planner, view, list(zip(goal_images, setting.budgets)), max_steps=setting.replans,
              stop_energy=setting.stop_energy, record_frames=record,
              context_frames=preset.context_frames, early_advance=preset.early_advance,
              gripper=preset.gripper, execute_stride=False)  # the view spans the stride
    result = mpc.run(seed=seed)
    index = [int(i) for i in result.goal_index]
    last = index[-1] if index else 0
    frames = goals = None
    if record:
        frames = [np.asarray(o["image"]) for o in view.observations]
        goals = [goal_images[i] for i in index] + [goal_images[last]]
    return Episode(
        seed=seed, infos=view.infos, actions=result.actions,
        action_seconds=[float(s) for s in result.plan_seconds], stop_reason=result.stop_reason,
        goal_names=list(goal_names), goal_index=index, frames=frames, goals=goals,
        plan_energy=[float(e) for e in result.plan_energy],
        observed_energy=[float(e) for e in result.observed_energy],
        final_energy=float(result.final_energy),
        cem_best=[[float(e) for e in p.energy_trace["best"]] for p in result.plans],
    )


def run_baseline_episode(env: RemoteEnv, policy: str, seed: int, max_steps: int,
                         record: bool) -> Episode:
    """One episode of the random or the scripted expert baseline (run in the env process)."""
    obs, info = env.reset(seed=seed)
    goal = np.asarray(info["goal_image"])
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    infos, actions, seconds, frames = [info], [], [], [obs["image"]] if record else None
    stop_reason = "budget"
    for _ in range(max_steps):
        if policy == "expert":
            action, took, (obs, _, terminated, truncated, info) = env.step_policy()
        else:
            t0 = time.perf_counter()
            action = rng.uniform(low, high).astype(env.action_space.dtype)
            took = time.perf_counter() - t0
            obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        actions.append(np.asarray(action, "float32"))
        seconds.append(float(took))
        if record:
            frames.append(obs["image"])
        if terminated or truncated:
            stop_reason = "env_end"
            break
    return Episode(
        seed=seed, infos=infos, actions=np.asarray(actions, "float32"), action_seconds=seconds,
        stop_reason=stop_reason, goal_names=["goal"], goal_index=[0] * len(actions),
        frames=frames, goals=[goal] * len(frames) if record else None)


def episode_record(ep: Episode, index: int, replans: int, warmup_plans: int,
                   wall_seconds: float) -> dict:
    """The JSON record of a finished episode (one line of `episodes.jsonl`)."""
    infos = ep.infos
    # The env's time limit is set to the budget, so its truncation at the last step is the
    # budget running out, not the env ending the episode.
    stop_reason = "budget" if len(ep.actions) >= replans else ep.stop_reason
    final = infos[-1]
    stepped = infos[1:] or infos[:1]
    energies = None
    if ep.plan_energy is not None:
        energies = {
            "observed": ep.observed_energy,
            "plan": ep.plan_energy,
            "final": ep.final_energy,
            "cem_best_per_iteration": ep.cem_best,
        }
    return {
        "index": index,
        "seed": ep.seed,
        "success": bool(final["is_success"]),
        "success_any_step": bool(any(i["is_success"] for i in stepped)),
        "final_distance": float(final["distance"]),
        "distance": [float(i["distance"]) for i in infos],
        "grasped_at_end": bool(final.get("grasped", False)),
        "steps": int(len(ep.actions)),
        "env_steps": len(infos) - 1,
        "stop_reason": stop_reason,
        "plan_seconds": ep.action_seconds,
        "warmup_plans": int(warmup_plans),
        "goal_names": ep.goal_names,
        "goal_index": ep.goal_index,
        "energies": energies,
        "actions": ep.actions.tolist(),
        "variation": infos[0].get("variation"),
        "wall_seconds": float(wall_seconds),
    }
