"""Labelled data for the JEPA family, generated here (no downloads): one entry point per kind.

- `images`: PNG images of textured shapes; label: the kind of the largest shape
  (`vjepa2.data.images.generate_images`, 128 px).
- `audio`: 1.5 s wav tones and chirps; label: the pitch contour
  (`vjepa2.data.audio.generate_audio`).
- `digits`: real handwritten digits from scikit-learn (1797, label: the digit) as 64 px PNGs
  with a train / held-out split (`vjepa2.data.digits.write_digits`).
- `motion`: 16-frame, 64 px mp4 clips of a shape moving over texture; label: the direction, the
  true flow known (`vjepa2.data.motion.generate_motion_clips`).
- `moving-digits`: 8-frame, 64 px mp4 clips of the real digits moving on black; labels: the
  digit and the direction, the true flow known, the digits' train / held-out split
  (`vjepa2.data.moving_digits.write_moving_digits`; `count`: clips per training digit).
"""
from __future__ import annotations

from vjepa2.errors import UsageError

KINDS = ("images", "audio", "motion", "digits", "moving-digits")
DEFAULT_COUNT = 1000


def generate(kind: str, out_dir, count: int | None = None, seed: int = 0):
    """Writes `count` labelled files of `kind` and `labels.csv` into `out_dir`; returns paths.

    `count` None: all 1797 digits, 3 clips per training digit, or 1000 generated files of the
    other kinds."""
    if kind == "digits":
        from vjepa2.data.digits import write_digits

        return write_digits(out_dir, count, seed=seed)
    if kind == "moving-digits":
        from vjepa2.data.moving_digits import write_moving_digits

        return write_moving_digits(out_dir, count or 3, seed=seed)
    count = DEFAULT_COUNT if count is None else count
    if kind == "images":
        from vjepa2.data.images import generate_images

        return generate_images(out_dir, count, seed=seed)
    if kind == "audio":
        from vjepa2.data.audio import generate_audio

        return generate_audio(out_dir, count, seed=seed)
    if kind == "motion":
        from vjepa2.data.motion import generate_motion_clips

        return generate_motion_clips(out_dir, count, seed=seed)
    raise UsageError(f"kind must be one of {', '.join(KINDS)}; received {kind!r}")
