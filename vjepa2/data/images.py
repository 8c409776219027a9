"""Images for I-JEPA: list PNG/JPEG files, load, crop and normalise them; labelled test images.

A source is a folder searched recursively, a `path[,label]` CSV or one file (as for videos).
Training images get one random resized crop (area U(0.3, 1.0) of the image, aspect 3/4..4/3,
I-JEPA's only augmentation) and a random horizontal flip; evaluation images are resized on the
shorter side and centre-cropped. Values are normalised with the ImageNet mean and std, as the
video clips. Unreadable or empty files are skipped, counted and logged once.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from vjepa2.data.items import ItemSampler, list_files, make_item_dataset
from vjepa2.data.video import IMAGENET_MEAN, IMAGENET_STD
from vjepa2.data.video_sources import BadVideo, VideoStats, write_video_csv
from vjepa2.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CROP_SCALE = (0.3, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def list_images(source: str | os.PathLike) -> list[tuple[str, int | None]]:
    """`(path, label)` pairs of a folder of PNG/JPEG files, a `path[,label]` CSV or one image."""
    return list_files(source, IMAGE_EXTENSIONS, "image")


def _crop_box(h, w, rng, training):
    """(top, left, height, width): a random resized crop when training, else the centre square."""
    if training:
        for _ in range(10):
            area = h * w * rng.uniform(*CROP_SCALE)
            ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
            cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def image_loader(resolution: int, normalize: bool = True):
    """A loader for `ItemSampler`: path -> float32 (resolution, resolution, 3)."""
    from PIL import Image, UnidentifiedImageError

    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)

    def load(path: str, rng: np.random.Generator, training: bool) -> np.ndarray:
        u_flip = rng.random()
        try:
            if os.path.getsize(path) == 0:
                raise BadVideo("empty", "file has 0 bytes")
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as err:
            reason = "missing" if isinstance(err, FileNotFoundError) else "unreadable"
            raise BadVideo(reason, f"{type(err).__name__}: {err}") from None
        top, left, ch, cw = _crop_box(image.height, image.width, rng, training)
        image = image.resize((resolution, resolution), Image.BILINEAR,
                             box=(left, top, left + cw, top + ch))
        array = np.asarray(image, np.float32) / 255.0
        if training and u_flip < 0.5:
            array = array[:, ::-1]
        if normalize:
            array = (array - mean) / std
        return np.ascontiguousarray(array)

    return load


def make_image_dataset(source, resolution=128, batch_size=16, training=True, seed=0,
                       start_index=0, repeat=True, with_labels=False, gate=None,
                       num_parallel_calls=None, shard=(1, 0)):
    """Batches of (B, resolution, resolution, 3) float32 images; returns (dataset, stats).

    Element `i` depends only on `(seed, i)` and the files (see `vjepa2.data.items`).
    """
    if resolution < 1 or batch_size < 1:
        raise UsageError(f"resolution and batch_size must be >= 1; received {resolution}, "
                         f"{batch_size}")
    stats = VideoStats(str(source))
    sampler = ItemSampler(list_images(source), image_loader(resolution), seed, training, stats,
                          str(source))
    dataset = make_item_dataset(sampler, (resolution, resolution, 3), batch_size, start_index,
                                repeat, with_labels, gate, num_parallel_calls, shard)
    return dataset, stats


def as_one_tubelet(images, tubelet: int):
    """(B, H, W, C) images -> (B, tubelet, H, W, C) clips, each image repeated: how a video
    encoder reads an image (V-JEPA 2 mixes images into video pretraining this way)."""
    import tensorflow as tf

    return tf.repeat(images[:, None], tubelet, axis=1)


def texture(rng, size, low=40.0, high=200.0):
    """(size, size, 3) float32: a random colour plus three random gratings."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.broadcast_to(rng.uniform(low, high, 3).astype(np.float32), (size, size, 3)).copy()
    for _ in range(3):
        theta, freq = rng.uniform(0, np.pi), rng.uniform(3, 10)
        grating = np.sin(2 * np.pi * freq * (math.cos(theta) * xx + math.sin(theta) * yy)
                         + rng.uniform(0, 2 * np.pi))
        image += grating[..., None] * rng.uniform(10, 35, 3).astype(np.float32)
    return image


def synthesize_image(seed: int, index: int, size: int = 128):
    """One image of a single shape on a plain, slightly noisy background; returns (uint8
    (size, size, 3), label), the label the shape's kind (`SHAPE_KINDS`: 0 disc, 1 rectangle,
    2 triangle). Radius 22-42 px at 128 px, any rotation and position inside the frame, a
    random aspect for rectangles, a random colour with a shading ramp that turns with it."""
    from vjepa2.data.synthetic import SHAPE_KINDS, _coverage

    rng = np.random.default_rng([seed, index, 23])
    label = int(rng.integers(len(SHAPE_KINDS)))
    radius = rng.uniform(22, 42) * size / 128
    reach = radius * (1.45 if label == 1 else 1.0)
    cx, cy = rng.uniform(reach, size - reach, 2)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u = math.cos(angle) * (xx - cx) + math.sin(angle) * (yy - cy)
    v = math.cos(angle) * (yy - cy) - math.sin(angle) * (xx - cx)
    alpha = np.clip(_coverage(label, u, v, radius, rng.uniform(0.5, 1.0)) + 0.5, 0, 1)[..., None]
    background = rng.uniform(30, 220, 3).astype(np.float32) + \
        rng.normal(0, 6, (size, size, 3)).astype(np.float32)
    shade = np.clip(0.8 + 0.25 * u / radius, 0.5, 1.1)[..., None]
    fill = rng.uniform(30, 255, 3).astype(np.float32) * shade
    image = background + alpha * (fill - background)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), label


def generate_images(out_dir, count, size=128, seed=0, csv_name="labels.csv"):
    """Writes `count` labelled PNG images (`synthesize_image`) and a `path,label` CSV beside
    them; returns their paths."""
    from PIL import Image

    from vjepa2.files import atomic_write

    if count < 1 or size < 16:
        raise UsageError(f"count must be >= 1 and size >= 16; received {count}, {size}")
    out_dir = Path(out_dir)
    paths, labels = [], []
    for index in range(count):
        image, label = synthesize_image(seed, index, size)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        paths.append(atomic_write(out_dir / f"image_{index:05d}.png", buffer.getvalue()))
        labels.append(label)
    write_video_csv(out_dir / csv_name, paths, labels)
    return paths
