"""Loading a world model for a command, and the record that names it in a results folder."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vjepa2.errors import UsageError


def load_model(path: str | os.PathLike):
    """Loads the world model of a run folder (or `"shipped"`), with one-line `UsageError`s.

    Returns:
        `(world_model, folder)`: the model and the folder it was actually loaded from.
    """
    from vjepa2.models.world_model import load_world_model, resolve_run_dir

    folder = resolve_run_dir(path)
    if not folder.is_dir():
        raise UsageError(f"--model {path} is not a folder")
    try:
        return load_world_model(folder), folder.resolve()
    except FileNotFoundError as error:
        raise UsageError(f"--model {path} holds no world model ({error})") from None


def weights_digest(folder: str | os.PathLike) -> str | None:
    """SHA-256 over the folder's weight files (`*.weights.h5`, by relative path), or `None`.

    Names the exact weights a result came from, whatever the folder is called later.
    """
    folder = Path(folder)
    files = sorted(folder.rglob("*.weights.h5"))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_record(world_model, folder: str | os.PathLike | None) -> dict:
    """What a results folder records of the model: its folder, weights digest, class, config."""
    record = {"path": None if folder is None else str(Path(folder).resolve()),
              "weights_sha256": None if folder is None else weights_digest(folder),
              "class": type(world_model).__name__,
              "conventions": getattr(world_model, "conventions", None)}
    get_config = getattr(world_model, "get_config", None)
    if callable(get_config):
        record["config"] = get_config()
    return record
