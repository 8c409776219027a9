"""Parallel, resumable collection of RLDS robot logs with the scripted policies.

`collect` runs a task's noisy expert (or the `play` policy) in worker processes, each with its
own env, and writes every finished episode as its own TFRecord file (atomically), then makes
the folder a TFDS dataset (`vjepa2.data.rlds.finalize_dataset`). Episode `i` uses seed
`seed + i` for the env and the policy and is stored as episode id `seed + i`, so a re-run with
the same `--out` skips finished episodes and continues to N without duplicates; an interrupted
or crashed run never leaves a partial episode file (and finalizes what it has).

Each RLDS step: `observation/image` `(S, S, 3)` uint8 (PNG), `observation/state` `(4,)`
float32 (gripper xyz in m + finger gap in m), `action` `(4,)` float32 (Fetch: xyz delta in
units of 0.05 m, gripper command in [-1, 1]), `reward` (Fetch sparse), `discount`, `is_first`,
`is_last`, `is_terminal`, `language_instruction` (the policy's task in words, as in Open
X-Embodiment datasets). 51 steps per episode: 50 actions, the last step holds the final
observation and a zero action. Episode metadata: `task`, `variation`, `seed`, `success`
(at the last step), `goal_image`.
"""
from __future__ import annotations

import atexit
import json
import concurrent.futures as futures
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vjepa2.errors import UsageError
from vjepa2.files import check_output_folder, check_settings, is_disk_full

ENV_STEP_SECONDS = 0.04  # 20 MuJoCo steps of 2 ms per env step
MANIFEST = "collect.json"
PLAY_SCENE_TASK = "pick_and_place"  # play runs in the richest scene: an object and a goal

ACTION_CONVENTION = {
    "action": "[dx, dy, dz, grip] in [-1, 1], Fetch: xyz = end-effector target delta in "
    "units of 0.05 m (world frame), grip = finger target delta (+1 open, -1 close)",
    "delta_action_dims": [0, 1, 2],
    "state": "[gripper x, y, z (m, world frame), finger gap (m)]",
    "env_step_seconds": ENV_STEP_SECONDS,
    "action_t": "taken at observation t; leads to observation t+1",
}


@dataclass(frozen=True)
class CollectConfig:
    """What to collect; stored in `out/collect.json` and checked on resume.

    Args:
        task: a task name or `"play"`.
        variation: `"train"`, `"wide"` or `"heldout"`.
        image_size: camera frame side in pixels (each camera of a multi-view frame).
        view: what the camera sees (`envs.views.VIEWS`); `scene+wrist` frames are
            `S x 2S`, and `--videos` writes one video per camera.
        noise: expert action noise std (None: the policy's default).
        seed: base seed; episode `i` uses `seed + i`.
        language_instruction: steps carry `language_instruction`. Folders collected before
            steps had it lack this setting, so resuming one is refused (mixed step formats
            would make the whole dataset unreadable) unless this is False.
    """

    task: str
    variation: str
    image_size: int = 128
    noise: float | None = None
    seed: int = 0
    language_instruction: bool = True
    view: str = "scene"

    def __post_init__(self):
        from envs import policies, tasks, variations, views

        if self.task not in policies.POLICY_NAMES:
            raise UsageError(
                f"unknown task {self.task!r}; expected one of {', '.join(policies.POLICY_NAMES)}"
            )
        variations.get_variation_set(self.variation)
        views.check_view(self.view)
        if not 16 <= self.image_size <= 1024:
            raise UsageError(f"--image-size must be in [16, 1024]; received {self.image_size}")
        if self.noise is not None and (not np.isfinite(self.noise) or self.noise < 0):
            raise UsageError(f"--noise must be a finite number >= 0; received {self.noise}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0; received {self.seed}")
        del tasks

    @property
    def env_task(self) -> str:
        return PLAY_SCENE_TASK if self.task == "play" else self.task


