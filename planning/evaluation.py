"""Zero-shot goal-image evaluation: the planner (or a baseline) in the MuJoCo tasks.

`evaluate` runs episodes with seeds `seed + i` in one scene-variation set and writes into an
output folder:

- `evaluation.json`: the settings (checked on a re-run, which continues the same evaluation);
- `episodes.jsonl`: one record per finished episode, appended (and fsynced) as it finishes;
- `results.json`: the aggregate (schema in `summarize`), rewritten atomically after each episode;
- `videos/episode-<seed>.mp4`: the first `videos` episodes, observation beside the goal image
  with the energy curve (baselines: the simulator's distance curve) under them;
- `summary.png`: success and final distance per episode, and the energy curves.

A re-run into the same folder skips finished episodes, so an interrupted or crashed evaluation
loses at most the episode it was in.

Policies:

- `"planner"`: MPC with the CEM planner and the world model towards the goal image. The
  environment is wrapped so that the planning loop receives only the camera frame and the
  proprio state, an empty `info` and a zero reward: it cannot consult the simulator's success,
  distance or privileged state. An episode ends when its step budget is spent (or on the
  planner's own latent stop rule, `stop_energy`); success is read afterwards from the final
  `info`. Pick-and-place pursues the sub-goal images `pregrasp`, `grasp`, `near_goal`, `goal`
  in order, grasp `pregrasp`, `goal` (`goals` picks a subsequence, e.g. the reference's
  `grasp`, `near_goal`, `goal`), with budgets in the reference's 4 : 10 : 4 proportion for
  grasp, near goal and goal, the pre-grasp weighted like the grasp, scaled to the episode's
  re-plans (`subgoal_budgets`: 9 + 9 + 23 + 9 for 50). Intermediate sub-goals get their whole
  budgets unless `early_advance`; an optional `GripperLatch` executes the gripper as
  open/close.
- `"random"`: uniform random actions in the action space (seeded by the episode seed).
- `"expert"`: the task's scripted expert (`envs.policies`), an upper-bound baseline. It reads
  privileged simulator state through `env.unwrapped`, so it runs inside the env process
  (`RemoteEnv(child_policy=...)`).

Baselines run the same step budget as the planner and never stop early on success either.
The environment always runs in a child process (`planning.remote_env.RemoteEnv`): MuJoCo's EGL
renderer and TensorFlow cannot share a process.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from planning.api import Planner
from planning.cem import CEMConfig
from planning.energy import EnergyConfig
from planning.mpc import MPC, GripperLatch
from planning.remote_env import RemoteEnv
from vjepa2.errors import UsageError

POLICIES = ("planner", "random", "expert")
PLANNER_PRESETS = ("default", "reference", "notebook")
VARIATIONS = ("train", "wide", "heldout")
# The reference's pick-and-place re-plans per sub-goal image; scaled to the episode budget.
REFERENCE_SUBGOAL_REPLANS = {"pregrasp": 4, "grasp": 4, "near_goal": 10, "goal": 4}
Z95 = 1.959963984540054  # two-sided 95% normal quantile
SETTINGS_FILE = "evaluation.json"
EPISODES_FILE = "episodes.jsonl"
RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.png"
VIDEO_FPS = 10.0  # slower than the 25 Hz control rate so that a step can be followed by eye
SUMMARY_EVERY = 10  # episodes between summary-plot refreshes (it is also drawn at the end)


# ---------------------------------------------------------------------------- small pieces


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0 or `n`
    successes, which small evaluations often give.

    Args:
        successes: number of successes `k`, `0 <= k <= n`.
        n: number of trials; `n = 0` gives the uninformative `(0, 1)`.
        z: normal quantile of the interval's confidence.

    Returns:
        `(lo, hi)`.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n; received successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Exact ends at 0 and n (rounding would leave a 1e-17 gap).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


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


GRIPPER_SEARCHES = ("gaussian", "paired")
GRIPPER_SWITCHES = ("any", "subgoal_start")


def planner_config(preset: str = "default", *, samples: int | None = None,
                   iterations: int | None = None, horizon: int | None = None,
                   l1_radius: float | None = None, xyz_clip: float | None = None,
                   gripper_search: str = "gaussian", metres_per_unit: float = 0.05,
                   action_dim: int = 4) -> CEMConfig:
    """The CEM config of a named budget, in the task's action units.

    `reference` and `notebook` are stated in metres (an L1 ball of 0.075 m; a clip of 0.05 m
    per axis); the tasks' actions move the gripper `metres_per_unit` metres per unit (Fetch:
    0.05), so the metre-valued limits are divided by it: the reference's ball becomes an L1
    radius of 1.5 units on dims 0-2, the notebook's xyz clip 1.0 unit (its gripper clip 0.75
    is kept).

    Args:
        preset: `"default"` (`CEMConfig()`, sized for a CPU), `"reference"` or `"notebook"`.
        samples: overrides the preset's samples.
        iterations: overrides its iterations.
        horizon: overrides its horizon.
        l1_radius: overrides its per-action L1 ball on the xyz dims, in metres.
        xyz_clip: overrides its per-axis limit on each xyz delta, in metres (the notebook:
            0.05); the gripper dim keeps the preset's limit (the notebook's 0.75) or none.
        gripper_search: `"gaussian"` (the reference: the gripper is one more Gaussian dim) or
            `"paired"` (the last dim is a choice between its bounds, each candidate imagined
            with both: `CEMConfig.binary_dims`).
        metres_per_unit: metres of gripper travel per action unit on the xyz dims.
        action_dim: the action size (the notebook's clip has one value per dim).

    Returns:
        A `CEMConfig`.
    """
    if preset not in PLANNER_PRESETS:
        raise UsageError(f"unknown planner preset {preset!r}; expected one of "
                         f"{', '.join(PLANNER_PRESETS)}")
    if preset == "default":
        config = CEMConfig()
    elif preset == "reference":
        config = CEMConfig.reference(l1_radius=0.075 / metres_per_unit)
    else:
        config = CEMConfig.notebook(action_dim=action_dim)
        clip = tuple(c / metres_per_unit if i < 3 else c for i, c in enumerate(config.clip))
        config = config.replace(clip=clip)
    overrides = {k: v for k, v in dict(samples=samples, iterations=iterations,
                                       horizon=horizon).items() if v is not None}
    if l1_radius is not None:
        overrides.update(l1_radius=l1_radius / metres_per_unit, ball_dims=(0, 1, 2))
    if xyz_clip is not None:
        if not (np.isfinite(xyz_clip) and xyz_clip > 0):
            raise UsageError(f"--xyz-clip must be > 0 metres; received {xyz_clip}")
        rest = config.clip[3:] if config.clip is not None else (1.0,) * (action_dim - 3)
        overrides.update(clip=(xyz_clip / metres_per_unit,) * 3 + tuple(rest))
    if gripper_search not in GRIPPER_SEARCHES:
        raise UsageError(f"unknown gripper search {gripper_search!r}; expected one of "
                         f"{', '.join(GRIPPER_SEARCHES)}")
    if gripper_search == "paired":
        overrides.update(binary_dims=(action_dim - 1,))
    try:
        return config.replace(**overrides)
    except ValueError as error:
        raise UsageError(f"planner {preset!r} with {overrides}: {error}") from None


def _jsonable(value: Any) -> Any:
    """Converts numpy scalars/arrays, tuples and non-finite floats into JSON-safe values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, obj: dict) -> None:
    _write_atomic(path, (json.dumps(_jsonable(obj), indent=1) + "\n").encode())


