"""Real labelled images for I-JEPA: scikit-learn's handwritten digits written as PNG files.

The data set (1797 grey 8 x 8 scans of the digits 0-9 by 43 writers, UCI "Optical Recognition
of Handwritten Digits", 16 grey levels) ships inside the scikit-learn package, so no download
is needed. Each scan is scaled from 0..16 to 0..255 and resized bilinearly to `size` px (64:
one 16 x 16 patch covers 2 x 2 of the scan's pixels), saved as an RGB PNG. A seeded permutation
splits it once: `train.csv` (also the unlabelled pretraining set) and `heldout.csv`, both
`path,label`, and `labels.csv` with every item.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vjepa2.data.video_sources import write_video_csv
from vjepa2.errors import UsageError

DIGITS = 1797


def load_digits_scans() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) uint8 0..255, labels (1797,) int) from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("the digits data ships with scikit-learn, which is not installed: "
                         "pip install scikit-learn (or the project's 'family' extra)") from None
    digits = load_digits()
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, digits.target.astype(int)


def enlarge_scan(scan, size: int) -> np.ndarray:
    """An 8 x 8 uint8 scan resized bilinearly to (size, size) uint8."""
    from PIL import Image

    image = Image.fromarray(np.asarray(scan, np.uint8), "L").resize((size, size), Image.BILINEAR)
    return np.asarray(image)


def split_digits(count: int, heldout: float, seed: int) -> tuple[np.ndarray, int]:
    """(the first `count` scan indices of a seeded permutation, how many of them, from the
    front, are held out): the split of `write_digits` and of the moving digits."""
    order = np.random.default_rng([seed, 8]).permutation(DIGITS)[:count]
    return order, min(max(int(round(heldout * count)), 1), count - 1)


def write_digits(out_dir, count=None, size=64, heldout=0.3, seed=0) -> list[Path]:
    """Writes the digits (the first `count` of a seeded permutation; default all 1797) as
    `size` px PNGs with `labels.csv`, `train.csv` and `heldout.csv`; returns their paths."""
    from PIL import Image

    from vjepa2.files import atomic_write

    count = DIGITS if count is None else count
    if not 2 <= count <= DIGITS or size < 16:
        raise UsageError(f"count must be in 2..{DIGITS} and size >= 16; received {count}, {size}")
    if not 0.0 < heldout < 1.0:
        raise UsageError(f"heldout must be in (0, 1); received {heldout}")
    images, labels = load_digits_scans()
    order, held = split_digits(count, heldout, seed)
    out_dir = Path(out_dir)
    paths = []
    for index in order:
        buffer = io.BytesIO()
        Image.fromarray(enlarge_scan(images[index], size), "L").convert("RGB").save(
            buffer, format="PNG")
        paths.append(atomic_write(out_dir / f"digit_{index:04d}.png", buffer.getvalue()))
    ordered = [int(labels[i]) for i in order]
    write_video_csv(out_dir / "labels.csv", paths, ordered)
    write_video_csv(out_dir / "heldout.csv", paths[:held], ordered[:held])
    write_video_csv(out_dir / "train.csv", paths[held:], ordered[held:])
    return paths