def make_features(image_size: int, language_instruction: bool = True, view: str = "scene"):
    """The RLDS episode features of these logs."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from envs.views import frame_shape
    from vjepa2.data import rlds

    shape = frame_shape(view, image_size)
    image = tfds.features.Image(shape=shape, encoding_format="png")
    return rlds.episode_features(
        observation={"image": image, "state": tfds.features.Tensor(shape=(4,), dtype=tf.float32)},
        action_dim=4,
        language_instruction=language_instruction,
        metadata={
            "task": tfds.features.Text(),
            "variation": tfds.features.Text(),
            "seed": tfds.features.Scalar(dtype=tf.int64),
            "success": tfds.features.Scalar(dtype=tf.bool),
            "goal_image": tfds.features.Image(shape=shape, encoding_format="png"),
        },
    )


def run_episode(env, policy, config: CollectConfig, episode_id: int) -> dict:
    """Rolls out one episode; returns `{"steps": [...], "episode_metadata": {...}}` (numpy)."""
    obs, info = env.reset(seed=episode_id)
    policy.reset(seed=episode_id)
    goal_image = info["goal_image"]
    steps = []
    done = False
    while not done:
        action = policy(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        steps.append(
            {
                "observation": {"image": obs["image"], "state": obs["state"]},
                "action": action.astype(np.float32),
                "reward": np.float32(reward),
                "discount": np.float32(1.0),
                "is_first": not steps,
                "is_last": False,
                "is_terminal": False,
            }
        )
        obs, done = next_obs, terminated or truncated
    steps.append(
        {
            "observation": {"image": obs["image"], "state": obs["state"]},
            "action": np.zeros(4, np.float32),
            "reward": np.float32(0.0),
            "discount": np.float32(0.0 if terminated else 1.0),
            "is_first": False,
            "is_last": True,
            "is_terminal": bool(terminated),
        }
    )
    if config.language_instruction:
        for step in steps:
            step["language_instruction"] = policy.instruction
    return {
        "steps": steps,
        "episode_metadata": {
            "task": config.task,
            "variation": config.variation,
            "seed": episode_id,
            "success": bool(info["is_success"]),
            "goal_image": goal_image,
        },
    }


# ------------------------------------------------------------------ worker side
#
# Workers render, the driver writes: Mesa's EGL renderer and TensorFlow crash when loaded in the
# same process (both bring LLVM), so rendering processes never import TensorFlow and the driver
# process (which serializes the TFDS records) never renders.

_WORKER: dict = {}


def _init_worker(config: CollectConfig, out: str, videos: bool, parent_pid: int) -> None:
    import gymnasium as gym

    import envs
    from envs.policies import make_policy
    from vjepa2.processes import die_with_parent

    # A driver killed with SIGKILL runs no cleanup: the worker ends itself (no orphans).
    die_with_parent(parent_pid)

    env = gym.make(envs.TASKS[config.env_task].env_id, variation=config.variation,
                   image_size=config.image_size, view=config.view)
    # Close the renderer before interpreter teardown, or its EGL context errors on exit.
    atexit.register(env.close)
    _WORKER.update(env=env, policy=make_policy(config.task, env, noise=config.noise),
                   config=config, out=out, videos=videos)


def _collect_one(episode_id: int, episode_fn: Callable = run_episode) -> dict:
    from vjepa2.data.video_io import write_video

    w = _WORKER
    episode = episode_fn(w["env"], w["policy"], w["config"], episode_id)
    if w["videos"]:
        # Before the episode file, whose presence marks the episode done. One video per
        # camera of a multi-view frame (each a square clip, as pretraining reads them).
        frames = np.stack([s["observation"]["image"] for s in episode["steps"]])
        cameras = w["config"].view.split("+")
        for index, camera in enumerate(cameras):
            suffix = "" if len(cameras) == 1 else f"-{camera}"
            size = frames.shape[1]
            write_video(Path(w["out"]) / "videos" / f"episode-{episode_id:08d}{suffix}.mp4",
                        frames[:, :, index * size:(index + 1) * size], fps=1.0 / ENV_STEP_SECONDS)
    return episode


# ------------------------------------------------------------------ driver side


def _check_manifest(out: Path, config: CollectConfig) -> None:
    """Refuses a file or another command's folder, and a folder of another collection."""
    check_output_folder(out, MANIFEST)
    wanted = asdict(config)
    keys = list(wanted)
    if config.view == "scene" and (out / MANIFEST).is_file() and \
            "view" not in json.loads((out / MANIFEST).read_text() or "{}"):
        keys.remove("view")  # collected before views existed: the scene view
    check_settings(out / MANIFEST, wanted, what="a collection", keys=keys)


