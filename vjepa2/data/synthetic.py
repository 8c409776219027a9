"""Procedural test videos: textured shapes that move, bounce, rotate, scale and occlude.

The videos stand in for real footage in tests, demos and CPU-scale pretraining. Motion is smooth
and deterministic (constant velocity with elastic bounces, constant spin, periodic scaling), so a
model that sees past frames can predict future ones; textures give the encoder something to match
beyond flat colour. Each video is a pure function of `(seed, index)`: regenerating gives the same
pixels, and a different `seed` (e.g. a held-out split) gives different videos.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vjepa2.data.video_io import write_video
from vjepa2.errors import UsageError

# Shape kinds; the kind of the largest object is the video's class label.
SHAPE_KINDS = ("disc", "rectangle", "triangle")


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Folds unbounded positions into [lo, hi]: an elastic bounce off both walls."""
    span = max(hi - lo, 1e-6)
    y = np.mod(x - lo, 2.0 * span)
    return lo + np.where(y <= span, y, 2.0 * span - y)


def _background(rng: np.random.Generator, out: np.ndarray) -> None:
    """Fills `out` (T, H, W, 3) float32 with a colour gradient plus drifting sinusoidal texture."""
    frames, size = out.shape[0], out.shape[1]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0 = rng.uniform(20, 200, size=3).astype(np.float32)
    c1 = rng.uniform(20, 200, size=3).astype(np.float32)
    angle = float(rng.uniform(0, 2 * np.pi))
    # math.cos, not np.cos: a float64 numpy scalar would promote the whole frame to float64.
    ramp = np.clip(0.5 + (math.cos(angle) * (xx - 0.5) + math.sin(angle) * (yy - 0.5)), 0, 1)
    base = c0 + (c1 - c0) * ramp[..., None]  # (H, W, 3)
    # Gratings drift at a constant phase velocity: a slow, predictable "camera" motion.
    # sin(p + d t) = sin(p) cos(d t) + cos(p) sin(d t), so the (T, H*W) texture is one matmul.
    t = np.arange(frames, dtype=np.float32)
    spatial, temporal = [], []
    for _ in range(int(rng.integers(2, 4))):
        freq = float(rng.uniform(2.0, 9.0))
        theta = float(rng.uniform(0, np.pi))
        drift = float(rng.uniform(-0.15, 0.15))
        amplitude = float(rng.uniform(6, 18))
        phase = (2 * math.pi * freq) * (math.cos(theta) * xx + math.sin(theta) * yy)
        spatial += [np.sin(phase).ravel(), np.cos(phase).ravel()]
        temporal += [amplitude * np.cos(drift * t), amplitude * np.sin(drift * t)]
    texture = (np.stack(temporal, axis=1) @ np.stack(spatial, axis=0)).reshape(frames, size, size)
    np.add(base[None], texture[..., None], out=out)


def _coverage(kind: int, u: np.ndarray, v: np.ndarray, r: float, aspect: float) -> np.ndarray:
    """Signed distance (pixels, positive inside) of object-frame points to the shape's edge."""
    if kind == 0:
        return r - np.sqrt(u * u + v * v)
    if kind == 1:
        return np.minimum(r - np.abs(u), r * aspect - np.abs(v))
    # Equilateral triangle: the nearest of three edges, each at r/2 from the centre.
    dist = None
    for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        d = 0.5 * r - (np.cos(a) * u + np.sin(a) * v)
        dist = d if dist is None else np.minimum(dist, d)
    return dist


