"""Zero-shot goal-image evaluation: the planner (or a baseline) in the MuJoCo tasks.

`evaluate` runs episodes with seeds `seed + i` in one scene-variation set and writes the
results folder described in `store.py` (settings, episode records, `results.json`, videos, a
summary plot); a re-run into the same folder continues it.

Policies:
- `"planner"`: MPC with the CEM planner and the world model towards the goal images, as the
  task's planner preset says (`presets.py`). The loop plans through `PlannerView`: it cannot
  consult the simulator's success, distance or privileged state. An episode ends when its step
  budget is spent (or on the planner's own latent stop rule); success is read afterwards from
  the final `info`.
- `"random"`: uniform random actions in the action space (seeded by the episode seed).
- `"expert"`: the task's scripted expert (`envs.policies`), an upper-bound baseline. It reads
  privileged simulator state, so it runs inside the env process.

Baselines run the same step budget as the planner and never stop early on success either. The
environment always runs in a child process (`planning.remote_env.RemoteEnv`): MuJoCo's EGL
renderer and TensorFlow cannot share a process.
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from typing import Sequence

import numpy as np

from envs.policies import DEFAULT_NOISE, STEP_METRES
from envs.tasks import MAX_EPISODE_STEPS, get_task
from planning.api import Planner
from planning.batching import BatchingPlanner
from planning.remote_planner import RemotePlanner, RemotePlannerError
from planning.preset import PlannerPreset
from planning.remote_env import RemoteEnv
from vjepa2.app.evaluation import report
from vjepa2.app.evaluation.episodes import (EpisodeSetting, episode_record, run_baseline_episode,
                                            run_planner_episode)
from vjepa2.app.evaluation.presets import resolve_preset, subgoal_budgets
from vjepa2.app.evaluation.store import SUMMARY_FILE, ResultsStore
from vjepa2.app.evaluation.workers import ShardPlan, Workers, model_source, spread
from vjepa2.app.models import model_record
from vjepa2.errors import UsageError
from vjepa2.progress import Progress

POLICIES = ("planner", "random", "expert")
VARIATIONS = ("train", "wide", "heldout")
SUMMARY_EVERY = 10  # episodes between summary-plot refreshes (it is also drawn at the end)


def evaluate(task: str, episodes: int, out: str | os.PathLike, *,
             preset: str | PlannerPreset | None = None, overrides: Sequence[str] = (),
             policy: str = "planner", world_model=None, model_path=None,
             variation: str = "heldout", max_steps: int | None = None, videos: int = 4,
             seed: int = 1000, image_size: int | None = None, noise: float | None = None,
             parallel: int = 1, remote: str | None = None, workers: Workers | None = None,
             progress: bool = True) -> dict:
    """Runs (or continues) an evaluation and writes its outputs into `out`.

    Args:
        task: `reach`, `push`, `grasp`, `reach_with_object` or `pick_and_place`.
        episodes: episodes wanted in `out` (seeds `seed + i`); finished ones are skipped.
        out: output folder (`store.py`).
        preset: the planner preset: `None` for the task's default, a name of the task's table
            (`presets.PRESETS`), a saved `evaluation.json`, or a `PlannerPreset`.
        overrides: `field=value` changes to the preset (`PlannerPreset.override`).
        policy: `"planner"`, `"random"` or `"expert"`.
        world_model: the world model (`planning.WorldModel`), for the planner.
        model_path: the folder `world_model` was loaded from (recorded with a digest of its
            weights; part of the settings a re-run must match).
        variation: `"train"`, `"wide"` or `"heldout"` scene variations.
        max_steps: env steps per episode (default: the task's 50). A world model with
            `conventions["frame_stride"] = s` re-plans every `s` env steps.
        videos: how many of the first episodes to save as mp4.
        seed: base seed.
        image_size: camera frame size (default 128; the world model resizes frames).
        noise: the expert's action noise (default `envs.policies.DEFAULT_NOISE`).
        parallel: environments run at once, each in its own process; the planner plans for
            all of them in one batched call per step (`planning.BatchingPlanner`). Episodes
            and their records are the same as with 1, up to float rounding.
        remote: the URL of a `vjepa2 serve` service to plan with instead of `world_model`
            (its CEM settings must be the preset's; each env gets its own session).
        workers: spread the episodes over worker processes or Ray tasks (`workers.Workers`),
            each with its own model and `parallel` envs; same records, one results folder.
        progress: print a line per episode and a summary.

    Returns:
        The results dict (also in `out/results.json`; fields in `report.summarize`), e.g.
        `evaluate("reach", 20, "eval/reach_expert", policy="expert")["success_rate"]`.
    """
    _check_modes(policy, parallel, remote, workers)
    service = None if remote is None else _connect(remote, world_model)
    world_model = service.world_model if service is not None else world_model
    spec, max_steps = _check_arguments(task, episodes, policy, variation, max_steps, videos,
                                       world_model, preset, overrides, noise)
    record = None if world_model is None else (
        service.health["model"] if service else model_record(world_model, model_path))
    setting, settings = _settings(spec, policy, world_model, record, preset, overrides,
                                  variation, max_steps, seed, image_size, noise)
    _check_service(service, setting)
    store = ResultsStore(out, dict(settings))  # a copy: the folder's settings name the model
    settings["model"] = record  # results.json describes it in full
    seeds = [int(seed) + i for i in range(episodes)]
    todo = [(i, s) for i, s in enumerate(seeds) if s not in store.records]
    if not todo:
        if progress:
            print(f"evaluate: all {episodes} episodes already in {store.out}")
        return _write_results(store, seeds, settings, final=True)
    finished = False
    bar = Progress(episodes, f"evaluate {task}/{variation}", "ep", initial=episodes - len(todo),
                   seconds=float("inf"), enabled=progress)
    run = _Run(settings, setting, videos, _Recorder(store, seeds, settings, bar, progress),
               service)
    try:
        with bar:
            if workers is not None:
                run.spread(workers, todo, parallel, model_source(world_model, model_path, record))
            elif parallel > 1:
                run.parallel(spec, world_model, todo, parallel)
            else:
                run.sequential(spec, world_model, todo)
        finished = True
    finally:
        # Interrupted or not, the results and plot describe every finished episode.
        results = _write_results(store, seeds, settings, final=True)
        if service is not None:
            service.close()
    if finished and progress:
        report.print_summary(results, store.out)
    return results


def _check_modes(policy: str, parallel: int, remote: str | None, workers) -> None:
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise UsageError(f"--parallel must be a positive integer; received {parallel!r}")
    if remote is not None and policy != "planner":
        raise UsageError(f"--remote applies to the planner, not the {policy} baseline")
    if remote is not None and workers is not None:
        raise UsageError("--remote and --workers exclude each other (a service plans for its "
                         "clients; give it more clients with --parallel)")


def _env_kwargs(settings: dict) -> dict:
    """The env process's arguments (the expert baseline runs inside it)."""
    kwargs = dict(variation=settings["variation"], image_size=settings["image_size"],
                  max_episode_steps=settings["max_steps"], view=settings.get("view", "scene"))
    if settings["policy"] == "expert":
        kwargs.update(child_policy="envs.policies:make_policy", child_policy_kwargs={
            "name": settings["task"], "noise": settings["baseline"]["noise"]})
    return kwargs


class _Recorder:
    """Where finished episodes go in the process that owns the results folder (thread-safe):
    the store, `results.json`, the progress bar and the console."""

    def __init__(self, store, seeds, settings, bar, progress):
        self.store, self.seeds, self.settings = store, seeds, settings
        self.bar, self.progress = bar, progress
        self.lock = threading.Lock()
        self.finished = 0

    def begin(self) -> None:
        self.store.begin()

    def video_path(self, seed: int):
        return self.store.video_path(seed)

    def add(self, record: dict) -> None:
        """Stores a finished episode (its video, if any, is already written)."""
        with self.lock:
            self.store.add(record)
            self.finished += 1
            _write_results(self.store, self.seeds, self.settings,
                           final=self.finished % SUMMARY_EVERY == 0)
            if self.progress:
                self.bar.write(report.episode_line(record, len(self.store.records),
                                                   len(self.seeds)))
            self.bar.update(1, successes=sum(r["success"]
                                             for r in self.store.finished(self.seeds)))


class _Run:
    """One run of the harness over the episodes still to do, alone or in parallel.

    Finished episodes go to `sink` (`begin()` once the envs and the planner are up,
    `video_path(seed)`, `add(record)`): the results folder's `_Recorder` here, or a worker's
    outbox when the evaluation is spread over workers (`workers.py`).
    """

    def __init__(self, settings, setting, videos, sink, service=None):
        self.settings, self.setting, self.videos, self.sink = settings, setting, videos, sink
        self.service = service  # a RemotePlanner: plan with the service instead
        self.lock = threading.Lock()

    def episode(self, env, planner, index: int, seed: int, warmup: bool) -> None:
        """Runs one episode and hands its record to the sink (thread-safe)."""
        t0 = time.perf_counter()
        record_video = index < self.videos
        if planner is not None:
            ep = run_planner_episode(env, planner, seed, self.setting, record_video)
        else:
            ep = run_baseline_episode(env, self.settings["policy"], seed,
                                      self.settings["max_steps"], record_video)
        budget = self.setting.replans if self.setting else self.settings["max_steps"]
        record = episode_record(ep, index, budget, 1 if warmup else 0, time.perf_counter() - t0)
        if record_video:  # before the record, whose presence marks the episode done
            report.write_episode_video(self.sink.video_path(seed), ep, record)
        self.sink.add(record)

    def spread(self, workers: Workers, todo, parallel: int, model) -> None:
        """Over worker processes (`workers.py`), each running `sequential` or `parallel`."""
        spread(workers, self.sink, ShardPlan(self.settings, self.setting, self.videos,
                                             parallel, todo, model))

    def sequential(self, spec, world_model, todo) -> None:
        with RemoteEnv(spec.env_id, modules=("envs",), **_env_kwargs(self.settings)) as env:
            planner = self.service or (None if self.setting is None
                                       else _make_planner(world_model, env, self.setting))
            self.sink.begin()
            for n, (index, seed) in enumerate(todo):
                self.episode(env, planner, index, seed, warmup=planner is not None and n == 0)

    def parallel(self, spec, world_model, todo, workers: int) -> None:
        """`workers` threads, each with its own env process, share one batching planner."""
        queue = list(reversed(todo))
        errors: list[BaseException] = []
        workers = min(workers, len(todo))
        envs, batching = [], None
        try:
            for _ in range(workers):
                envs.append(RemoteEnv(spec.env_id, modules=("envs",),
                                      **_env_kwargs(self.settings)))
            if self.service is not None:  # the service batches its sessions' requests
                clients = [self.service] + [RemotePlanner(self.service.url)
                                            for _ in envs[1:]]
            elif self.setting is not None:
                batching = BatchingPlanner(_make_planner(world_model, envs[0], self.setting),
                                           max_batch=workers, window_seconds=30.0)
                clients = [batching.client() for _ in envs]
            else:
                clients = [None] * len(envs)
            self.sink.begin()

            def work(env, client):
                first = True
                try:
                    while not errors:
                        with self.lock:
                            if not queue:
                                return
                            index, seed = queue.pop()
                        self.episode(env, client, index, seed, warmup=first and client)
                        first = False
                except BaseException as error:  # re-raised in the main thread below
                    errors.append(error)
                finally:
                    if client is not None and client is not self.service:
                        client.close()

            threads = [threading.Thread(target=work, args=pair, daemon=True)
                       for pair in zip(envs, clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
        finally:
            if batching is not None:
                batching.close()
            for env in envs:
                env.close()


def _write_results(store: ResultsStore, seeds: list[int], settings: dict, final: bool) -> dict:
    """`results.json` (and, when `final`, the summary plot) from the finished episodes."""
    done = store.finished(seeds)
    extra = dict(store.wall_seconds(), seconds_per_episode=(
        float(np.mean([r["wall_seconds"] for r in done])) if done else None))
    results = report.summarize(done, settings, len(seeds), extra)
    store.write_results(results)
    if final and done:
        report.write_summary_png(store.out / SUMMARY_FILE, done, results)
    return results


def _check_arguments(task, episodes, policy, variation, max_steps, videos, world_model,
                     preset, overrides, noise):
    spec = get_task(task)  # UsageError naming the valid tasks
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
    if policy == "planner":
        if world_model is None:
            raise UsageError("the planner policy needs a world model (--model RUN)")
        if noise is not None:
            raise UsageError("--noise applies to the expert baseline, not the planner")
    else:
        given = [name for name, value in (("a world model", world_model is not None),
                                          ("--preset", preset is not None),
                                          ("--set", bool(overrides))) if value]
        if given:
            raise UsageError(f"the {policy} baseline takes no {' or '.join(given)}")
    return spec, max_steps


def _settings(spec, policy, world_model, record, preset, overrides, variation, max_steps,
              seed, image_size, noise) -> tuple[EpisodeSetting | None, dict]:
    """The planner episodes' shared setting and the settings a re-run must match."""
    setting = planner = baseline = model = conventions = None
    goal_names = ["goal"]
    if policy == "planner":
        name, preset = resolve_preset(spec.name, preset, list(overrides))
        conventions = dict(getattr(world_model, "conventions", None) or {})
        stride = int(conventions.get("frame_stride", 1))
        replans = max_steps // stride
        if replans < 1:
            raise UsageError(f"--max-steps {max_steps} is shorter than the world model's frame "
                             f"stride {stride}")
        goal_names = list(preset.goals or spec.goal_names)
        setting = EpisodeSetting(
            preset=preset, goal_names=tuple(goal_names),
            budgets=tuple(subgoal_budgets(goal_names, replans)), replans=replans,
            stop_energy=preset.stop_threshold(conventions.get("stop_energy")),
            frame_stride=stride,
            delta_dims=tuple(int(d) for d in conventions.get("action_delta_dims", (0, 1, 2))))
        planner = {"preset_name": name, "preset": preset.to_dict(),
                   "action_units": f"env actions: xyz in units of {STEP_METRES} m per step, "
                   "gripper in [-1, 1]", "stop_energy": setting.stop_energy,
                   "frame_stride": stride, "replans": replans}
        model = {k: record.get(k) for k in ("path", "weights_sha256", "class")}
    elif policy == "expert":
        baseline = {"kind": "expert", "noise": DEFAULT_NOISE if noise is None else float(noise),
                    "note": "scripted expert reading privileged simulator state (upper bound); "
                            "runs in the env process"}
    else:
        baseline = {"kind": "random", "note": "uniform random actions in the action space, "
                    "seeded by the episode seed (lower bound)"}
    settings = {
        "task": spec.name, "env_id": spec.env_id, "variation": variation, "policy": policy,
        "seed": int(seed), "max_steps": max_steps,
        "image_size": 128 if image_size is None else int(image_size),
        "subgoals": {"names": goal_names,
                     "budgets": list(setting.budgets) if setting else [max_steps]},
        "model": model, "planner": planner, "baseline": baseline,
    }
    view = (conventions or {}).get("view", "scene") if policy == "planner" else "scene"
    if view != "scene":  # what the world model was trained on (folders before views: scene)
        settings["view"] = view
    return setting, settings


def _connect(url: str, world_model) -> RemotePlanner:
    """A session of the planner service at `url` (one line if it cannot be reached)."""
    if world_model is not None:
        raise UsageError("give a world model (--model) or a planner service (--remote), "
                         "not both")
    try:
        return RemotePlanner(url)
    except (RemotePlannerError, ValueError) as error:
        raise UsageError(f"--remote {url}: {error}") from None


def _check_service(service: RemotePlanner | None, setting: EpisodeSetting) -> None:
    """The service must plan with the preset's CEM settings (they are decided where it runs)."""
    if service is None:
        return
    wanted = json.loads(json.dumps(dataclasses.asdict(setting.preset.cem)))
    served = service.health["cem"]
    for key in sorted(set(wanted) | set(served)):
        if wanted.get(key) != served.get(key):
            service.close()
            raise UsageError(f"the planner service at {service.url} plans with cem.{key}="
                             f"{served.get(key)!r}; the preset has {wanted.get(key)!r} (start "
                             "vjepa2 serve with the same --task/--preset/--set)")


def _make_planner(world_model, env, setting: EpisodeSetting) -> Planner:
    """The planner, bounded per planned step: the model's own bounds when it states them, else
    the env's with the delta dims widened by the stride (a frame step sums that many actions)."""
    conventions = dict(getattr(world_model, "conventions", None) or {})
    if "action_low" in conventions and "action_high" in conventions:
        low = np.asarray(conventions["action_low"], "float32")
        high = np.asarray(conventions["action_high"], "float32")
    else:
        low = np.array(env.action_space.low, "float32")
        high = np.array(env.action_space.high, "float32")
        low[list(setting.delta_dims)] *= setting.frame_stride
        high[list(setting.delta_dims)] *= setting.frame_stride
    try:
        return Planner(world_model, action_low=low, action_high=high,
                       config=setting.preset.cem, energy=setting.preset.energy)
    except ValueError as error:
        raise UsageError(f"the planner preset does not fit this model and env: {error}") from None