def collect(
    config: CollectConfig,
    episodes: int,
    out: str | os.PathLike,
    workers: int = 1,
    videos: bool = False,
    progress: bool = True,
    episode_fn: Callable = run_episode,
) -> dict:
    """Collects episodes `config.seed + i`, `i < episodes`, into the RLDS dataset `out`.

    Args:
        config: what to collect.
        episodes: total episodes wanted in `out` (finished ones are skipped).
        out: dataset folder.
        workers: worker processes (spawned; each builds its own env and renders; this process
            only writes).
        videos: also write `out/videos/episode-<id>.mp4` per episode.
        progress: show a tqdm progress bar.
        episode_fn: `fn(env, policy, config, episode_id) -> episode dict`; a module-level
            function (workers import it), `run_episode` by default.

    Returns:
        A summary dict: `requested`, `present` (episodes in the dataset), `collected` (this
        run), `failed` (list of `{"id", "error"}`), `successes` (this run), `seconds`.
    """
    from vjepa2.data import rlds
    from vjepa2.progress import Progress

    if episodes < 1 or workers < 1:
        raise UsageError(f"episodes and workers must be >= 1; received {episodes}, {workers}")
    out = Path(out)
    _check_manifest(out, config)
    ids = [config.seed + i for i in range(episodes)]
    todo = [i for i in ids if not rlds.episode_path(out, i).exists()]
    summary = {"requested": episodes, "collected": 0, "failed": [], "successes": 0}
    bar = Progress(episodes, f"collect {config.task}/{config.variation}", "ep",
                   initial=episodes - len(todo), enabled=progress, stream=sys.stderr)
    start = time.perf_counter()

    def done(episode):
        summary["collected"] += 1
        summary["successes"] += int(episode["episode_metadata"]["success"])
        bar.update(1, successes=summary["successes"])

    def failed(episode_id, error):
        summary["failed"].append({"id": episode_id, "error": f"{type(error).__name__}: {error}"})
        bar.write(f"collect: episode {episode_id} failed: {type(error).__name__}: {error}")

    features = make_features(config.image_size, config.language_instruction, config.view)
    try:
        if todo:
            _run_workers(config, out, videos, workers, todo, episode_fn, features, done, failed)
    finally:
        bar.close()
        present = rlds.finalize_dataset(
            out,
            features,
            description=f"Scripted {config.task} episodes in VJEPA Fetch scenes "
            f"({config.variation} variations).",
            metadata={"collect": asdict(config),
                      "conventions": {**ACTION_CONVENTION, "view": config.view,
                                      "frame_views": len(config.view.split("+"))},
                      "clips": rlds.CLIP_CONVENTIONS},
        )
        summary["present"] = present
        summary["seconds"] = time.perf_counter() - start
    return summary


def _run_workers(config, out, videos, workers, todo, episode_fn, features, done, failed):
    """Runs `todo` in spawned worker processes and writes each finished episode here."""
    from vjepa2.data import rlds

    # Always in worker processes, even for one worker: this process has TensorFlow. The workers
    # are started from this thread, which outlives them (so their parent-death signal is safe).
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=context,
        initializer=_init_worker, initargs=(config, str(out), videos, os.getpid()),
    ) as pool:
        pending = {pool.submit(_collect_one, i, episode_fn): i for i in todo}
        try:
            for future in futures.as_completed(pending):
                episode_id = pending[future]
                error = future.exception()
                if error is not None and is_disk_full(error):
                    raise error  # every later write would fail the same way
                if error is not None:
                    failed(episode_id, error)
                    continue
                episode = future.result()
                rlds.write_episode_file(rlds.episode_path(out, episode_id), features, episode)
                done(episode)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
