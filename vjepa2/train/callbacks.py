"""Keras callbacks shared by the training commands: metrics log, checkpoints, NaN guard."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from vjepa2.files import atomic_write, read_jsonl


def _step_of(model) -> int:
    return int(np.asarray(model.optimizer.iterations.numpy()
                          if hasattr(model.optimizer.iterations, "numpy")
                          else model.optimizer.iterations))


class MetricsLogger(keras.callbacks.Callback):
    """Appends one JSON line per step to `metrics.jsonl`: step, wall time and every logged value.

    On resume from step S, lines for steps > S (written after the last checkpoint by the
    interrupted run) are dropped first, so each step appears once.
    """

    def __init__(self, path, start_step=0):
        super().__init__()
        self.path = Path(path)
        self.step = int(start_step)
        self._t0 = None

    def on_train_begin(self, logs=None):
        if self.path.exists():
            # A torn last line (killed while appending) is dropped with the lines past the
            # checkpoint; the rest is rewritten atomically.
            records, _ = read_jsonl(self.path, repair=False)
            kept = [r for r in records if r.get("step", 0) <= self.step]
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._t0 = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        record = {"step": self.step, "time": round(time.time() - self._t0, 3)}
        for key, value in (logs or {}).items():
            record[key] = float(np.asarray(value))
        # Open per line: an interrupt or a crash never leaves a handle or a partial line.
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers the step."""

    def __init__(self, start_step=0):
        super().__init__()
        self.step = int(start_step)
        self.bad_step = None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        loss = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not math.isfinite(loss):
            self.bad_step = self.step
            self.model.stop_training = True


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every `every` steps and at the end, unless a `NaNGuard` fired.

    Args:
        save_fn: `save_fn(model, step)` writes the checkpoint. The model is taken from
            `self.model`, which on JAX first syncs the training state into the variables.
        every: steps between checkpoints.
        start_step: the step training resumes from.
        nan_guard: a `NaNGuard` placed before this callback; no checkpoint is written once it
            has seen a non-finite loss, so the last good one is kept.
    """

    def __init__(self, save_fn, every, start_step=0, nan_guard=None):
        super().__init__()
        self.save_fn = save_fn
        self.every = int(every)
        self.step = int(start_step)
        self.last_saved = int(start_step)
        self.nan_guard = nan_guard

    def _ok(self):
        return self.nan_guard is None or self.nan_guard.bad_step is None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0 and self._ok():
            self.save_fn(self.model, self.step)
            self.last_saved = self.step

    def on_train_end(self, logs=None):
        if self.step != self.last_saved and self._ok():
            self.save_fn(self.model, self.step)
            self.last_saved = self.step


class ProgressPrinter(keras.callbacks.Callback):
    """Training progress through `vjepa2.progress.Progress`: a bar in a terminal, a line at
    most every `seconds` in a log file (`pretrain: 120/500 step  ...  loss 0.41`)."""

    def __init__(self, total_steps, start_step=0, seconds=15.0, stream=None, desc="train"):
        super().__init__()
        self.total = int(total_steps)
        self.start_step = int(start_step)
        self.seconds = float(seconds)
        self.stream = stream
        self.desc = desc
        self._progress = None

    def on_train_begin(self, logs=None):
        from vjepa2.progress import Progress

        self._progress = Progress(self.total, self.desc, "step", initial=self.start_step,
                                  seconds=self.seconds, stream=self.stream)

    def on_train_batch_end(self, batch, logs=None):
        self._progress.update(1, **{k: float(np.asarray(v)) for k, v in (logs or {}).items()
                                    if k in ("loss", "teacher_std", "lr")})

    def on_train_end(self, logs=None):
        if self._progress is not None:
            self._progress.close()


def training_callbacks(out, config, start_step, save, nan_guard, verbose, desc) -> list:
    """The callbacks both training commands run: the NaN guard, the metrics log, periodic
    checkpoints, TensorBoard (TensorFlow backend) and, when `verbose`, progress."""
    callbacks = [nan_guard, MetricsLogger(out / "metrics.jsonl", start_step),
                 PeriodicCheckpoint(save, config.checkpoint_every, start_step, nan_guard)]
    if keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(out / "logs"), update_freq=10))
    if verbose:
        callbacks.append(ProgressPrinter(config.steps, start_step, desc=desc))
    return callbacks
