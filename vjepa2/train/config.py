"""What the training configs share: checks of the common fields and the derived schedule."""
from __future__ import annotations

import dataclasses

from vjepa2.errors import UsageError


def opt(default=dataclasses.MISSING, help: str = "", **metadata):
    """A config field with its command-line help (`vjepa2.app.flags` makes the flag from it)."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


# The divergence guard's fields (vjepa2.train.callbacks.DivergenceGuard), the same in every
# training config.
DIVERGENCE_FACTOR_HELP = ("stop when the loss stays above this multiple of its running median "
                          "(0: stop only on NaN/inf)")
DIVERGENCE_STEPS_HELP = "steps in a row above that bound which stop the run"


def check(condition: bool, message: str) -> None:
    """Raises `UsageError(message)` unless `condition`."""
    if not condition:
        raise UsageError(message)


class TrainingConfigMixin:
    """For frozen config dataclasses with the fields steps, batch_size, lr, start_lr, final_lr,
    warmup_steps, decay_steps, weight_decay, clip_grad, checkpoint_every, divergence_factor,
    divergence_steps and precision.

    `warmup_steps` and `decay_steps` of None default to 10% and 20% of `steps`
    (`resolved_schedule()`).
    """

    def check_training_fields(self) -> None:
        check(self.steps > 0, f"steps must be > 0; received {self.steps}")
        check(self.batch_size > 0, f"batch size must be > 0; received {self.batch_size}")
        check(self.lr > 0 and self.start_lr >= 0 and self.final_lr >= 0,
              f"learning rates must be positive; received lr={self.lr}, "
              f"start_lr={self.start_lr}, final_lr={self.final_lr}")
        check(self.weight_decay >= 0, f"weight decay must be >= 0; received {self.weight_decay}")
        check(self.clip_grad is None or self.clip_grad > 0,
              f"clip_grad must be > 0; received {self.clip_grad}")
        check(self.checkpoint_every > 0,
              f"checkpoint_every must be > 0; received {self.checkpoint_every}")
        check(self.divergence_factor == 0 or self.divergence_factor > 1,
              f"divergence_factor must be > 1 (or 0: off); received {self.divergence_factor}")
        check(self.divergence_steps >= 1,
              f"divergence_steps must be >= 1; received {self.divergence_steps}")
        check(self.precision in ("auto", "float32", "mixed_bfloat16"),
              f"precision must be auto, float32 or mixed_bfloat16; received {self.precision!r}")
        warmup, decay = self.resolved_schedule()
        check(warmup + decay <= self.steps,
              f"warmup_steps + decay_steps must be <= steps; received {warmup} + {decay} > "
              f"{self.steps}")

    def resolved_schedule(self) -> tuple[int, int]:
        warmup = self.warmup_steps if self.warmup_steps is not None else self.steps // 10
        decay = self.decay_steps if self.decay_steps is not None else self.steps // 5
        check(warmup >= 0 and decay >= 0,
              f"warmup_steps and decay_steps must be >= 0; received {warmup}, {decay}")
        return warmup, decay

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
