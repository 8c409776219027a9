"""PyAV decoding for the clip pipeline: frame-rate resampling and decoding chosen frames.

`resample_offsets` maps a clip at the target frame rate onto source frames; `decode_indices`
decodes exactly those frames, seeking to a keyframe when the clip starts far into the file;
`decode_size` picks a reduced size for frames much larger than the clips' resolution (a 4K
video among 128 px ones), which FFmpeg's scaler makes while converting to RGB in the decoder
thread, so that one large file does not slow every step.
"""
from __future__ import annotations

import numpy as np

# Below this start frame, decoding from the beginning is cheaper than a seek and avoids relying
# on timestamps.
_SEEK_MIN_FRAMES = 64
# Frames are converted at full size up to this many times the output resolution (shorter
# side). A crop keeps at least ~0.5 of a side (crop scale >= 0.3), so crops stay at least
# twice the output size and the antialiased resize keeps its quality.
DECODE_SIDE_FACTOR = 4


def decode_size(width: int, height: int, resolution: int) -> tuple[int, int] | None:
    """`(width, height)` to convert frames to, or None to keep the source size.

    Frames whose shorter side exceeds `DECODE_SIDE_FACTOR * resolution` are scaled down to it
    (aspect ratio kept, even sizes); smaller frames are untouched (their clips are unchanged).
    """
    side = DECODE_SIDE_FACTOR * int(resolution)
    short = min(int(width), int(height))
    if short <= side or short <= 0:
        return None
    scale = side / short
    return (max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2))


def resample_offsets(frames: int, source_fps: float, target_fps: float) -> np.ndarray:
    """Source-frame offsets of a clip's frames, relative to its first frame.

    The clip takes one frame every `source_fps / target_fps` source frames, rounded half up
    (30 -> 4 fps: 0, 8, 15, 23, 30, ...). A target above the source rate repeats frames.

    Args:
        frames: Frames per clip T.
        source_fps: The video's frame rate.
        target_fps: The wanted frame rate.

    Returns:
        int64 `(T,)`, non-decreasing, starting at 0.

    Example:
    >>> resample_offsets(4, 30.0, 4.0)
    array([ 0,  8, 15, 23])
    """
    step = source_fps / target_fps
    return np.floor(np.arange(frames) * step + 0.5).astype(np.int64)


def stream_fps(stream) -> float:
    """The frame rate of a PyAV video stream, or 0.0 when the file declares none."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def decode_indices(container, stream, indices: np.ndarray, fps: float,
                   size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Decodes the frames at source indices `indices` (non-decreasing) as RGB arrays.

    Starts with a keyframe seek when the first index is far in, mapping timestamps to frame
    indices; otherwise decodes from the beginning and counts frames. Stops after the last index.
    A missing frame (variable frame rate) is filled by the next decoded one. With `size`
    (`(width, height)`, from `decode_size`) frames are scaled to it while converted to RGB.
    """
    first = int(indices[0])
    if not (first >= _SEEK_MIN_FRAMES and stream.time_base is not None and fps > 0):
        return _decode_counting(container, stream, indices, size)
    start_pts = stream.start_time or 0
    target = start_pts + int(first / fps / stream.time_base)
    container.seek(target, stream=stream, backward=True, any_frame=False)
    out: list[np.ndarray] = []
    position = -1
    for frame in container.decode(stream):
        if frame.pts is None:
            # Without timestamps the seek position is unknown: decode from the start.
            container.seek(start_pts, stream=stream, backward=True)
            return _decode_counting(container, stream, indices, size)
        previous = position
        position = int(round(float((frame.pts - start_pts) * stream.time_base) * fps))
        if previous < 0 and position > first:
            # The seek landed past the target (no keyframe before it): decode from the start.
            container.seek(start_pts, stream=stream, backward=True)
            return _decode_counting(container, stream, indices, size)
        if position < indices[len(out)]:
            continue
        image = _to_rgb(frame, size)
        while len(out) < len(indices) and indices[len(out)] <= position:
            out.append(image)
        if len(out) == len(indices):
            break
    return out


def _to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    # Area averaging: the antialiased equivalent of the pipeline's own resize.
    return frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")


def _decode_counting(container, stream, indices: np.ndarray,
                     size: tuple[int, int] | None = None) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for position, frame in enumerate(container.decode(stream)):
        if position < indices[len(out)]:
            continue
        image = _to_rgb(frame, size)
        while len(out) < len(indices) and indices[len(out)] <= position:
            out.append(image)
        if len(out) == len(indices):
            break
    return out
