"""Run by tests/test_jax_backend.py in a subprocess with KERAS_BACKEND=jax and two host devices.

Checks on the JAX backend: a pretraining step runs through `fit`, the teacher follows the EMA,
and a step under `keras.distribution.DataParallel` over two devices equals a single-device step.
Prints one JSON line with the measured differences.
"""
import json
import os
import sys

import keras
import numpy as np

assert keras.backend.backend() == "jax", keras.backend.backend()
import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.helpers import MICRO_OVERRIDES  # noqa: E402
from vjepa2.train.pretrain import PretrainConfig, build_trainer, make_mask_sampler  # noqa: E402

config = PretrainConfig(videos="unused", out="unused", steps=4, batch_size=4, frames=4,
                        resolution=64, warmup_steps=1, decay_steps=1, ema=(0.9, 0.9))
sampler = make_mask_sampler(config)
rng = np.random.default_rng(0)
batch = {"video": rng.normal(size=(4, 4, 64, 64, 3)).astype("float32")}
for i, masks in enumerate(sampler.sample_batch(4, 0)):
    batch[f"context_ids_{i}"] = masks["context_ids"]
    batch[f"target_ids_{i}"] = masks["target_ids"]


def weights(model):
    return [np.asarray(v) for v in model.weights]


keras.utils.set_random_seed(0)
single = build_trainer(config, MICRO_OVERRIDES)
initial = weights(single)
teacher0 = weights(single.teacher)
history = single.fit(batch, batch_size=4, epochs=1, verbose=0, shuffle=False)
after = weights(single)
ema_error = max(float(np.abs(t1 - (0.9 * t0 + 0.1 * s1)).max())
                for t0, s1, t1 in zip(teacher0, weights(single.encoder), weights(single.teacher)))
moved = max(float(np.abs(a - b).max()) for a, b in zip(after, initial))

devices = jax.devices("cpu")
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
parallel = build_trainer(config, MICRO_OVERRIDES)
for v, value in zip(parallel.weights, initial):
    v.assign(value)
parallel.fit(batch, batch_size=4, epochs=1, verbose=0, shuffle=False)
parallel_error = max(float(np.abs(np.asarray(v) - w).max())
                     for v, w in zip(parallel.weights, after))
print(json.dumps({"devices": len(devices), "loss": float(history.history["loss"][0]),
                  "moved": moved, "ema_error": ema_error, "parallel_error": parallel_error}))
