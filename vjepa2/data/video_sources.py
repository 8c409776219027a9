"""Video sources for the clip pipeline: list files or read a CSV, and account for bad files.

`list_videos` turns a folder, a `path[,label]` CSV or one file into `(path, label)` pairs;
`write_video_csv` writes such a CSV. `VideoStats` counts decoded clips and skipped files while
the pipeline runs, and `BadVideo` is how a decode reports why a file or clip is unusable.
"""
from __future__ import annotations

import csv
import logging
import os
import threading
from pathlib import Path

from vjepa2.errors import UsageError

# Bad files are reported on the logger of `vjepa2.data.video`, the pipeline's public module, so
# that filtering or capturing them does not depend on where the accounting lives.
logger = logging.getLogger("vjepa2.data.video")

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")

# Reasons a whole file is skipped. They do not depend on which clip was asked for, so a file
# found bad once is skipped for good without changing any element's value.
FILE_REASONS = ("missing", "empty", "unreadable", "too_short")
# A decode that fails part-way (corrupt packets, fewer frames than the header claims) depends on
# the clip's position, so it only redraws that element; the file stays in use.
CLIP_REASONS = ("decode_error",)


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


class BadVideo(Exception):
    """Why a video (reason in `FILE_REASONS`) or one of its clips (`CLIP_REASONS`) is unusable.

    Args:
        reason: One of `FILE_REASONS` or `CLIP_REASONS`.
        detail: A human-readable explanation, logged once per file and reason.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
