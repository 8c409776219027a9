"""Video clips for V-JEPA 2 pretraining: list files, decode with PyAV, sample, augment, batch.

The pipeline is `tf.data.Dataset.range(start_index, ...)` -> parallel, order-preserving map that
decodes one clip per element with PyAV (inside `tf.numpy_function`) -> resize and normalize in
TensorFlow -> `batch(drop_remainder=True)` -> `prefetch`. Element `i` is a pure function of
`(seed, i)` and the files, so a resumed run that starts at `start_index = steps * batch_size`
sees exactly the clips the interrupted run would have seen.

Bad files (missing, empty, unreadable, too short) are skipped, counted and logged once, and the
element is redrawn from another video, so batches stay full and training never stops on a file.
"""
from __future__ import annotations

import atexit
import contextlib
import csv
import dataclasses
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vjepa2.errors import UsageError

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Reasons a whole file is skipped. They do not depend on which clip was asked for, so a file
# found bad once is skipped for good without changing any element's value.
FILE_REASONS = ("missing", "empty", "unreadable", "too_short")
# A decode that fails part-way (corrupt packets, fewer frames than the header claims) depends on
# the clip's position, so it only redraws that element; the file stays in use.
CLIP_REASONS = ("decode_error",)

# Below this start frame, decoding from the beginning is cheaper than a seek and avoids relying
# on timestamps.
_SEEK_MIN_FRAMES = 64
# Permutations of recent epochs kept; parallel map can straddle an epoch boundary.
_EPOCH_CACHE = 4
_INT64_MAX = np.iinfo(np.int64).max


