"""Atomic checkpoints for exact resume: weights, optimizer state, step and data position.

Layout of a run folder's `checkpoints/`:
    ckpt-00000100/ model.weights.h5, optimizer.npz, state.json
    latest         the name of the newest complete checkpoint
A checkpoint folder is written under a temporary name (`.ckpt-00000100.XXXXXXXX.tmp`) and
renamed when complete, then `latest` is replaced atomically, so a crash or an interrupt at any
point leaves the previous checkpoint intact and `latest` never names a partial one. The temp
folders a kill leaves are removed by the next save (and when the run folder is next opened); a
full disk raises `DiskFullError` naming the space the checkpoint needs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from vjepa2.files import atomic_write, disk_full_guard, ensure_free_space, temp_path

WEIGHTS = "model.weights.h5"
OPTIMIZER = "optimizer.npz"
STATE = "state.json"


def _to_numpy(variable) -> np.ndarray:
    # A Keras variable's numpy() on JAX goes through __array__ without the copy keyword, which
    # NumPy 2 deprecates; its value is a JAX array that converts cleanly.
    value = getattr(variable, "value", variable)
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


class CheckpointManager:
    """Saves and restores a model with its optimizer and a JSON state dict.

    Args:
        directory: the `checkpoints/` folder of a run.
        keep: how many newest checkpoints to keep.
    """

    def __init__(self, directory, keep=2):
        self.directory = Path(directory)
        self.keep = max(1, int(keep))

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or None."""
        pointer = self.directory / "latest"
        if not pointer.is_file():
            return None
        path = self.directory / pointer.read_text().strip()
        if not (path / STATE).is_file():
            raise RuntimeError(f"checkpoint pointer {pointer} names {path}, which is incomplete")
        return path

    def latest_state(self) -> dict | None:
        path = self.latest()
        return None if path is None else json.loads((path / STATE).read_text())

    def save(self, model, optimizer, step: int, state: dict) -> Path:
        """Writes checkpoint `step` atomically and prunes old ones; returns its folder.

        Raises:
            DiskFullError: the disk filled; the previous checkpoint and `latest` are intact and
                the partial folder is removed.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.remove_partial()
        name = f"ckpt-{int(step):08d}"
        final = self.directory / name
        values = {f"v{i:05d}": _to_numpy(v) for i, v in enumerate(optimizer.variables)}
        # Asked up front (HDF5 meeting a full disk midway fails messily). Keras writes the
        # optimizer's variables into the weights file too, hence twice; once there is a
        # checkpoint, its size is the estimate.
        estimate = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
        estimate += 2 * sum(v.nbytes for v in values.values())
        needed = max(estimate, self._size_of_latest())
        ensure_free_space(final, needed)
        with disk_full_guard(final, needed):
            tmp = temp_path(self.directory, name, folder=True)
            try:
                model.save_weights(str(tmp / WEIGHTS))
                np.savez(tmp / OPTIMIZER, **values)
                (tmp / STATE).write_text(json.dumps({**state, "step": int(step)}, indent=2))
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
        atomic_write(self.directory / "latest", name + "\n")
        self._prune(keep_name=name)
        return final

    def _size_of_latest(self) -> int:
        """Bytes of the newest checkpoint: the best estimate of the next one's size."""
        path = self.directory / "latest"
        folder = self.directory / path.read_text().strip() if path.is_file() else None
        if folder is None or not folder.is_dir():
            return 0
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())

    def remove_partial(self) -> list[Path]:
        """Removes the temp folders of checkpoint writes that were killed midway."""
        partial = [p for p in self.directory.glob(".ckpt-*") if p.is_dir()]
        for path in partial:
            shutil.rmtree(path, ignore_errors=True)
        return partial

    def _prune(self, keep_name):
        checkpoints = sorted(p for p in self.directory.glob("ckpt-*") if p.is_dir())
        for path in checkpoints[:-self.keep]:
            if path.name != keep_name:
                shutil.rmtree(path)

    def restore(self, model, optimizer, path=None) -> dict:
        """Loads weights and optimizer state from `path` (default: latest); returns its state."""
        path = Path(path) if path else self.latest()
        if path is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        model.load_weights(str(path / WEIGHTS))
        with np.load(path / OPTIMIZER) as data:
            values = [data[k] for k in sorted(data.files)]
        variables = optimizer.variables
        if len(values) != len(variables):
            raise RuntimeError(f"checkpoint {path} has {len(values)} optimizer variables; the "
                               f"optimizer has {len(variables)}")
        for variable, value in zip(variables, values):
            if tuple(variable.shape) != value.shape:
                raise RuntimeError(f"optimizer variable {variable.path} has shape "
                                   f"{tuple(variable.shape)}; checkpoint {path} has {value.shape}")
            variable.assign(value)
        return json.loads((path / STATE).read_text())