# ---------------------------------------------------------------------------- episodes


class _PlannerView:
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
class _Episode:
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


def _run_planner_episode(env: RemoteEnv, planner: Planner, seed: int, goal_names: list,
                         budgets: list, replans: int, record: bool,
                         stop_energy: float | None, context_frames: int, frame_stride: int,
                         delta_dims: Sequence[int], early_advance: bool = False,
                         gripper: GripperLatch | None = None) -> _Episode:
    obs, info = env.reset(seed=seed)
    goal_images = [np.asarray(info["goal_images"][n]) for n in goal_names]
    view = _PlannerView(env, seed, obs, info, frame_stride, delta_dims)
    mpc = MPC(planner, view, list(zip(goal_images, budgets)), max_steps=replans,
              stop_energy=stop_energy, record_frames=record, context_frames=context_frames,
              early_advance=early_advance, gripper=gripper)
    result = mpc.run(seed=seed)
    index = [int(i) for i in result.goal_index]
    last = index[-1] if index else 0
    frames = goals = None
    if record:
        frames = [np.asarray(o["image"]) for o in view.observations]
        goals = [goal_images[i] for i in index] + [goal_images[last]]
    return _Episode(
        seed=seed, infos=view.infos, actions=result.actions,
        action_seconds=[float(s) for s in result.plan_seconds], stop_reason=result.stop_reason,
        goal_names=list(goal_names), goal_index=index, frames=frames, goals=goals,
        plan_energy=[float(e) for e in result.plan_energy],
        observed_energy=[float(e) for e in result.observed_energy],
        final_energy=float(result.final_energy),
        cem_best=[[float(e) for e in p.energy_trace["best"]] for p in result.plans],
    )


def _run_baseline_episode(env: RemoteEnv, policy: str, seed: int, max_steps: int,
                          record: bool) -> _Episode:
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
    return _Episode(
        seed=seed, infos=infos, actions=np.asarray(actions, "float32"), action_seconds=seconds,
        stop_reason=stop_reason, goal_names=["goal"], goal_index=[0] * len(actions),
        frames=frames, goals=[goal] * len(frames) if record else None)


