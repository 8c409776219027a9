"""Optimizer construction shared by pretraining and action-conditioned fine-tuning."""
from __future__ import annotations

import keras


def no_decay_variables(variables):
    """Biases, norm scales/offsets and other 1-D weights (and mask tokens): no weight decay."""
    return [v for v in variables
            if len(v.shape) <= 1 or "mask_token" in v.path or v.path.endswith("bias")]


def make_adamw(model, learning_rate, weight_decay=0.04, beta_1=0.9, beta_2=0.999):
    """AdamW over `model.trainable_variables` with no decay on biases and norms, built."""
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay,
                                       beta_1=beta_1, beta_2=beta_2)
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model.trainable_variables))
    optimizer.build(model.trainable_variables)
    return optimizer
