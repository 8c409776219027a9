"""Durable file writes and settings checks shared by every command that writes a folder.

One implementation of each of the project's file rules:

- `atomic_write`: a file is replaced whole or not at all (temp file in the same folder, fsync,
  rename); a crash, an interrupt or a full disk leaves the previous content and no temp file.
- `append_line`: one JSON line appended and fsynced (logs of finished episodes, metrics).
- `read_jsonl`: reads such a log; a torn *last* line (a crash while appending) is dropped, a
  damaged line before the end is an error.
- `check_settings`: a folder records the settings it was made with; a re-run (resume) must
  agree on each of them, field by field, or gets one line naming the field and both values.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from vjepa2.errors import UsageError


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
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else bytes(data)
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


def append_line(path: str | os.PathLike, obj: Any) -> None:
    """Appends `obj` as one JSON line and fsyncs, so a finished record survives a crash."""
    line = (json.dumps(jsonable(obj)) + "\n").encode()
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


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


# What each command leaves in its output folder, so that one command refuses another's folder.
FOLDER_MARKERS = {
    "evaluation.json": "an evaluation (vjepa2 evaluate)",
    "collect.json": "a log collection (vjepa2 collect)",
    "checkpoints": "a training run (vjepa2 pretrain / finetune-ac)",
    "demo.json": "a demo (vjepa2 demo)",
}


def check_output_folder(out: str | os.PathLike, marker: str, flag: str = "--out") -> Path:
    """Refuses an output path that is a file or holds another command's output.

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
    return out
