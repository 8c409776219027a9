"""Run-folder checks and settings shared by the training commands (pretrain, finetune-ac)."""
from __future__ import annotations

import json
from pathlib import Path

from vjepa2.errors import UsageError
from vjepa2.files import atomic_write, check_output_folder, check_settings, jsonable

CONFIG_FILE = "config.json"


def resolve_precision(precision: str) -> str:
    """'auto' -> mixed_bfloat16 when a GPU is visible to the backend, else float32."""
    if precision != "auto":
        return precision
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        has_gpu = any(d.platform == "gpu" for d in jax.devices())
    elif backend == "tensorflow":
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    else:
        has_gpu = False
    return "mixed_bfloat16" if has_gpu else "float32"


def check_run_folder(out, config: dict, resume: bool, resume_keys, clean: bool = True):
    """Checks `out` against a new or resumed run; returns `(CheckpointManager, state or None)`.

    A folder holding a checkpoint needs `resume`; a resumed run must agree with the saved
    `config.json` on every key of `resume_keys` (what fixes the data stream and the model).
    `clean=False` only reads the folder (a worker that is not the one writing it leaves the
    temp files of the writer's killed writes to the writer).

    Raises:
        UsageError: naming the conflict.
    """
    from vjepa2.train.checkpoint import CheckpointManager

    out = check_output_folder(out, "checkpoints", clean=clean)
    manager = CheckpointManager(out / "checkpoints")
    state = manager.latest_state() if out.exists() else None
    if state is not None and not resume:
        raise UsageError(f"run folder {out} already holds a run at step {state['step']}; pass "
                         "--resume to continue it or choose another --out")
    if state is not None:
        check_settings(out / CONFIG_FILE, config, what="a run", keys=list(resume_keys),
                       hint="--resume needs the same value", record=False)
    return manager, state


def record_settings(out, settings: dict, resumed_at: int | None) -> dict:
    """Writes `config.json`: the settings the run's latest steps ran with.

    A new run (`resumed_at` None) records `settings`. A resume records its own settings (a
    resumed run with another `--lr` is no longer described by the first run's) and appends
    `{"step": resumed_at, "changed": {key: [before, after]}}` to the `resumed` list, so every
    step's settings can be traced.

    Returns:
        What was written.
    """
    path = Path(out) / CONFIG_FILE
    settings = jsonable(settings)
    record = dict(settings)
    if resumed_at is not None and path.is_file():
        before = json.loads(path.read_text())
        changed = {k: [before.get(k), v] for k, v in settings.items() if before.get(k) != v}
        record["resumed"] = before.get("resumed", []) + [{"step": int(resumed_at),
                                                          "changed": changed}]
    atomic_write(path, json.dumps(record, indent=2))
    return record
