"""Clips of one textured shape moving over a static textured background, with their true flow.

Made for MC-JEPA: the label is the direction of motion (`DIRECTIONS`), and the optical flow
between consecutive frames is known exactly: the shape's velocity on the pixels the shape covers
in the first frame of the pair, zero elsewhere (the background does not move). Each clip is a
pure function of `(seed, index)`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vjepa2.data.images import texture
from vjepa2.data.synthetic import SHAPE_KINDS, _coverage
from vjepa2.data.video_io import write_video
from vjepa2.data.video_sources import write_video_csv
from vjepa2.errors import UsageError

DIRECTIONS = ("right", "left", "down", "up")
_UNIT = {0: (1.0, 0.0), 1: (-1.0, 0.0), 2: (0.0, 1.0), 3: (0.0, -1.0)}


def synthesize_motion(seed: int, index: int, frames: int = 16, size: int = 64):
    """One clip; returns (video uint8 (T, size, size, 3), flow float32 (T-1, size, size, 2) as
    (dx, dy) pixels from frame t to t + 1, label = direction index).

    The shape (a disc, rectangle or triangle of radius 8-12 px at 64 px) moves 0.5-1.5 px per
    frame (scaled with `size`) in the labelled direction and stays inside the frame.
    """
    rng = np.random.default_rng([seed, index, 17])
    label = int(rng.integers(len(DIRECTIONS)))
    scale = size / 64.0
    radius = rng.uniform(8, 12) * scale
    kind = int(rng.integers(len(SHAPE_KINDS)))
    aspect = float(rng.uniform(0.6, 1.0))
    speed = rng.uniform(0.5, 1.5) * scale
    ux, uy = _UNIT[label]
    travel = speed * (frames - 1)
    margin = radius * 1.45  # the farthest point of a 1 x 1 rectangle
    lo_x = margin + max(-ux * travel, 0)
    hi_x = size - margin - max(ux * travel, 0)
    lo_y = margin + max(-uy * travel, 0)
    hi_y = size - margin - max(uy * travel, 0)
    if hi_x < lo_x or hi_y < lo_y:
        raise UsageError(f"frames={frames} at size={size} leave the shape no room to move")
    x0, y0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    background = texture(rng, size, 40, 200)
    fill = texture(rng, int(math.ceil(2 * margin)) + 2, 30, 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    video = np.empty((frames, size, size, 3), np.float32)
    masks = np.empty((frames, size, size), np.float32)
    for t in range(frames):
        cx, cy = x0 + ux * speed * t, y0 + uy * speed * t
        u, v = xx - cx, yy - cy
        alpha = np.clip(_coverage(kind, u, v, radius, aspect) + 0.5, 0, 1)
        # The fill moves with the shape: sample it at object-frame coordinates.
        iy = np.clip((v + margin).astype(int), 0, fill.shape[0] - 1)
        ix = np.clip((u + margin).astype(int), 0, fill.shape[1] - 1)
        video[t] = background + alpha[..., None] * (fill[iy, ix] - background)
        masks[t] = alpha
    flow = np.zeros((frames - 1, size, size, 2), np.float32)
    flow[..., 0] = (masks[:-1] > 0.5) * ux * speed
    flow[..., 1] = (masks[:-1] > 0.5) * uy * speed
    return np.clip(video + 0.5, 0, 255).astype(np.uint8), flow, label


def generate_motion_clips(out_dir, count, frames=16, size=64, fps=8, seed=0,
                          csv_name="labels.csv"):
    """Writes `count` mp4 clips (`synthesize_motion`) and a `path,label` CSV; returns paths."""
    if count < 1:
        raise UsageError(f"count must be >= 1; received {count}")
    out_dir = Path(out_dir)
    paths, labels = [], []
    for index in range(count):
        video, _, label = synthesize_motion(seed, index, frames, size)
        paths.append(write_video(out_dir / f"clip_{index:05d}.mp4", video, fps=fps))
        labels.append(label)
    write_video_csv(out_dir / csv_name, paths, labels)
    return paths