def _episode_record(ep: _Episode, index: int, replans: int, warmup_plans: int,
                    wall_seconds: float) -> dict:
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


# ---------------------------------------------------------------------------- pictures


def _curve_panel(values: Sequence[float], upto: int, width: int, height: int, title: str,
                 breaks: Sequence[int] = ()) -> np.ndarray:
    """A small plot of `values` with the part up to index `upto` highlighted (PIL, fast)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((4, 2), title, fill=(0, 0, 0))
    vals = np.asarray([np.nan if v is None else v for v in values], "float64")
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        draw.text((4, height // 2), "no values", fill=(120, 120, 120))
        return np.asarray(image)
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    left, right, top, bottom = 46, width - 6, 16, height - 6
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    draw.text((2, top), f"{hi:.3g}", fill=(90, 90, 90))
    draw.text((2, bottom - 10), f"{lo:.3g}", fill=(90, 90, 90))
    n = len(vals)

    def xy(i):
        x = left + (right - left) * (i / max(n - 1, 1))
        y = bottom - (bottom - top) * ((vals[i] - lo) / (hi - lo))
        return x, y

    for b in breaks:  # sub-goal switches
        x = xy(b)[0]
        draw.line((x, top, x, bottom), fill=(200, 200, 255))
    points = [xy(i) for i in range(n) if np.isfinite(vals[i])]
    if len(points) > 1:
        draw.line(points, fill=(200, 200, 200), width=1)
    done = [xy(i) for i in range(min(upto + 1, n)) if np.isfinite(vals[i])]
    if len(done) > 1:
        draw.line(done, fill=(30, 90, 200), width=2)
    if upto < n and np.isfinite(vals[upto]):
        x, y = xy(upto)
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(220, 40, 40))
    return np.asarray(image)


def _write_episode_video(path: Path, ep: _Episode, record: dict) -> None:
    from PIL import Image, ImageDraw

    from vjepa2.data.video_io import write_video

    if ep.observed_energy is not None:
        curve = list(ep.observed_energy) + [ep.final_energy]
        title = "latent energy of the observation to its (sub-)goal"
    else:
        curve = record["distance"]
        title = "distance to goal (m, simulator; baseline)"
    breaks = [t for t in range(1, len(ep.goal_index)) if ep.goal_index[t] != ep.goal_index[t - 1]]
    scale = max(1, 256 // ep.frames[0].shape[0])
    frames = []
    for t, (obs, goal) in enumerate(zip(ep.frames, ep.goals)):
        pair = np.concatenate([obs, goal], axis=1).repeat(scale, 0).repeat(scale, 1)
        top = Image.fromarray(np.ascontiguousarray(pair))
        draw = ImageDraw.Draw(top)
        name = ep.goal_names[ep.goal_index[min(t, len(ep.goal_index) - 1)]] if ep.goal_index \
            else ep.goal_names[-1]
        draw.text((4, 2), f"seed {ep.seed}  t={t}", fill=(255, 255, 255))
        draw.text((pair.shape[1] // 2 + 4, 2), f"goal: {name}", fill=(255, 255, 255))
        panel = _curve_panel(curve, t, pair.shape[1], 110, title, breaks)
        frames.append(np.concatenate([np.asarray(top), panel], axis=0))
    write_video(path, np.stack(frames).astype(np.uint8), fps=VIDEO_FPS)


def _write_summary_png(path: Path, records: list[dict], results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        idx = [r["index"] for r in records]
        dist = [r["final_distance"] for r in records]
        colors = ["tab:green" if r["success"] else "tab:red" for r in records]
        ax1.scatter(idx, dist, c=colors, s=18)
        ax1.axhline(0.05, color="grey", lw=0.8, ls="--", label="success radius 0.05 m")
        ax1.set_xlabel("episode")
        ax1.set_ylabel("final distance to goal (m)")
        lo, hi = results["ci95"]
        ax1.set_title(f"{results['task']}/{results['variation']} {results['policy']}: success "
                      f"{results['successes']}/{results['episodes']} "
                      f"(95% CI {lo:.2f}-{hi:.2f})", fontsize=9)
        ax1.legend(fontsize=7)
        planner = any(r["energies"] for r in records)
        for r in records:
            if planner and r["energies"]:
                ys = list(r["energies"]["observed"]) + [r["energies"]["final"]]
            else:
                ys = r["distance"]
            ax2.plot(ys, color="tab:green" if r["success"] else "tab:red", lw=0.7, alpha=0.6)
        ax2.set_xlabel("step")
        ax2.set_ylabel("latent energy to (sub-)goal" if planner else "distance to goal (m)")
        ax2.set_title("energy curves (green: success at end)" if planner
                      else "distance curves (baseline; green: success at end)", fontsize=9)
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------- bookkeeping


def _load_records(path: Path) -> dict[int, dict]:
    """Finished episodes by seed; a torn last line (a crash while appending) is dropped."""
    if not path.exists():
        return {}
    lines = path.read_bytes().split(b"\n")
    records, good = {}, []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if any(rest.strip() for rest in lines[n + 1:]):
                raise UsageError(f"{path} line {n + 1} is not JSON; the file is damaged "
                                 "(remove the line or use another --out)") from None
            print(f"evaluate: dropping a partly written last line of {path}", file=sys.stderr)
            _write_atomic(path, b"".join(g + b"\n" for g in good))
            break
        records.setdefault(int(record["seed"]), record)
        good.append(line)
    return records


def _append_record(path: Path, record: dict) -> None:
    line = (json.dumps(_jsonable(record)) + "\n").encode()
    with open(path, "ab") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS_FILE
    wanted = _jsonable(settings)
    if path.exists():
        found = json.loads(path.read_text())
        for key in sorted(set(found) | set(wanted)):
            if found.get(key) != wanted.get(key):
                raise UsageError(f"{out} holds an evaluation with {key}={found.get(key)!r}; "
                                 f"received {key}={wanted.get(key)!r} (use another --out or the "
                                 "same settings)")
        return
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, wanted)


def summarize(records: Sequence[dict], settings: dict, requested: int,
              extra: dict | None = None) -> dict:
    """The `results.json` content from episode records.

    Fields: `task`, `env_id`, `variation`, `policy`, `episodes` (finished), `episodes_requested`,
    `complete`, `successes`, `success_rate` and `ci95` `[lo, hi]` (Wilson, success *at the end of
    the episode*: the headline), `success_any_step` (`successes`, `rate`, `ci95`; success reached
    at some step, possibly lost again: a diagnostic, not the headline), `final_distance`
    (`mean`, `median`, metres), `steps_mean`, `stop_reasons`, `plan_seconds_per_action`
    (`median`, `p95`, `mean`, `count`, warm-up plans excluded; for baselines the policy's time per
    action), `first_plan_seconds`, `seeds`, `max_steps`, `subgoals` (names and budgets),
    `model`, `planner` (preset, CEM config, energy, action units) or `null` for baselines,
    `baseline` (`null` for the planner), and whatever `extra` adds (`wall_seconds`, ...).
    """
    n = len(records)
    k = sum(r["success"] for r in records)
    k_any = sum(r["success_any_step"] for r in records)
    seconds, first = [], []
    for r in records:
        w = r["warmup_plans"]
        seconds.extend(r["plan_seconds"][w:])
        first.extend(r["plan_seconds"][:w])
    seconds = np.asarray(seconds, "float64")
    distances = np.asarray([r["final_distance"] for r in records], "float64")
    stops: dict[str, int] = {}
    for r in records:
        stops[r["stop_reason"]] = stops.get(r["stop_reason"], 0) + 1
    results = {
        "task": settings["task"],
        "env_id": settings["env_id"],
        "variation": settings["variation"],
        "policy": settings["policy"],
        "episodes": n,
        "episodes_requested": int(requested),
        "complete": n >= requested,
        "successes": int(k),
        "success_rate": k / n if n else None,
        "ci95": list(wilson_interval(k, n)),
        "success_definition": "info['is_success'] after the episode's last step",
        "success_any_step": {"successes": int(k_any), "rate": k_any / n if n else None,
                             "ci95": list(wilson_interval(k_any, n)),
                             "note": "success at any step (possibly lost again); diagnostic "
                                     "only, the headline is success at the end"},
        "final_distance": {"mean": float(distances.mean()) if n else None,
                           "median": float(np.median(distances)) if n else None},
        "steps_mean": float(np.mean([r["steps"] for r in records])) if n else None,
        "stop_reasons": stops,
        "plan_seconds_per_action": {
            "median": float(np.median(seconds)) if seconds.size else None,
            "p95": float(np.percentile(seconds, 95)) if seconds.size else None,
            "mean": float(seconds.mean()) if seconds.size else None,
            "count": int(seconds.size),
            "note": "wall seconds to choose one action (planner: encode + CEM), excluding the "
                    "first plan of each process (tracing/compilation: first_plan_seconds)",
        },
        "first_plan_seconds": first,
        "seeds": [settings["seed"], settings["seed"] + requested - 1],
        "max_steps": settings["max_steps"],
        "subgoals": settings["subgoals"],
        "image_size": settings["image_size"],
        "model": settings["model"],
        "planner": settings["planner"],
        "baseline": settings["baseline"],
    }
    results.update(extra or {})
    return results


# ---------------------------------------------------------------------------- evaluate


def _task_spec(task: str):
    from envs.tasks import get_task

    return get_task(task)  # UsageError naming the valid tasks


def _planner_bounds(conventions: dict, action_space, frame_stride: int,
                    delta_dims: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame-step action bounds: the model's own when it states them, else the env's with
    the delta dims widened by the stride (a frame step sums `frame_stride` env actions)."""
    if "action_low" in conventions and "action_high" in conventions:
        return (np.asarray(conventions["action_low"], "float32"),
                np.asarray(conventions["action_high"], "float32"))
    low = np.array(action_space.low, "float32")
    high = np.array(action_space.high, "float32")
    low[list(delta_dims)] *= frame_stride
    high[list(delta_dims)] *= frame_stride
    return low, high