def synthesize_video(seed: int, index: int, frames: int = 48, size: int = 128) -> tuple[np.ndarray, int]:
    """Renders one procedural video in memory.

    Args:
        seed: Split seed; videos with different seeds are independent.
        index: Video number within the split.
        frames: Number of frames T.
        size: Frame height and width in pixels.

    Returns:
        `(video, label)`: uint8 `(T, size, size, 3)` and the index in `SHAPE_KINDS` of the
        largest object's shape.

    Example:
    >>> video, label = synthesize_video(seed=0, index=3, frames=16, size=64)
    >>> video.shape
    (16, 64, 64, 3)
    """
    # Separate streams, so the background does not depend on how many objects were drawn.
    object_seq, background_seq = np.random.SeedSequence([seed, index]).spawn(2)
    rng = np.random.default_rng(object_seq)
    scale = size / 128.0
    t = np.arange(frames, dtype=np.float64)

    num_objects = int(rng.integers(3, 6))
    radii = rng.uniform(8.0, 22.0, size=num_objects) * scale
    kinds = rng.integers(0, len(SHAPE_KINDS), size=num_objects)
    label = int(kinds[int(np.argmax(radii))])
    objects = []
    for radius, kind in zip(radii.tolist(), kinds.tolist()):
        # Trajectories are closed-form in t, so all frames' poses are computed at once.
        pulse = rng.uniform(0.15, 0.3) if rng.random() < 0.35 else 0.0
        r_t = radius * (1.0 + pulse * np.sin(2 * np.pi * t / rng.uniform(12, 30) + rng.uniform(0, 2 * np.pi)))
        aspect = float(rng.uniform(0.5, 1.0))
        # Distance from the centre to the farthest point: the bounce margin and raster box.
        extent = math.sqrt(1.0 + aspect * aspect) if kind == 1 else 1.0
        reach = radius * (1.0 + pulse) * extent
        speed = rng.uniform(0.8, 3.0) * scale
        heading = rng.uniform(0, 2 * np.pi)
        cx_t = _reflect(rng.uniform(0, size) + speed * np.cos(heading) * t, reach, size - reach)
        cy_t = _reflect(rng.uniform(0, size) + speed * np.sin(heading) * t, reach, size - reach)
        spin = rng.uniform(-0.12, 0.12) if rng.random() < 0.6 else 0.0
        rot_t = rng.uniform(0, 2 * np.pi) + spin * t
        colour = rng.uniform(30, 255, size=3).astype(np.float32)
        stripe_freq = 2 * np.pi / max(radius * 0.6, 2.0) if rng.random() < 0.5 else 0.0
        objects.append((kind, r_t, aspect, reach, cx_t, cy_t, rot_t, colour, stripe_freq))

    # Each object is shaded in a (T, P, P) window around its centre, computed for all frames at
    # once, then composited per frame by slicing a padded canvas: shapes cover little of a frame.
    pad = int(math.ceil(max(o[3] for o in objects))) + 2
    canvas = np.zeros((frames, size + 2 * pad, size + 2 * pad, 3), np.float32)
    _background(np.random.default_rng(background_seq), canvas[:, pad:pad + size, pad:pad + size])
    for kind, r_t, aspect, reach, cx_t, cy_t, rot_t, colour, stripe_freq in objects:
        half = int(math.ceil(reach)) + 1
        window = np.arange(-half, half + 1, dtype=np.float64)
        x0 = np.floor(cx_t).astype(np.int64)  # the window is centred on pixel (y0, x0)
        y0 = np.floor(cy_t).astype(np.int64)
        # Pixel centres relative to the object centre.
        dx = (x0[:, None] + window[None] + 0.5 - cx_t[:, None]).astype(np.float32)[:, None, :]
        dy = (y0[:, None] + window[None] + 0.5 - cy_t[:, None]).astype(np.float32)[:, :, None]
        c = np.cos(rot_t).astype(np.float32)[:, None, None]
        s = np.sin(rot_t).astype(np.float32)[:, None, None]
        # Object-frame coordinates, so texture and edges turn with the object.
        u, v = c * dx + s * dy, c * dy - s * dx
        r = r_t.astype(np.float32)[:, None, None]
        # Signed distance -> coverage gives one pixel of anti-aliasing.
        alpha = np.clip(_coverage(kind, u, v, r, aspect) + 0.5, 0.0, 1.0)[..., None]
        if stripe_freq:
            shade = 0.7 + 0.3 * np.sign(np.sin(u * np.float32(stripe_freq)))
        else:
            # A shading ramp across the object that turns with it.
            shade = np.clip(0.8 + 0.25 * u / np.maximum(r, 1.0), 0.5, 1.1)
        fill = colour * shade[..., None]  # (T, P, P, 3)
        for k in range(frames):
            ys = slice(pad + y0[k] - half, pad + y0[k] + half + 1)
            xs = slice(pad + x0[k] - half, pad + x0[k] + half + 1)
            patch = canvas[k, ys, xs]
            patch += alpha[k] * (fill[k] - patch)
    canvas = canvas[:, pad:pad + size, pad:pad + size]
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), label


def generate_videos(
    out_dir: str | os.PathLike,
    num_videos: int,
    frames: int = 48,
    size: int = 128,
    fps: int = 8,
    seed: int = 0,
    csv_name: str | None = None,
    workers: int | None = None,
) -> list[Path]:
    """Writes `num_videos` procedural mp4 videos into `out_dir`.

    Several coloured discs, rectangles and triangles with striped or shaded fills move over a
    textured gradient background at constant velocity, bounce off the frame edges, and some spin
    or pulse in size; later objects occlude earlier ones. Files are named `video_00000.mp4`, ...

    Args:
        out_dir: Folder to write into (created if missing).
        num_videos: Number of videos.
        frames: Frames per video.
        size: Frame height and width in pixels.
        fps: Frame rate stored in the files.
        seed: Split seed; use a different seed for a held-out split.
        csv_name: If given, also writes `out_dir/csv_name` with rows `path,label` (paths relative
            to the CSV), readable by `vjepa2.data.video.list_videos`.
        workers: Threads rendering and encoding videos (numpy and FFmpeg release the GIL);
            `None` uses up to 4, bounded by the CPU count. Output does not depend on it.

    Returns:
        The written paths, in index order.

    Example:
    >>> paths = generate_videos("/tmp/videos", num_videos=4, frames=16, size=64)
    >>> heldout = generate_videos("/tmp/heldout", num_videos=4, seed=1)
    """
    if num_videos < 0:
        raise UsageError(f"num_videos must be >= 0; received {num_videos}")
    if frames < 1:
        raise UsageError(f"frames must be >= 1; received {frames}")
    if size < 16:
        raise UsageError(f"size must be >= 16 pixels; received {size}")
    if fps < 1:
        raise UsageError(f"fps must be >= 1; received {fps}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0; received {seed}")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1 or None; received {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def make(index: int) -> tuple[Path, int]:
        video, label = synthesize_video(seed, index, frames=frames, size=size)
        return write_video(out_dir / f"video_{index:05d}.mp4", video, fps=fps), label

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = list(pool.map(make, range(num_videos)))
    paths = [path for path, _ in made]
    labels = [label for _, label in made]
    if csv_name is not None:
        from vjepa2.data.video import write_video_csv

        write_video_csv(out_dir / csv_name, paths, labels)
    return paths
