"""Moving handwritten digits for MC-JEPA: real scans, generated motion, known flow.

Each clip moves one of scikit-learn's real digits (`vjepa2.data.digits`), enlarged to
`digit_size` px, across a black `size` px frame in a straight line: one of the four
`DIRECTIONS` at 1-2.5 px per frame (the design of Moving MNIST, Srivastava et al. 2015, with one
digit). A clip has two labels, the digit (content) and the direction (motion), and its optical
flow is known exactly: the digit's velocity on its ink (pixels above a quarter of full
intensity in the first frame of the pair), zero elsewhere.

`write_moving_digits` keeps the digits' own seeded train / held-out split (`split_digits`): the
held-out digits appear in no pretraining clip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vjepa2.data.digits import DIGITS, enlarge_scan, load_digits_scans, split_digits
from vjepa2.data.motion import DIRECTIONS, _UNIT
from vjepa2.errors import UsageError

INK = 64  # intensity (of 255) above which a pixel is the digit's ink


def _place(digit: np.ndarray, size: int, x: float, y: float) -> np.ndarray:
    """`digit` on a black (size, size) canvas with its top-left corner at (x, y), bilinear at
    sub-pixel positions."""
    canvas = np.zeros((size + 2, size + 2), np.float32)
    ix, iy = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - ix, y - iy
    n = digit.shape[0]
    for dy, dx, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                           (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        canvas[iy + dy:iy + dy + n, ix + dx:ix + dx + n] += weight * digit
    return canvas[:size, :size]


def synthesize_moving_digit(scan, seed: int, index: int, frames: int = 8, size: int = 64,
                            digit_size: int = 40):
    """One clip of `scan` moving; returns (video uint8 (T, size, size, 3), flow float32
    (T-1, size, size, 2) as (dx, dy) pixels from frame t to t + 1, direction index).

    The speed (1-2.5 px per frame), direction and start are drawn from `(seed, index)`; the
    digit stays inside the frame."""
    rng = np.random.default_rng([seed, index, 23])
    direction = int(rng.integers(len(DIRECTIONS)))
    speed = float(rng.uniform(1.0, 2.5))
    ux, uy = _UNIT[direction]
    travel = speed * (frames - 1)
    span = size - digit_size - 1  # the top-left corner's range, at rest
    if span - travel < 0:
        raise UsageError(f"frames={frames} at size={size} leave a {digit_size} px digit no room "
                         f"to move")
    x0 = rng.uniform(max(-ux * travel, 0.0), span - max(ux * travel, 0.0))
    y0 = rng.uniform(max(-uy * travel, 0.0), span - max(uy * travel, 0.0))
    digit = enlarge_scan(scan, digit_size).astype(np.float32)
    video = np.stack([_place(digit, size, x0 + ux * speed * t, y0 + uy * speed * t)
                      for t in range(frames)])
    ink = video[:-1] > INK
    flow = np.zeros((frames - 1, size, size, 2), np.float32)
    flow[..., 0] = ink * ux * speed
    flow[..., 1] = ink * uy * speed
    video = np.repeat(np.clip(np.round(video), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return video, flow, direction


def write_moving_digits(out_dir, clips_per_digit: int = 3, frames: int = 8, size: int = 64,
                        fps: float = 8.0, seed: int = 0, heldout: float = 0.3,
                        count: int | None = None) -> list[Path]:
    """Writes mp4 clips of the digits' seeded split (the first `count` digits of the
    permutation, default all) and their CSVs; returns the clip paths.

    - `pretrain.csv`: `clips_per_digit` clips of each training digit (the pretraining set);
    - `train.csv`, `heldout.csv`: one clip per training / held-out digit, label the digit;
    - `train_direction.csv`, `heldout_direction.csv`: the same clips, label the direction.
    Clip `k` of the digit with scan index `i` draws its motion from `(seed, i * 16 + k)`."""
    from vjepa2.data.video_io import write_video
    from vjepa2.data.video_sources import write_video_csv

    if not 1 <= clips_per_digit <= 16:
        raise UsageError(f"clips per training digit (--count) must be in 1..16; received "
                         f"{clips_per_digit}")
    if not 0.0 < heldout < 1.0:
        raise UsageError(f"heldout must be in (0, 1); received {heldout}")
    count = DIGITS if count is None else count
    if not 2 <= count <= DIGITS:
        raise UsageError(f"count must be in 2..{DIGITS}; received {count}")
    scans, labels = load_digits_scans()
    order, held = split_digits(count, heldout, seed)
    out_dir = Path(out_dir)
    rows = {name: ([], [], []) for name in ("pretrain", "train", "heldout")}
    for rank, scan_index in enumerate(order):
        part = "heldout" if rank < held else "train"
        for k in range(clips_per_digit if part == "train" else 1):
            video, _, direction = synthesize_moving_digit(
                scans[scan_index], seed, int(scan_index) * 16 + k, frames, size)
            path = write_video(out_dir / f"digit_{scan_index:04d}_{k}.mp4", video, fps=fps)
            if part == "heldout":
                targets = ["heldout"]
            else:
                targets = ["pretrain", "train"] if k == 0 else ["pretrain"]
            for name in targets:
                rows[name][0].append(path)
                rows[name][1].append(int(labels[scan_index]))
                rows[name][2].append(direction)
    write_video_csv(out_dir / "pretrain.csv", rows["pretrain"][0], rows["pretrain"][1])
    for name in ("train", "heldout"):
        paths, digits, directions = rows[name]
        write_video_csv(out_dir / f"{name}.csv", paths, digits)
        write_video_csv(out_dir / f"{name}_direction.csv", paths, directions)
    return rows["pretrain"][0] + rows["heldout"][0]
