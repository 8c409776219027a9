"""Write and read whole videos with PyAV (FFmpeg bindings)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vjepa2.files import disk_full_guard


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 4.0) -> Path:
    """Writes `frames` (T, H, W, 3) uint8 as an H.264 (or MPEG-4) mp4, atomically.

    The file appears under its final name only once complete (temp file + rename), so an
    interrupted writer never leaves a truncated video behind.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 of shape (T, H, W, 3); received {frames.dtype} {frames.shape}"
        )
    if frames.shape[0] == 0:
        raise ValueError("frames must hold at least one frame; received 0")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    # Even sizes keep yuv420p encoders happy; pad by edge replication if needed.
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    rate = max(1, int(round(fps)))
    written = [0]  # the size reached when a full disk stopped the write
    with disk_full_guard(path, lambda: written[0], at_least=True):
        try:
            with av.open(str(tmp), mode="w", format="mp4") as container:
                codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
                stream = container.add_stream(codec, rate=rate)
                stream.width = frames.shape[2]
                stream.height = frames.shape[1]
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": "18", "preset": "veryfast"}
                else:
                    stream.bit_rate = 4_000_000
                for frame in frames:
                    image = av.VideoFrame.from_ndarray(frame, format="rgb24")
                    for packet in stream.encode(image):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                written[0] = tmp.stat().st_size
                tmp.unlink()
    return path


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decodes a whole video; returns (frames (T, H, W, 3) uint8, frames per second)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"no decodable video frames in {path}")
    return np.stack(frames), fps