def _model_info(world_model, model_path) -> dict:
    info = {"path": None if model_path is None else str(Path(model_path).resolve()),
            "class": type(world_model).__name__,
            "conventions": getattr(world_model, "conventions", None)}
    get_config = getattr(world_model, "get_config", None)
    if callable(get_config):
        info["config"] = get_config()
    return info


def _gripper_latch(policy: str, threshold: float | None, start: str | None, switch: str,
                   hold: bool) -> GripperLatch | None:
    """`evaluate`'s gripper options checked and turned into a `GripperLatch` (or `None`)."""
    if threshold is None:
        given = [flag for flag, on in (("--gripper-start", start is not None),
                                       ("--gripper-switch", switch != "any"),
                                       ("--gripper-hold", bool(hold))) if on]
        if given:
            raise UsageError(f"{' and '.join(given)} needs --gripper-latch")
        return None
    if policy != "planner":
        raise UsageError(f"--gripper-latch applies to the planner, not the {policy} baseline")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise UsageError(f"--gripper-latch must be >= 0; received {threshold}")
    starts = {None: None, "open": "high", "closed": "low"}
    if start not in starts:
        raise UsageError(f"--gripper-start must be open or closed; received {start}")
    if switch not in GRIPPER_SWITCHES:
        raise UsageError(f"--gripper-switch must be one of {', '.join(GRIPPER_SWITCHES)}; "
                         f"received {switch}")
    if switch == "subgoal_start" and start is None:
        raise UsageError("--gripper-switch subgoal_start needs --gripper-start (open or closed)")
    return GripperLatch(threshold=float(threshold), initial=starts[start],
                        hold_on_switch=bool(hold), at_subgoal_start=switch == "subgoal_start")


