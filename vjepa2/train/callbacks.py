"""Keras callbacks shared by the training commands: metrics log, checkpoints, divergence guard."""
from __future__ import annotations

import collections
import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from vjepa2.files import append_line, atomic_write, read_jsonl


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
        # Open per line: an interrupt or a crash never leaves a handle; a full disk no partial
        # line. Not fsynced: lines past the last checkpoint are dropped on resume anyway.
        append_line(self.path, json.dumps(record), sync=False)  # NaN stays NaN


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at a non-finite loss, or at a loss that stays far above its running median.

    A loss above `factor` times the median of the last `window` healthy losses for `patience`
    steps in a row is a divergence (a loss of 4e10 after a median of 0.5 is finite but the run
    is lost). Steps of such a streak are *suspect*: `PeriodicCheckpoint` writes no checkpoint
    during one, so the checkpoint kept is the last one before the divergence began. The median
    is trusted once `min_history` healthy losses are known (a resume passes the logged ones).

    Args:
        start_step: the step training resumes from.
        factor: how many times the running median counts as far above it; 0 turns the median
            rule off (only NaN/inf stops).
        patience: steps in a row above it that stop the run.
        window: healthy losses the median is taken over.
        min_history: healthy losses needed before the median rule applies.
        history: losses of the steps before `start_step` (oldest first), from `metrics.jsonl`.
    """

    def __init__(self, start_step=0, factor=10.0, patience=5, window=100, min_history=10,
                 history=()):
        super().__init__()
        self.step = int(start_step)
        self.factor = float(factor)
        self.patience = max(1, int(patience))
        self.min_history = int(min_history)
        self.history = collections.deque(
            (float(h) for h in history if h is not None and math.isfinite(h)), maxlen=window)
        self.streak = 0
        self.bad_step = None
        self.message = None

    @property
    def suspect(self) -> bool:
        """Whether the latest losses are above the divergence threshold (not yet `patience`)."""
        return self.streak > 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        loss = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not math.isfinite(loss):
            self._stop(f"loss became NaN/inf at step {self.step}")
            return
        if self.factor > 0 and len(self.history) >= self.min_history:
            median = float(np.median(self.history))
            if median > 0 and loss > self.factor * median:
                self.streak += 1
                if self.streak >= self.patience:
                    self._stop(f"loss diverged at step {self.step}: {loss:.4g}, above "
                               f"{self.factor:g} x its running median {median:.4g} for "
                               f"{self.streak} steps in a row")
                return
        self.streak = 0
        self.history.append(loss)

    def _stop(self, message):
        self.bad_step = self.step
        self.message = message
        self.model.stop_training = True


def stopped_message(guard: DivergenceGuard, manager, hint: str) -> str:
    """The one-line reason a guarded run stopped, naming the checkpoint kept."""
    kept = manager.latest_state()
    return (f"{guard.message}; training stopped. The last good checkpoint (step "
            f"{kept['step'] if kept else 'none'}) is kept in {manager.directory}. {hint}")


def logged_losses(path, up_to_step: int, count: int = 100) -> list[float]:
    """The last `count` losses of `metrics.jsonl` at steps <= `up_to_step` (for a resume)."""
    records, _ = read_jsonl(path, repair=False)
    return [r["loss"] for r in records if r.get("step", 0) <= up_to_step
            and isinstance(r.get("loss"), (int, float))][-count:]


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every `every` steps and at the end, unless a `DivergenceGuard` fired.

    Args:
        save_fn: `save_fn(model, step)` writes the checkpoint. The model is taken from
            `self.model`, which on JAX first syncs the training state into the variables.
        every: steps between checkpoints.
        start_step: the step training resumes from.
        nan_guard: a `DivergenceGuard` placed before this callback; no checkpoint is written
            once it has stopped the run, nor while its losses are suspect, so the last good one
            is kept.
    """

    def __init__(self, save_fn, every, start_step=0, nan_guard=None):
        super().__init__()
        self.save_fn = save_fn
        self.every = int(every)
        self.step = int(start_step)
        self.last_saved = int(start_step)
        self.nan_guard = nan_guard

    def _ok(self, suspect_too=False):
        guard = self.nan_guard
        return guard is None or (guard.bad_step is None and not (suspect_too and guard.suspect))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0 and self._ok(suspect_too=True):
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


def make_guard(out, config, start_step) -> DivergenceGuard:
    """The divergence guard of a run from its config, with the logged losses of a resume."""
    history = logged_losses(out / "metrics.jsonl", start_step) if start_step else ()
    return DivergenceGuard(start_step, factor=config.divergence_factor,
                           patience=config.divergence_steps, history=history)


def training_callbacks(out, config, start_step, save, nan_guard, verbose, desc) -> list:
    """The callbacks both training commands run: the divergence guard, the metrics log,
    periodic checkpoints, TensorBoard (TensorFlow backend) and, when `verbose`, progress."""
    callbacks = [nan_guard, MetricsLogger(out / "metrics.jsonl", start_step),
                 PeriodicCheckpoint(save, config.checkpoint_every, start_step, nan_guard)]
    if keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(out / "logs"), update_freq=10))
    if verbose:
        callbacks.append(ProgressPrinter(config.steps, start_step, desc=desc))
    return callbacks
