"""Calibrating the planner's stop rule from the training logs.

MPC can end an episode when the observed frame's latent distance to the goal falls below a
threshold (`stop_energy`): the planner decides it has arrived from its own encoder, never from
the simulator. Without it, a planner that reaches the goal keeps re-planning, and where its
imagined energies are flat and noisy (near the goal) it drifts away again.

The threshold is read off the robot logs the world model was trained on: pairs of frames of one
episode give a latent distance (the stop rule's, `planning.energy.step_distances`) and the
distance between their end-effector positions (from the proprio state). `stop_energy` is the
largest latent distance at which at least `precision` of the pairs at or below it lie within
`radius` metres of each other: "when the picture looks this close, the gripper is this close".
No evaluation scene is consulted.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vjepa2.errors import UsageError


def stop_threshold(latent: np.ndarray, metric: np.ndarray, radius: float, precision: float,
                   min_pairs: int = 20) -> float | None:
    """The largest `t` such that `mean(metric[latent <= t] < radius) >= precision`.

    Args:
        latent: `(P,)` latent distances of frame pairs.
        metric: `(P,)` their physical distances (metres).
        radius: what counts as "there".
        precision: required fraction of "there" pairs among those at or below the threshold.
        min_pairs: the threshold must cover at least this many pairs.

    Returns:
        The threshold, or `None` when no threshold reaches the precision.
    """
    latent = np.asarray(latent, np.float64).ravel()
    metric = np.asarray(metric, np.float64).ravel()
    if latent.shape != metric.shape or latent.size == 0:
        raise ValueError(f"latent and metric must be equal-length non-empty vectors; received "
                         f"{latent.shape} and {metric.shape}")
    order = np.argsort(latent, kind="stable")
    close = (metric[order] < radius).astype(np.float64)
    running = np.cumsum(close) / np.arange(1, close.size + 1)
    ok = np.nonzero((running >= precision) & (np.arange(1, close.size + 1) >= min_pairs))[0]
    if ok.size == 0:
        return None
    return float(latent[order][ok[-1]])


def calibrate_stop_energy(world_model, logs: str | Path, *, radius: float = 0.05,
                          precision: float = 0.9, episodes: int = 40, frames: int = 12,
                          position_dims=None, kind: str = "l1", keymap=None) -> dict:
    """Measures the stop threshold of `world_model` on RLDS `logs`.

    Args:
        world_model: a `WorldModel` (its `encode` and `conventions` are used).
        logs: the RLDS dataset (the training logs, or any logs of the same robot).
        radius: metres within which the end effector counts as at the goal.
        precision: required fraction of truly close pairs at or below the threshold.
        episodes: episodes to read (one evenly spaced clip of `frames` frames each).
        frames: frames per episode, `frame_stride` env steps apart.
        position_dims: state dims holding the end-effector position in metres (default: the
            conventions' `state_delta_dims`).
        kind: the stop rule's distance, `"l1"` or `"l2"`.
        keymap: the `KeyMap` the logs are read with (default: this project's).

    Returns:
        `{"stop_energy", "radius", "precision", "pairs", "close_pairs", "episodes", ...}`;
        `stop_energy` is `None` when no threshold reaches the precision.
    """
    from keras import ops

    from planning.energy import step_distances
    from vjepa2.data.rlds import KeyMap, make_clip_dataset

    conventions = world_model.conventions
    dims = list(position_dims if position_dims is not None
                else conventions.get("state_delta_dims", ()))
    if not dims:
        raise UsageError("the world model's conventions name no position dims "
                         "(state_delta_dims); pass position_dims")
    if not 0 < precision <= 1 or radius <= 0:
        raise UsageError(f"need radius > 0 and precision in (0, 1]; received radius={radius}, "
                         f"precision={precision}")
    stride = int(conventions.get("frame_stride", 1))
    clips = make_clip_dataset(logs, keymap or KeyMap(), clip_length=frames, frame_stride=stride,
                              batch_size=1, shuffle=False, clip_shift=1_000_000,
                              drop_remainder=False)
    latent, metric, n = [], [], 0
    rows, cols = np.triu_indices(frames, k=1)
    for batch in clips.take(episodes):
        z = world_model.encode(batch["frames"].numpy())[0]  # (T, N, D)
        position = batch["states"].numpy()[0][:, dims]
        # Every later frame of the clip as the "goal" of every earlier one.
        # Pair p compares frame rows[p] (as the observation) with frame cols[p] (as the goal).
        # Goals (P, N, D) broadcast one per candidate against the observations (P, 1, N, D).
        observed = ops.take(z, rows, axis=0)[:, None]
        goals = ops.take(z, cols, axis=0)
        latent.append(np.asarray(ops.convert_to_numpy(step_distances(observed, goals, kind)))
                      .reshape(-1))
        metric.append(np.linalg.norm(position[rows] - position[cols], axis=-1))
        n += 1
    if n == 0:
        raise UsageError(f"no episode of {frames} frames at stride {stride} in {logs}")
    latent, metric = np.concatenate(latent), np.concatenate(metric)
    threshold = stop_threshold(latent, metric, radius, precision)
    close = metric < radius
    return {
        "stop_energy": threshold,
        "radius": float(radius),
        "precision": float(precision),
        "kind": kind,
        "episodes": n,
        "pairs": int(latent.size),
        "close_pairs": int(close.sum()),
        "recall": (float(np.mean(latent[close] <= threshold)) if threshold is not None
                   and close.any() else None),
        "logs": str(logs),
    }


def write_stop_energy(run_dir: str | Path, calibration: dict) -> Path:
    """Stores the calibration in the run's `conventions.json` (atomically), where
    `vjepa2 evaluate` and `planning.MPC` users find it."""
    from vjepa2.models.world_model import CONVENTIONS_FILE, WorldModelConventions
    from vjepa2.files import atomic_write

    path = Path(run_dir) / CONVENTIONS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir} has no {CONVENTIONS_FILE}")
    payload = json.loads(path.read_text())
    payload["stop_energy"] = calibration["stop_energy"]
    payload["stop_calibration"] = calibration
    WorldModelConventions.from_json(payload)  # validates before writing
    atomic_write(path, json.dumps(payload, indent=2))
    return path
