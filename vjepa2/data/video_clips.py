"""Clip sampling for the pipeline: which video and frames stream element `i` gets, and its crop.

`ClipConfig` holds how clips are sampled, augmented and batched; `ClipSampler` maps a stream
index to a decoded, cropped uint8 clip, redrawing from another video when a file is bad.
"""
from __future__ import annotations

import dataclasses
import math
import os
import threading

import numpy as np

from vjepa2.data.video_decode import (decode_indices, decode_size, resample_offsets,
                                     stream_fps)
from vjepa2.data.video_sources import BadVideo, VideoStats
from vjepa2.errors import UsageError

# Permutations of recent epochs kept; parallel map can straddle an epoch boundary.
_EPOCH_CACHE = 4


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """How clips are sampled, augmented and batched.

    Args:
        frames: Frames per clip T.
        fps: Target frame rate; source frames are resampled to it.
        resolution: Output height and width.
        batch_size: Clips per batch B.
        training: Random clip start, random resized crop and flip, shuffled video order. When
            False: the middle clip, resize-shorter-side + centre crop, no flip, files in order.
        seed: Seeds every random choice; element `i` depends only on `(seed, i)`.
        crop_scale: Range of the crop's area as a fraction of the frame (training).
        crop_ratio: Range of the crop's width / height (training).
        hflip: Flip clips horizontally with probability 0.5 (training).
        normalize: Subtract the ImageNet mean and divide by its std; else values are in [0, 1].
        repeat: An endless stream of epochs; else one pass over the videos.
    """

    frames: int = 8
    fps: float = 4.0
    resolution: int = 128
    batch_size: int = 8
    training: bool = True
    seed: int = 0
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.35)
    hflip: bool = True
    normalize: bool = True
    repeat: bool = True

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise UsageError(f"frames must be >= 1; received {self.frames}")
        if not self.fps > 0:
            raise UsageError(f"fps must be > 0; received {self.fps}")
        if self.resolution < 1:
            raise UsageError(f"resolution must be >= 1; received {self.resolution}")
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1; received {self.batch_size}")
        if self.seed < 0:
            raise UsageError(f"seed must be >= 0; received {self.seed}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise UsageError(f"crop_scale must satisfy 0 < lo <= hi <= 1; received {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise UsageError(f"crop_ratio must satisfy 0 < lo <= hi; received {self.crop_ratio}")



class ClipSampler:
    """Maps a stream index to a decoded, cropped (not yet resized) uint8 clip.

    Element `i` of epoch `e = i // N` draws video `order_e[i % N]` (a per-epoch permutation
    when training) and its random choices from a generator seeded with `(seed, i, k)`, where `k`
    counts redraws. A bad video is replaced by the next one in the epoch's order (`k = 1, 2,
    ...`); after all `N` fail, a `UsageError` is raised.

    Args:
        videos: `(path, label)` pairs from `list_videos`.
        config: The clip configuration.
        stats: Where bad videos and decoded clips are counted.
        source: Named in errors.
    """

    def __init__(
        self,
        videos: list[tuple[str, int | None]],
        config: ClipConfig,
        stats: VideoStats,
        source: str = "",
    ) -> None:
        if not videos:
            raise UsageError(f"no videos in source: {source}")
        self.videos = list(videos)
        self.config = config
        self.stats = stats
        self.source = source
        self._lock = threading.Lock()
        self._orders: dict[int, np.ndarray] = {}
        self._num_frames: dict[str, int] = {}

    def order(self, epoch: int) -> np.ndarray:
        """The video order of `epoch`: a seeded permutation when training, else file order."""
        n = len(self.videos)
        if not self.config.training:
            return np.arange(n)
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:
                rng = np.random.default_rng([self.config.seed, 0, epoch])
                order = rng.permutation(n)
                self._orders[epoch] = order
                while len(self._orders) > _EPOCH_CACHE:
                    del self._orders[min(self._orders)]
            return order

    def clip(self, index: int) -> tuple[np.ndarray, int]:
        """Returns `(clip, label)` for stream element `index`: uint8 `(T, h, w, 3)`, label or -1."""
        n = len(self.videos)
        epoch, position = divmod(index, n)
        order = self.order(epoch)
        for k in range(n):
            path, label = self.videos[int(order[(position + k) % n])]
            if self.stats.is_bad(path):
                continue
            rng = np.random.default_rng([self.config.seed, 1, index, k])
            try:
                clip = self._load(path, rng)
            except BadVideo as bad:
                self.stats.record_bad(path, bad.reason, bad.detail)
                continue
            self.stats.record_clip(redrawn=k > 0)
            return clip, -1 if label is None else int(label)
        raise UsageError(
            f"no readable video long enough for {self.config.frames} frames at "
            f"{self.config.fps} fps in {self.source}: {self.stats.summary()}"
        )

    def check_readable(self) -> None:
        """Decodes one clip from the first usable video; raises `UsageError` if there is none.

        Costs one decode on a healthy source, and turns an all-bad source into an error at
        construction instead of inside the running pipeline.
        """
        for path, _ in self.videos:
            if self.stats.is_bad(path):
                continue
            try:
                self._load(path, np.random.default_rng([self.config.seed, 2]))
                return
            except BadVideo as bad:
                self.stats.record_bad(path, bad.reason, bad.detail)
        raise UsageError(
            f"no readable video long enough for {self.config.frames} frames at "
            f"{self.config.fps} fps in {self.source}: {self.stats.summary()}"
        )

    def _load(self, path: str, rng: np.random.Generator) -> np.ndarray:
        import av

        # Every random number is drawn before decoding, in a fixed order, so the element's value
        # does not depend on how far decoding got.
        u_start, u_flip = rng.random(), rng.random()
        try:
            size = os.path.getsize(path)
        except OSError as err:
            raise BadVideo("missing", f"{type(err).__name__}: {err}") from None
        if size == 0:
            raise BadVideo("empty", "file has 0 bytes")
        try:
            container = av.open(path)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise BadVideo("unreadable", f"{type(err).__name__}: {err}") from None
        with container:
            if not container.streams.video:
                raise BadVideo("unreadable", "no video stream")
            stream = container.streams.video[0]
            source_fps = stream_fps(stream) or self.config.fps
            num_frames = self._frame_count(path, stream)
            offsets = resample_offsets(self.config.frames, source_fps, self.config.fps)
            max_start = num_frames - 1 - int(offsets[-1])
            if max_start < 0:
                raise BadVideo(
                    "too_short",
                    f"{num_frames} frames at {source_fps:g} fps; a clip of {self.config.frames} "
                    f"frames at {self.config.fps:g} fps spans {int(offsets[-1]) + 1}",
                )
            if self.config.training:
                start = min(int(u_start * (max_start + 1)), max_start)
            else:
                start = max_start // 2
            indices = start + offsets
            size = decode_size(stream.codec_context.width, stream.codec_context.height,
                               self.config.resolution)
            try:
                frames = decode_indices(container, stream, indices, source_fps, size)
            except (av.FFmpegError, OSError, ValueError) as err:
                raise BadVideo("decode_error", f"{type(err).__name__}: {err}") from None
        if len(frames) < len(indices):
            raise BadVideo(
                "decode_error",
                f"decoded {len(frames)} of {len(indices)} clip frames; the file claims {num_frames}",
            )
        h, w = frames[0].shape[:2]
        top, left, ch, cw = self._crop_box(h, w, rng)
        clip = np.stack([f[top : top + ch, left : left + cw] for f in frames])
        if self.config.training and self.config.hflip and u_flip < 0.5:
            clip = clip[:, :, ::-1]
        return np.ascontiguousarray(clip)

    def _frame_count(self, path: str, stream) -> int:
        if stream.frames > 0:
            return int(stream.frames)
        # WebM/MKV headers often omit the count; counting packets is exact and needs no decode.
        with self._lock:
            cached = self._num_frames.get(path)
        if cached is not None:
            return cached
        import av

        try:
            with av.open(path) as container:
                video = container.streams.video[0]
                count = sum(1 for packet in container.demux(video) if packet.size > 0)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise BadVideo("unreadable", f"{type(err).__name__}: {err}") from None
        with self._lock:
            self._num_frames[path] = count
        return count

    def _crop_box(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop, shared by all frames of a clip."""
        if not self.config.training:
            side = min(h, w)
            return (h - side) // 2, (w - side) // 2, side, side
        # Random resized crop as in torchvision: ten tries, then the largest centred crop whose
        # aspect ratio is inside the range.
        area = h * w
        log_lo, log_hi = math.log(self.config.crop_ratio[0]), math.log(self.config.crop_ratio[1])
        for _ in range(10):
            target = area * rng.uniform(*self.config.crop_scale)
            ratio = math.exp(rng.uniform(log_lo, log_hi))
            cw = int(round(math.sqrt(target * ratio)))
            ch = int(round(math.sqrt(target / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(rng.integers(0, h - ch + 1))
                left = int(rng.integers(0, w - cw + 1))
                return top, left, ch, cw
        ratio = w / h
        if ratio < self.config.crop_ratio[0]:
            cw, ch = w, int(round(w / self.config.crop_ratio[0]))
        elif ratio > self.config.crop_ratio[1]:
            ch, cw = h, int(round(h * self.config.crop_ratio[1]))
        else:
            ch, cw = h, w
        return (h - ch) // 2, (w - cw) // 2, ch, cw