def evaluate(task: str, episodes: int, out: str | os.PathLike, *, variation: str = "heldout",
             policy: str = "planner", world_model=None, model_path: str | None = None,
             planner: str = "default", cem_config: CEMConfig | None = None,
             energy: EnergyConfig | None = None, max_steps: int | None = None,
             videos: int = 4, seed: int = 1000, image_size: int | None = None,
             noise: float | None = None, stop_energy: float | None = None,
             context_frames: int = 1, goals: Sequence[str] | None = None,
             early_advance: bool = False, gripper_latch: float | None = None,
             gripper_start: str | None = None, gripper_switch: str = "any",
             gripper_hold: bool = False, progress: bool = True) -> dict:
    """Runs (or continues) an evaluation and writes its outputs into `out`.

    Args:
        task: `reach`, `push`, `grasp`, `reach_with_object` or `pick_and_place`.
        episodes: episodes wanted in `out` (seeds `seed .. seed + episodes - 1`); finished ones
            are skipped.
        out: output folder (see the module docstring).
        variation: `"train"`, `"wide"` or `"heldout"` scene variations.
        policy: `"planner"`, `"random"` or `"expert"`.
        world_model: the world model (`planning.WorldModel`), for the planner.
        model_path: where `world_model` came from (recorded, and part of the settings a re-run
            must match).
        planner: the CEM budget's name (`planner_config`), recorded in the results.
        cem_config: the `CEMConfig` to plan with; defaults to `planner_config(planner)`.
        energy: the planner's `EnergyConfig` (default: L1 on the final step).
        max_steps: env steps per episode; defaults to the task's 50-step episode. A world
            model with `conventions["frame_stride"] = s` re-plans every `s` env steps, so it
            gets `max_steps // s` re-plans.
        videos: how many of the first episodes to save as mp4.
        seed: base seed.
        image_size: camera frame size (default 128, as `vjepa2 collect` logs; the world model
            resizes frames to its own size).
        noise: the expert's action noise (default: `envs.policies.DEFAULT_NOISE`).
        stop_energy: the planner's stop rule (latent distance to the final goal); `None`
            runs every episode to its budget.
        context_frames: frames of context the world model sees (the reference: 1).
        goals: names of the task's goal images to pursue, in order, ending with `"goal"`
            (default: all of the task's, e.g. grasp's `pregrasp, goal`); `["goal"]` plans
            towards the final goal image alone.
        early_advance: let the stop rule end an intermediate sub-goal before its budget (off:
            the reference's fixed sub-goal budgets; the stop rule then only ends the episode).
        gripper_latch: if set, the gripper is executed as open/close, switching only when the
            planned value is at least this far from zero (`planning.GripperLatch`). `None` here
            is off; the command line's default turns it on for reach-with-object
            (`gripper_latch_setting`).
        gripper_start: with `gripper_latch`, `"open"` or `"closed"` latches the gripper at the
            start of each episode (e.g. closed when the task starts holding the object); `None`
            lets the first plan decide.
        gripper_switch: with `gripper_latch`, `"any"` lets any plan switch it; `"subgoal_start"`
            only the first plan of each later sub-goal (each goal image then fixes one gripper
            state, chosen when it is first pursued; the first sub-goal keeps `gripper_start`,
            which is therefore required).
        gripper_hold: with `gripper_latch`, the arm holds still on a step where the latch
            switches, so the fingers close or open in place.
        progress: print a line per episode.

    Returns:
        The results dict (also in `out/results.json`).

    Example:

    >>> evaluate("reach", 20, "eval/reach_expert", policy="expert")["success_rate"]
    """
    from envs.policies import DEFAULT_NOISE, STEP_METRES
    from envs.tasks import MAX_EPISODE_STEPS

    spec = _task_spec(task)
    if variation not in VARIATIONS:
        raise UsageError(f"unknown variation {variation!r}; expected one of "
                         f"{', '.join(VARIATIONS)}")
    if policy not in POLICIES:
        raise UsageError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise UsageError(f"episodes must be a positive integer; received {episodes!r}")
    if videos < 0:
        raise UsageError(f"--videos must be >= 0; received {videos}")
    max_steps = MAX_EPISODE_STEPS if max_steps is None else int(max_steps)
    if max_steps < 1:
        raise UsageError(f"--max-steps must be >= 1; received {max_steps}")
    if policy == "planner" and world_model is None:
        raise UsageError("the planner policy needs a world model (--model RUN)")
    if policy != "planner" and world_model is not None:
        raise UsageError(f"the {policy} baseline takes no world model")
    conventions = dict(getattr(world_model, "conventions", None) or {})
    image_size = 128 if image_size is None else int(image_size)
    frame_stride = int(conventions.get("frame_stride", 1))
    delta_dims = tuple(int(d) for d in conventions.get("action_delta_dims", (0, 1, 2)))
    replans = max_steps // frame_stride
    if replans < 1:
        raise UsageError(f"--max-steps {max_steps} is shorter than the world model's frame "
                         f"stride {frame_stride}")
    if goals is not None:
        goals = list(goals)
        unknown = [g for g in goals if g not in spec.goal_names]
        if unknown or not goals or goals[-1] != "goal" or len(set(goals)) != len(goals):
            raise UsageError(f"--goals must name distinct goal images of {task} ("
                             f"{', '.join(spec.goal_names)}) ending with goal; received "
                             f"{','.join(goals)}")
        if policy != "planner":
            raise UsageError(f"--goals applies to the planner; the {policy} baseline pursues "
                             "the final goal")
    latch = _gripper_latch(policy, gripper_latch, gripper_start, gripper_switch, gripper_hold)
    goal_names = (goals or list(spec.goal_names)) if policy == "planner" else ["goal"]
    budgets = subgoal_budgets(goal_names, replans)
    planner_info = baseline_info = model_info = None
    if policy == "planner":
        cem_config = cem_config if cem_config is not None else planner_config(
            planner, metres_per_unit=STEP_METRES)
        planner_info = {
            "preset": planner,
            "cem": dataclasses.asdict(cem_config),
            "energy": dataclasses.asdict(energy) if energy is not None
            else dataclasses.asdict(EnergyConfig()),
            "action_units": f"env actions: xyz in units of {STEP_METRES} m per step, gripper "
                            "in [-1, 1]; metre-valued preset limits converted to these units",
            "stop_energy": stop_energy,
            "early_advance": bool(early_advance),
            "gripper_latch": None if gripper_latch is None else float(gripper_latch),
            "gripper_start": gripper_start,
            "gripper_switch": gripper_switch,
            "gripper_hold": bool(gripper_hold),
            "context_frames": context_frames,
            "frame_stride": frame_stride,
            "replans": replans,
        }
        model_info = _model_info(world_model, model_path)
    elif policy == "expert":
        noise = DEFAULT_NOISE if noise is None else float(noise)
        baseline_info = {"kind": "expert", "noise": noise,
                         "note": "scripted expert reading privileged simulator state (upper "
                                 "bound); runs in the env process"}
    else:
        baseline_info = {"kind": "random", "note": "uniform random actions in the action "
                         "space, seeded by the episode seed (lower bound)"}
    settings = {
        "task": task, "env_id": spec.env_id, "variation": variation, "policy": policy,
        "seed": int(seed), "max_steps": max_steps, "image_size": image_size,
        "subgoals": {"names": goal_names, "budgets": budgets},
        "model": None if model_info is None else {"path": model_info["path"],
                                                  "class": model_info["class"]},
        "planner": planner_info, "baseline": baseline_info,
    }
    out = Path(out)
    _check_settings(out, settings)
    settings["model"] = model_info  # the full model record goes into results only
    episodes_path = out / EPISODES_FILE
    records = _load_records(episodes_path)
    seeds = [int(seed) + i for i in range(episodes)]
    todo = [(i, s) for i, s in enumerate(seeds) if s not in records]
    run_start = time.perf_counter()
    previous_wall = 0.0
    if (out / RESULTS_FILE).exists():
        previous_wall = float(json.loads((out / RESULTS_FILE).read_text())
                              .get("wall_seconds_total", 0.0))

    def results_now(final: bool) -> dict:
        done = [records[s] for s in seeds if s in records]
        wall = time.perf_counter() - run_start
        extra = {"wall_seconds_this_run": wall, "wall_seconds_total": previous_wall + wall,
                 "seconds_per_episode": (float(np.mean([r["wall_seconds"] for r in done]))
                                         if done else None)}
        results = summarize(done, settings, episodes, extra)
        _write_json(out / RESULTS_FILE, results)
        if final and done:
            _write_summary_png(out / SUMMARY_FILE, done, results)
        return results

    if not todo:
        results = results_now(final=True)
        if progress:
            print(f"evaluate: all {episodes} episodes already in {out}")
        return results

    env_kwargs = dict(variation=variation, image_size=image_size, max_episode_steps=max_steps)
    if policy == "expert":
        env_kwargs.update(child_policy="envs.policies:make_policy",
                          child_policy_kwargs={"name": task, "noise": noise})
    finished = False
    try:
        with RemoteEnv(spec.env_id, modules=("envs",), **env_kwargs) as env:
            plan = None
            if policy == "planner":
                low, high = _planner_bounds(conventions, env.action_space, frame_stride,
                                            delta_dims)
                plan = Planner(world_model, action_low=low, action_high=high,
                               config=cem_config, energy=energy)
            warmup = 1 if policy == "planner" else 0
            for n, (index, ep_seed) in enumerate(todo):
                t0 = time.perf_counter()
                record_video = index < videos
                if policy == "planner":
                    ep = _run_planner_episode(env, plan, ep_seed, goal_names, budgets,
                                              replans, record_video, stop_energy,
                                              context_frames, frame_stride, delta_dims,
                                              early_advance, latch)
                else:
                    ep = _run_baseline_episode(env, policy, ep_seed, max_steps, record_video)
                record = _episode_record(ep, index, replans if plan else max_steps,
                                         warmup if n == 0 else 0,
                                         time.perf_counter() - t0)
                if record_video:  # before the record, whose presence marks the episode done
                    _write_episode_video(out / "videos" / f"episode-{ep_seed:08d}.mp4", ep,
                                         record)
                _append_record(episodes_path, record)
                records[ep_seed] = record
                results = results_now(final=(n + 1) % SUMMARY_EVERY == 0)
                if progress:
                    _print_episode(record, len(records), episodes)
        finished = True
    finally:
        # Interrupted or not, the results and plot describe every finished episode.
        results = results_now(final=True)
    if finished and progress:
        print_summary(results, out)
    return results


