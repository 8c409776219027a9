"""Durable file writes and settings checks shared by every command that writes a folder.

One implementation of each of the project's file rules:

- `atomic_write`: a file is replaced whole or not at all (temp file in the same folder, fsync,
  rename); a crash, an interrupt or a full disk leaves the previous content and no temp file.
- `append_line`: one JSON line appended and fsynced (logs of finished episodes, metrics).
- `read_jsonl`: reads such a log; a torn *last* line (a crash while appending) is dropped, a
  damaged line before the end is an error.
- `check_settings`: a folder records the settings it was made with; a re-run (resume) must
  agree on each of them, field by field, or gets one line naming the field and both values.
- `check_output_folder`: one command never writes into a file or another command's folder; the
  temp files and folders that killed writes left in its own folder are removed on opening it.
- `temp_path` / `remove_stale_temps`: every writer names its temp files and folders
  `.NAME.XXXXXXXX.tmp` (or `.NAME.tmpPID`), so one rule finds what a kill left behind.
- `disk_full_guard`: a full disk becomes one `DiskFullError` naming the path and the space
  the write needed, whatever library met it (OSError, h5py, TensorFlow); `ensure_free_space`
  refuses a large write of known size up front.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from vjepa2.errors import DiskFullError, UsageError


def jsonable(value: Any) -> Any:
    """Numpy scalars/arrays, tuples and non-finite floats turned into JSON-safe values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Writes `data` to `path` through a temp file in the same folder, fsync and a rename.

    The parent folder is created. On any error (including a full disk) the temp file is
    removed and `path` keeps its previous content.

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    with disk_full_guard(path, len(payload)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """`obj` (made JSON-safe by `jsonable`) written atomically as JSON with a final newline."""
    return atomic_write(path, json.dumps(jsonable(obj), indent=indent) + "\n")


def append_line(path: str | os.PathLike, obj: Any, sync: bool = True) -> None:
    """Appends `obj` as one JSON line and fsyncs, so a finished record survives a crash.

    A full disk raises `DiskFullError` and leaves no partial line. `sync=False` skips the fsync
    (per-step metrics, where a lost last line is re-made by the resume). A `str` is written as
    the line itself (already serialized).
    """
    line = ((obj if isinstance(obj, str) else json.dumps(jsonable(obj))) + "\n").encode()
    with disk_full_guard(path, len(line)), open(path, "ab") as handle:
        size = handle.tell()
        try:
            handle.write(line)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        except OSError:
            handle.truncate(size)  # no torn line left by a full disk
            raise


def read_jsonl(path: str | os.PathLike, *, repair: bool = True) -> tuple[list, bool]:
    """The records of a JSON-lines log, and whether a torn last line was dropped.

    A last line that is not JSON is what a crash while appending leaves; it is dropped (and,
    with `repair`, the file is rewritten without it). A bad line followed by good ones means
    the file is damaged: `UsageError`.

    Returns:
        `(records, dropped)`; `([], False)` if the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        return [], False
    lines = path.read_bytes().split(b"\n")
    records, good = [], []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if any(rest.strip() for rest in lines[n + 1:]):
                raise UsageError(f"{path} line {n + 1} is not JSON; the file is damaged "
                                 "(remove the line or start a new folder)") from None
            if repair:
                atomic_write(path, b"".join(g + b"\n" for g in good))
            return records, True
        good.append(line)
    return records, False


def check_settings(path: str | os.PathLike, wanted: dict, *, what: str,
                   keys: Iterable[str] | None = None, hint: str = "use another --out or "
                   "the same settings", record: bool = True) -> bool:
    """Checks a folder's recorded settings against `wanted`, or records them.

    Args:
        path: the settings file (e.g. `out/evaluation.json`).
        wanted: the settings of this run (made JSON-safe before comparing).
        what: what the folder holds, for the message ("an evaluation", "a collection").
        keys: the keys that must agree (default: every key of either side).
        hint: what the user can do, appended to the message.
        record: write `wanted` when the file does not exist yet (False: only compare, for a
            caller that records the settings once its run has really started).

    Returns:
        True if the file existed (a continued run), False otherwise.

    Raises:
        UsageError: one line naming the first differing key and both values.
    """
    path = Path(path)
    wanted = jsonable(wanted)
    if not path.exists():
        if record:
            write_json(path, wanted)
        return False
    try:
        found = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UsageError(f"{path} is not valid JSON; the folder is damaged ({hint})") from None
    for key in sorted(set(found) | set(wanted)) if keys is None else keys:
        if found.get(key) != wanted.get(key):
            raise UsageError(f"{path.parent} holds {what} with {key}={found.get(key)!r}; "
                             f"received {key}={wanted.get(key)!r} ({hint})")
    return True


# ------------------------------------------------------------------------ temps and full disks

# Temp files and folders of this project's writers: `.NAME.XXXXXXXX.tmp` (atomic_write,
# temp_path), `.NAME.tmpPID` (episode and video files); `.NAME.old.tmp` holds a folder's previous
# version for the moment it is swapped (restored if NAME is missing).
_TEMP_NAME = re.compile(r"^\..+\.tmp\d*$")
_OLD_SUFFIX = ".old.tmp"


def temp_path(parent: str | os.PathLike, name: str, folder: bool = False) -> Path:
    """A new, unique temp file (or folder) for writing `parent/name`, in `parent`.

    Its name, `.NAME.XXXXXXXX.tmp`, is what `remove_stale_temps` removes after a kill.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    if folder:
        return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    return Path(path)


def old_path(path: str | os.PathLike) -> Path:
    """Where a folder's previous version waits while a new one replaces it."""
    path = Path(path)
    return path.with_name(f".{path.name}{_OLD_SUFFIX}")


def replace_folder(new: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Moves the finished folder `new` to `target`, replacing a previous `target`.

    The previous version waits at `old_path(target)` between the two renames; a kill there
    leaves it for `remove_stale_temps` to rename back, so `target` is never lost.
    """
    new, target = Path(new), Path(target)
    if target.exists():
        old = old_path(target)
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old)
    else:
        os.replace(new, target)
    return target


def remove_stale_temps(folder: str | os.PathLike, depth: int = 2) -> list[Path]:
    """Removes the temp files and folders that killed writes left in `folder`.

    Looks `depth` levels down. A folder's previous version (`.NAME.old.tmp`) whose `NAME` is
    missing (a kill between the two renames of a swap) is renamed back instead of removed.
    Call it only on a folder no other process is writing into.

    Returns:
        The paths removed or restored.
    """
    folder = Path(folder)
    found: list[Path] = []
    if not folder.is_dir() or depth < 1:
        return found
    for entry in sorted(folder.iterdir()):
        if _TEMP_NAME.match(entry.name):
            if entry.name.endswith(_OLD_SUFFIX) and entry.is_dir():
                original = entry.with_name(entry.name[1:-len(_OLD_SUFFIX)])
                if not original.exists():
                    os.replace(entry, original)
                    found.append(entry)
                    continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            found.append(entry)
        elif entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            found += remove_stale_temps(entry, depth - 1)
    return found


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error` (or an error it was raised from) is a full disk (ENOSPC).

    Knows `OSError` with `errno.ENOSPC` and the messages h5py ("errno = 28") and TensorFlow
    ("No space left on device") put in their own exception types.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFullError):
            return True
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        text = str(error)
        if "No space left on device" in text or "errno = 28" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


def as_disk_full(error: BaseException, path: str | os.PathLike) -> DiskFullError:
    """The `DiskFullError` in `error`'s chain, or one made for `path` (the error's own file
    name when it has one); for a caller that met a full disk outside `disk_full_guard`."""
    seen = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, DiskFullError):
            return link
        if isinstance(link, OSError) and link.filename:
            path = link.filename
        link = link.__cause__ or link.__context__
    return DiskFullError(path, None, free_bytes(path))


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes free to this user on the file system holding `path` (or its nearest parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@contextlib.contextmanager
def disk_full_guard(path: str | os.PathLike, needed=None, at_least: bool = False):
    """Turns a full disk met inside the block into `DiskFullError(path, needed, free)`, `free`
    being the space there was when the block began.

    Args:
        path: what the block writes, named in the message.
        needed: bytes the write needs, or a function returning them when the error is seen
            (for a writer that learns the size only as it writes), or None.
        at_least: `needed` is a lower bound.

    The block cleans up its own temp files (a `finally`); any other error passes unchanged.
    """
    free = free_bytes(path)  # before the write: what the message compares `needed` with
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        if not is_disk_full(error):
            raise
        size = needed() if callable(needed) else needed
        _drop_repeats_of_full_disk()
        raise DiskFullError(path, size, free, at_least) from error


def _drop_repeats_of_full_disk() -> None:
    """Drops later "Exception ignored" reports of the same full disk.

    Objects of the failed write (an h5py file or dataset that cannot flush its metadata) fail
    again when they are freed, and Python prints each as an "Exception ignored" traceback after
    the one-line error. Unraisable errors that are a full disk are dropped from now on; any other
    goes to the previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_full_disk", False):
        return

    def hook(unraisable):
        if not is_disk_full(unraisable.exc_value):
            previous(unraisable)

    hook.drops_full_disk = True
    sys.unraisablehook = hook



def ensure_free_space(path: str | os.PathLike, needed: int, margin: float = 1.05) -> None:
    """Raises `DiskFullError` before a large write that cannot fit on `path`'s file system.

    A writer that knows its size asks first: HDF5 (Keras weights) meeting a full disk midway
    leaves objects that fail again when freed, printing tracebacks and, at exit, crashing in
    HDF5's teardown. A disk that fills during the write is still caught by `disk_full_guard`.
    """
    free = free_bytes(path)
    if free is not None and free < needed * margin:
        raise DiskFullError(path, needed, free)


# What each command leaves in its output folder, so that one command refuses another's folder.
FOLDER_MARKERS = {
    "evaluation.json": "an evaluation (vjepa2 evaluate)",
    "collect.json": "a log collection (vjepa2 collect)",
    "checkpoints": "a training run (vjepa2 pretrain / finetune-ac)",
    "demo.json": "a demo (vjepa2 demo)",
    "videos.json": "generated videos (vjepa2 make-videos)",
}


def check_output_folder(out: str | os.PathLike, marker: str, flag: str = "--out",
                        clean: bool = True) -> Path:
    """Refuses an output path that is a file or holds another command's output.

    A folder this command may use (new, empty, or its own) is cleaned of the temp files that
    killed writes left (`remove_stale_temps`), unless `clean` is False (a reader that is not
    the folder's writer).

    Args:
        out: the output folder (it need not exist).
        marker: the file or folder this command keeps in it (a key of `FOLDER_MARKERS`).
        flag: the option that named it, for the message.

    Returns:
        `out` as a `Path`.

    Raises:
        UsageError: one line naming the path and what it holds.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out} is a file; expected a folder (new or from the same "
                         "command)")
    if out.is_dir() and not (out / marker).exists():
        for other, what in FOLDER_MARKERS.items():
            if other != marker and (out / other).exists():
                raise UsageError(f"{flag} {out} holds {what}; choose another folder")
    if clean:
        remove_stale_temps(out)
    return out