def list_videos(source: str | os.PathLike) -> list[tuple[str, int | None]]:
    """Lists the videos of a folder or a CSV file.

    A folder is searched recursively for `.mp4`, `.webm`, `.mkv` and `.avi` files (any case),
    sorted by path; they have no label. A CSV holds one `path[,label]` row per video; relative
    paths are resolved against the CSV's folder, an optional header row `path[,label]` is
    skipped, and labels are integers. A single video file is also accepted.

    Args:
        source: A folder, a `.csv` file, or one video file.

    Returns:
        A list of `(path, label)` with `label` an int or `None`.

    Raises:
        UsageError: The source is missing, holds no videos, or a CSV row is malformed.

    Example:
    >>> videos = list_videos("data/videos")          # [("data/videos/a.mp4", None), ...]
    >>> videos = list_videos("data/train.csv")       # [("/abs/data/clips/a.mp4", 3), ...]
    """
    path = Path(source)
    if not path.exists():
        raise UsageError(f"video source does not exist: {source}")
    if path.is_dir():
        found = sorted(
            str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
        )
        if not found:
            raise UsageError(
                f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under folder: {source}"
            )
        return [(p, None) for p in found]
    if path.suffix.lower() == ".csv":
        return _read_video_csv(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return [(str(path), None)]
    raise UsageError(f"video source must be a folder, a .csv file or a video file; received {source}")


def _read_video_csv(path: Path) -> list[tuple[str, int | None]]:
    videos: list[tuple[str, int | None]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            row = [cell.strip() for cell in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if line_no == 1 and row[0].lower() == "path":
                continue
            if len(row) > 2:
                raise UsageError(f"{path}:{line_no}: expected 'path[,label]'; received {','.join(row)}")
            label = None
            if len(row) == 2 and row[1]:
                try:
                    label = int(row[1])
                except ValueError:
                    raise UsageError(
                        f"{path}:{line_no}: label must be an integer; received {row[1]!r}"
                    ) from None
            video = Path(row[0]).expanduser()
            if not video.is_absolute():
                video = path.parent / video
            videos.append((str(video), label))
    if not videos:
        raise UsageError(f"no video rows in CSV file: {path}")
    return videos


def write_video_csv(
    csv_path: str | os.PathLike,
    paths: list[str | os.PathLike],
    labels: list[int] | None = None,
) -> Path:
    """Writes a `path[,label]` CSV readable by `list_videos`.

    Paths under the CSV's folder are written relative to it, so the folder can be moved.

    Args:
        csv_path: The CSV file to write.
        paths: Video paths.
        labels: Optional integer label per path.

    Returns:
        The CSV path.

    Example:
    >>> write_video_csv("videos/train.csv", ["videos/a.mp4"], [2])
    """
    csv_path = Path(csv_path)
    if labels is not None and len(labels) != len(paths):
        raise UsageError(
            f"labels must match paths in length; received {len(labels)} labels for {len(paths)} paths"
        )
    root = csv_path.parent.resolve()
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for i, p in enumerate(paths):
            absolute = Path(p).resolve()
            shown = absolute.relative_to(root) if absolute.is_relative_to(root) else absolute
            writer.writerow([shown.as_posix()] if labels is None else [shown.as_posix(), int(labels[i])])
    return csv_path


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


class VideoStats:
    """Thread-safe counts of decoded clips and skipped videos, shared with the input pipeline.

    Attributes read through properties are snapshots. Each bad file is logged once (a `logging`
    warning on `vjepa2.data.video`) and counted once per reason.
    """

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._lock = threading.Lock()
        self._clips = 0
        self._redraws = 0
        self._counts: dict[str, int] = {}
        self._bad: dict[tuple[str, str], str] = {}  # (path, reason) -> detail, in discovery order
        self._skip: set[str] = set()

    def record_bad(self, path: str, reason: str, detail: str) -> None:
        """Counts a bad video; file-level reasons also mark it to be skipped from now on."""
        with self._lock:
            if reason in FILE_REASONS:
                self._skip.add(path)
            if (path, reason) in self._bad:
                return
            self._bad[(path, reason)] = detail
            self._counts[reason] = self._counts.get(reason, 0) + 1
        logger.warning("skipping video %s (%s): %s", path, reason, detail)

    def is_bad(self, path: str) -> bool:
        """Whether `path` is known to be unusable as a whole."""
        with self._lock:
            return path in self._skip

    def record_clip(self, redrawn: bool) -> None:
        with self._lock:
            self._clips += 1
            self._redraws += int(redrawn)

    @property
    def clips(self) -> int:
        """Clips decoded so far."""
        with self._lock:
            return self._clips

    @property
    def redraws(self) -> int:
        """Clips that came from another video because the drawn one was bad."""
        with self._lock:
            return self._redraws

    @property
    def counts(self) -> dict[str, int]:
        """Bad videos per reason."""
        with self._lock:
            return dict(self._counts)

    @property
    def bad_paths(self) -> list[str]:
        """Distinct bad video paths, in the order found."""
        with self._lock:
            return list(dict.fromkeys(path for path, _ in self._bad))

    def summary(self) -> str:
        """One line: clips decoded, redraws, and bad videos by reason."""
        with self._lock:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(self._counts.items())) or "none"
            bad = len({path for path, _ in self._bad})
            return (
                f"{self._clips} clips decoded, {self._redraws} redrawn; "
                f"{bad} bad videos ({reasons})"
            )


class _BadVideo(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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
            except _BadVideo as bad:
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
            except _BadVideo as bad:
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
            raise _BadVideo("missing", f"{type(err).__name__}: {err}") from None
        if size == 0:
            raise _BadVideo("empty", "file has 0 bytes")
        try:
            container = av.open(path)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise _BadVideo("unreadable", f"{type(err).__name__}: {err}") from None
        with container:
            if not container.streams.video:
                raise _BadVideo("unreadable", "no video stream")
            stream = container.streams.video[0]
            source_fps = _stream_fps(stream) or self.config.fps
            num_frames = self._frame_count(path, stream)
            offsets = resample_offsets(self.config.frames, source_fps, self.config.fps)
            max_start = num_frames - 1 - int(offsets[-1])
            if max_start < 0:
                raise _BadVideo(
                    "too_short",
                    f"{num_frames} frames at {source_fps:g} fps; a clip of {self.config.frames} "
                    f"frames at {self.config.fps:g} fps spans {int(offsets[-1]) + 1}",
                )
            if self.config.training:
                start = min(int(u_start * (max_start + 1)), max_start)
            else:
                start = max_start // 2
            indices = start + offsets
            try:
                frames = _decode_indices(container, stream, indices, source_fps)
            except (av.FFmpegError, OSError, ValueError) as err:
                raise _BadVideo("decode_error", f"{type(err).__name__}: {err}") from None
        if len(frames) < len(indices):
            raise _BadVideo(
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
            raise _BadVideo("unreadable", f"{type(err).__name__}: {err}") from None
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


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _decode_indices(container, stream, indices: np.ndarray, fps: float) -> list[np.ndarray]:
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


class PipelineGate:
    """Stops a pipeline's Python calls so that its iterator can be destroyed without deadlock.

    One global gate is closed at interpreter exit; a caller that abandons a pipeline mid-run
    (an exception or an interrupt inside `fit`) closes the pipeline's own gate first (pass it as
    `make_clip_dataset(..., gate=...)` and wrap each of its own `numpy_function`s in
    `with gate.call() as open_: ...`).

    A tf.data iterator still alive at exit (a global, or a frame kept by an uncaught exception)
    is destroyed during finalization and waits for its in-flight `numpy_function` calls; those
    threads can no longer take the GIL, and the process hangs. At exit (before finalization)
    this makes every new call return a blank clip at once (nobody reads it; an error would be
    logged by TensorFlow for each call) and waits until running calls are done, leaving the
    pipelines idle with nothing that needs Python.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._closed = False
        self._last_call = time.monotonic()

    def begin(self) -> bool:
        """Registers a running call; returns False (registering nothing) once closed."""
        with self._cond:
            self._last_call = time.monotonic()
            if self._closed:
                return False
            self._running += 1
            return True

    def end(self) -> None:
        """Ends a call for which `begin()` returned True."""
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def call(self):
        """Context for one Python call inside the pipeline; yields False once the gate is closed
        (the call should then return a placeholder at once)."""
        entered = self.begin()
        try:
            yield entered
        finally:
            if entered:
                self.end()

    def close(self, timeout: float = 10.0, quiet: float = 0.2) -> None:
        """Refuses new calls, then waits until none ran for `quiet` seconds (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            while time.monotonic() < deadline:
                idle = time.monotonic() - self._last_call
                if self._running == 0 and idle >= quiet:
                    return
                self._cond.wait(timeout=max(quiet - idle, 0.01))


_DRAIN = PipelineGate()
atexit.register(_DRAIN.close)


def make_clip_dataset(
    source: str | os.PathLike,
    *,
    frames: int = 8,
    fps: float = 4.0,
    resolution: int = 128,
    batch_size: int = 8,
    training: bool = True,
    seed: int = 0,
    start_index: int = 0,
    num_parallel_calls: int | None = None,
    crop_scale: tuple[float, float] = (0.3, 1.0),
    crop_ratio: tuple[float, float] = (0.75, 1.35),
    hflip: bool = True,
    normalize: bool = True,
    repeat: bool = True,
    with_labels: bool = False,
    gate: PipelineGate | None = None,
) -> tuple[tf.data.Dataset, VideoStats]:
    """Builds the batched video-clip stream for pretraining or evaluation.

    Element `i` of the stream (counting from 0 at the first clip of the first epoch) is a
    deterministic function of `(seed, i)`: the video (a per-epoch permutation when training),
    the clip start, the crop and the flip. `start_index` skips to element `start_index` without
    decoding the skipped clips, so a run resumed after `steps` steps passes
    `start_index = steps * batch_size` and continues the same stream.

    Frames are resampled to `fps` (see `resample_offsets`). Training clips get one random
    resized crop and flip shared by all their frames; evaluation clips are the middle clip of
    each video, resized on the shorter side and centre-cropped. Bad videos are skipped, counted
    in the returned stats and logged once, and the element is redrawn from the next video in the
    epoch's order; known-bad videos are not decoded again.

    Args:
        source: A folder of videos or a `path[,label]` CSV (see `list_videos`).
        frames: Frames per clip T.
        fps: Target frame rate.
        resolution: Output height and width H = W.
        batch_size: Clips per batch B; a final partial batch is dropped.
        training: Random sampling and augmentation; else deterministic centre clips.
        seed: Seed of every random choice.
        start_index: First stream element (>= 0).
        num_parallel_calls: Parallel decodes; `None` lets tf.data tune it.
        crop_scale: Crop area range as a fraction of the frame.
        crop_ratio: Crop width / height range.
        hflip: Random horizontal flips when training.
        normalize: ImageNet mean/std normalization; else values in [0, 1].
        repeat: Endless epochs; else one pass.
        with_labels: Yield `(video, label)` with int32 labels (-1 where the source has none).
        gate: A `PipelineGate` to close before abandoning the pipeline mid-run.

    Returns:
        `(dataset, stats)`: a `tf.data.Dataset` of float32 `(B, T, H, W, 3)` batches (or
        `(video, label (B,))` pairs), and the `VideoStats` the pipeline updates.

    Raises:
        UsageError: A bad argument, an empty or missing source, or no usable video in it.

    Example:
    >>> dataset, stats = make_clip_dataset("data/videos", frames=8, fps=4, batch_size=8)
    >>> video = next(iter(dataset))                     # (8, 8, 128, 128, 3) float32
    >>> print(stats.summary())
    """
    import tensorflow as tf

    config = ClipConfig(
        frames=frames,
        fps=fps,
        resolution=resolution,
        batch_size=batch_size,
        training=training,
        seed=seed,
        crop_scale=tuple(crop_scale),
        crop_ratio=tuple(crop_ratio),
        hflip=hflip,
        normalize=normalize,
        repeat=repeat,
    )
    if start_index < 0:
        raise UsageError(f"start_index must be >= 0; received {start_index}")
    if num_parallel_calls is not None and num_parallel_calls < 1:
        raise UsageError(f"num_parallel_calls must be >= 1 or None; received {num_parallel_calls}")
    videos = list_videos(source)
    stats = VideoStats(str(source))
    sampler = ClipSampler(videos, config, stats, source=str(source))
    sampler.check_readable()

    own_gate = gate if gate is not None else PipelineGate()

    def load(index: np.int64) -> tuple[np.ndarray, np.int32]:
        with _DRAIN.call() as open_, own_gate.call() as own_open:
            if not (open_ and own_open):
                return np.zeros((config.frames, 1, 1, 3), np.uint8), np.int32(-1)
            clip, label = sampler.clip(int(index))
        return clip, np.int32(label)

    mean = tf.constant(IMAGENET_MEAN, tf.float32)
    std = tf.constant(IMAGENET_STD, tf.float32)

    def to_clip(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        clip, label = tf.numpy_function(load, [index], (tf.uint8, tf.int32), name="decode_clip")
        clip.set_shape([config.frames, None, None, 3])
        # Antialiased resize: crops are often much larger than the output.
        video = tf.image.resize(clip, [config.resolution] * 2, method="bilinear", antialias=True)
        video = video / 255.0
        if config.normalize:
            video = (video - mean) / std
        video = tf.ensure_shape(video, [config.frames, config.resolution, config.resolution, 3])
        label = tf.ensure_shape(label, [])
        return video, label

    stop = _INT64_MAX if config.repeat else len(videos)
    dataset = tf.data.Dataset.range(start_index, max(stop, start_index))
    dataset = dataset.map(
        to_clip,
        num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE,
        deterministic=True,
    )
    if not with_labels:
        dataset = dataset.map(lambda video, label: video)
    dataset = dataset.batch(config.batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE), stats


def measure_throughput(dataset: tf.data.Dataset, batches: int, warmup: int = 1) -> float:
    """Clips per second delivered by `dataset`, after `warmup` batches.

    Args:
        dataset: A dataset of `(B, ...)` batches, `(video, label)` pairs, or dicts with a
            `video` entry.
        batches: Batches to time (>= 1).
        warmup: Batches drawn first and not timed (pipeline start, autotuning).

    Returns:
        Clips per second over the timed batches.

    Example:
    >>> dataset, _ = make_clip_dataset("data/videos")
    >>> print(f"{measure_throughput(dataset, batches=20):.1f} clips/s")
    """
    if batches < 1:
        raise UsageError(f"batches must be >= 1; received {batches}")
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    clips = 0
    begin = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        video = batch[0] if isinstance(batch, tuple) else batch
        if isinstance(video, dict):
            video = video["video"]
        clips += int(video.shape[0])
    return clips / (time.perf_counter() - begin)