def _print_episode(record: dict, done: int, total: int) -> None:
    seconds = record["plan_seconds"][record["warmup_plans"]:]
    per_action = f", {np.median(seconds):.3f} s/action" if seconds else ""
    print(f"evaluate: episode {done}/{total} seed {record['seed']}: "
          f"{'success' if record['success'] else 'failure'} (final distance "
          f"{record['final_distance']:.3f} m, {record['steps']} steps, "
          f"{record['stop_reason']}{per_action}, {record['wall_seconds']:.1f} s)", flush=True)


def print_summary(results: dict, out: str | os.PathLike) -> None:
    """Prints the human summary of `results` on stdout."""
    lo, hi = results["ci95"]
    any_step = results["success_any_step"]
    sec = results["plan_seconds_per_action"]
    rate = results["success_rate"]
    lines = [
        f"evaluate {results['task']}/{results['variation']} policy={results['policy']}"
        + (f" planner={results['planner']['preset']}" if results["planner"] else ""),
        f"  success at end : {results['successes']}/{results['episodes']} = "
        f"{rate if rate is not None else float('nan'):.2f} (95% CI {lo:.2f}-{hi:.2f})",
        f"  success at any step (diagnostic): {any_step['successes']}/{results['episodes']}",
        f"  final distance : median {results['final_distance']['median'] or float('nan'):.3f} m",
    ]
    if sec["median"] is not None:
        lines.append(f"  seconds/action : median {sec['median']:.4f}, p95 {sec['p95']:.4f}")
    lines.append(f"  wall time      : {results['wall_seconds_total']:.1f} s "
                 f"({results['seconds_per_episode'] or 0:.2f} s/episode)")
    lines.append(f"  written        : {Path(out) / RESULTS_FILE}")
    print("\n".join(lines), flush=True)


