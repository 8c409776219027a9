"""PyAV decoding for the clip pipeline: frame-rate resampling and decoding chosen frames.

`resample_offsets` maps a clip at the target frame rate onto source frames; `decode_indices`
decodes exactly those frames, seeking to a keyframe when the clip starts far into the file.
"""
from __future__ import annotations

import numpy as np

# Below this start frame, decoding from the beginning is cheaper than a seek and avoids relying
# on timestamps.
_SEEK_MIN_FRAMES = 64


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


def decode_indices(container, stream, indices: np.ndarray, fps: float) -> list[np.ndarray]:
    """Decodes the frames at source indices `indices` (non-decreasing) as RGB arrays.

    Starts with a keyframe seek when the first index is far in, mapping timestamps to frame
    indices; otherwise decodes from the beginning and counts frames. Stops after the last index.
    A missing frame (variable frame rate) is filled by the next decoded one.
    """
    first = int(indices[0])
    seek = first >= _SEEK_MIN_FRAMES and stream.time_base is not None and fps > 0
    if seek:
        start_pts = stream.start_time or 0
        target = start_pts + int(first / fps / stream.time_base)
        container.seek(target, stream=stream, backward=True, any_frame=False)
    out: list[np.ndarray] = []
    position = -1
    for frame in container.decode(stream):
        if seek:
            if frame.pts is None:
                # Without timestamps the seek position is unknown: decode from the start.
                container.seek(start_pts, stream=stream, backward=True)
                return _decode_counting(container, stream, indices)
            previous = position
            position = int(round(float((frame.pts - start_pts) * stream.time_base) * fps))
            if previous < 0 and position > first:
                # The seek landed past the target (no keyframe before it): decode from the start.
                container.seek(start_pts, stream=stream, backward=True)
                return _decode_counting(container, stream, indices)
        else:
            position += 1
        if position < indices[len(out)]:
            continue
        image = frame.to_ndarray(format="rgb24")
        while len(out) < len(indices) and indices[len(out)] <= position:
            out.append(image)
        if len(out) == len(indices):
            break
    return out


def _decode_counting(container, stream, indices: np.ndarray) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for position, frame in enumerate(container.decode(stream)):
        if position < indices[len(out)]:
            continue
        image = frame.to_ndarray(format="rgb24")
        while len(out) < len(indices) and indices[len(out)] <= position:
            out.append(image)
        if len(out) == len(indices):
            break
    return out
