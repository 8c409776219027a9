"""Learning-rate and EMA-momentum schedules, written in keras.ops so they run inside a step."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vjepa2")
class WarmupStableDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup `start_lr -> peak_lr`, constant, then linear decay to `final_lr`.

    V-JEPA 2 pretraining warms up 1e-4 -> 5.25e-4 and holds it; its cooldown phase decays
    linearly; V-JEPA 2-AC uses the same shape (7.5e-5 -> 4.25e-4 -> 0).

    Args:
        start_lr: learning rate at step 0.
        peak_lr: learning rate after warmup.
        final_lr: learning rate at `total_steps`.
        warmup_steps: steps of linear warmup.
        decay_steps: steps of linear decay ending at `total_steps` (0: no decay).
        total_steps: total optimizer steps.
    """

    def __init__(self, start_lr, peak_lr, final_lr, warmup_steps, decay_steps, total_steps):
        if warmup_steps < 0 or decay_steps < 0 or warmup_steps + decay_steps > total_steps:
            raise ValueError(
                "need 0 <= warmup_steps + decay_steps <= total_steps; received warmup_steps="
                f"{warmup_steps}, decay_steps={decay_steps}, total_steps={total_steps}")
        self.start_lr = float(start_lr)
        self.peak_lr = float(peak_lr)
        self.final_lr = float(final_lr)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        warmup = self.start_lr + (self.peak_lr - self.start_lr) * ops.minimum(step / warm, 1.0)
        decay_start = float(self.total_steps - self.decay_steps)
        frac = ops.clip((step - decay_start) / float(max(self.decay_steps, 1)), 0.0, 1.0)
        decayed = self.peak_lr + (self.final_lr - self.peak_lr) * frac
        return ops.where(step < decay_start, warmup, decayed)

    def get_config(self):
        return dict(start_lr=self.start_lr, peak_lr=self.peak_lr, final_lr=self.final_lr,
                    warmup_steps=self.warmup_steps, decay_steps=self.decay_steps,
                    total_steps=self.total_steps)


def linear_momentum(step, start, end, total_steps):
    """EMA momentum moving linearly from `start` to `end` over `total_steps` (V-JEPA 1 ramps
    0.998 -> 1.0; V-JEPA 2 holds 0.99925)."""
    frac = ops.clip(ops.cast(step, "float32") / float(max(total_steps, 1)), 0.0, 1.0)
    return start + (end - start) * frac