def load_model(path: str | os.PathLike):
    """Loads the world model of a run folder, with one-line `UsageError`s for bad folders."""
    from vjepa2.models.world_model import resolve_run_dir

    folder = resolve_run_dir(path)
    if not folder.is_dir():
        raise UsageError(f"--model {path} is not a folder")
    try:
        from vjepa2.models.world_model import load_world_model
    except ModuleNotFoundError as error:
        if error.name != "vjepa2.models.world_model":
            raise
        raise UsageError("this installation has no world-model loader "
                         "(vjepa2.models.world_model); the planner policy cannot run") from None
    try:
        return load_world_model(folder)
    except FileNotFoundError as error:
        raise UsageError(f"--model {path} holds no world model ({error})") from None


def evaluate_cli(args) -> int:
    """`vjepa2 evaluate`: runs `evaluate` from the parsed arguments; returns the exit code."""
    _task_spec(args.task)
    if args.videos < 0:
        raise UsageError(f"--videos must be >= 0; received {args.videos}")
    world_model = cem_config = None
    if args.policy == "planner":
        from envs.policies import STEP_METRES
        from vjepa2.models.world_model import SHIPPED

        cem_config = planner_config(args.planner, samples=args.samples,
                                    iterations=args.iterations, horizon=args.horizon,
                                    l1_radius=getattr(args, "l1_radius", None),
                                    xyz_clip=getattr(args, "xyz_clip", None),
                                    gripper_search=getattr(args, "gripper_search", None)
                                    or "gaussian",
                                    metres_per_unit=STEP_METRES)
        args.model = SHIPPED if args.model is None else args.model
        world_model = load_model(args.model)
    else:
        ignored = [name for name in ("model", "samples", "iterations", "horizon", "l1_radius",
                                     "xyz_clip", "stop_energy", "goals", "gripper_latch",
                                     "gripper_start", "gripper_search", "gripper_switch",
                                     "gripper_hold")
                   if getattr(args, name) is not None]
        if ignored:
            raise UsageError(f"--policy {args.policy} takes no "
                             f"{', '.join('--' + n.replace('_', '-') for n in ignored)}")
    results = evaluate(args.task, args.episodes, args.out, variation=args.variation,
                       policy=args.policy, world_model=world_model, model_path=args.model,
                       planner=args.planner, cem_config=cem_config, max_steps=args.max_steps,
                       videos=args.videos, seed=args.seed,
                       image_size=getattr(args, "image_size", None),
                       stop_energy=stop_energy_setting(args.stop_energy, world_model),
                       goals=(None if getattr(args, "goals", None) is None
                              else [g.strip() for g in args.goals.split(",")]),
                       early_advance=bool(getattr(args, "early_advance", False)),
                       gripper_switch=getattr(args, "gripper_switch", None) or "any",
                       gripper_hold=bool(getattr(args, "gripper_hold", None)),
                       **gripper_latch_setting(getattr(args, "gripper_latch", None),
                                               getattr(args, "gripper_start", None),
                                               args.task, args.policy))
    return 0 if results["complete"] else 1


# Tasks whose planner executes the gripper through a latch unless told otherwise: the task
# starts with the object held, and a gripper planned freely opens and drops it (validation
# seeds 2000-2009: 7/10 with the latch, 3/10 without).
TASK_GRIPPER_LATCH = {"reach_with_object": (0.6, "closed")}


def gripper_latch_setting(requested: str | None, start: str | None, task: str,
                          policy: str = "planner") -> dict:
    """`evaluate`'s `gripper_latch` and `gripper_start` from the command line's values.

    `requested`: `None` for the task's default (`TASK_GRIPPER_LATCH`, else none), `"off"`,
    or a threshold.
    """
    if policy != "planner":  # baselines: passed on for `evaluate` to refuse
        return {"gripper_latch": requested, "gripper_start": start}
    if requested is None:
        threshold, default_start = TASK_GRIPPER_LATCH.get(task, (None, None))
        return {"gripper_latch": threshold,
                "gripper_start": start if start is not None else default_start}
    if str(requested).strip().lower() == "off":
        if start is not None:
            raise UsageError("--gripper-start needs --gripper-latch; received --gripper-latch "
                             "off")
        return {"gripper_latch": None, "gripper_start": None}
    try:
        threshold = float(requested)
    except ValueError:
        raise UsageError("--gripper-latch must be a number >= 0 or off; received "
                         f"{requested}") from None
    return {"gripper_latch": threshold, "gripper_start": start}


def stop_energy_setting(requested: float | None, world_model) -> float | None:
    """The stop rule's threshold: `requested` if given (0 disables), else the model's own."""
    if requested is not None:
        if not np.isfinite(requested) or requested < 0:
            raise UsageError(f"--stop-energy must be >= 0; received {requested}")
        return float(requested) or None
    conventions = getattr(world_model, "conventions", None) or {}
    value = conventions.get("stop_energy") if isinstance(conventions, dict) else None
    return None if value is None else float(value)
