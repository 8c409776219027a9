"""Run by tests/test_device_loop.py in a subprocess with KERAS_BACKEND=jax (on the CPU).

Checks of the device-resident training loop (`vjepa2.train.device_loop`) and the on-device
masks (`vjepa2.train.device_masks`). Prints one JSON line with the measured values; the test
asserts on them.
"""
import json
import os
import sys
import tempfile
import warnings

import keras
import numpy as np

assert keras.backend.backend() == "jax", keras.backend.backend()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.helpers import MICRO_OVERRIDES  # noqa: E402
from vjepa2.masks import MultiBlockMaskSampler, _block_shape, sample_spatial_mask  # noqa: E402
from vjepa2.train import device_masks  # noqa: E402
from vjepa2.train.checkpoint import CheckpointManager  # noqa: E402
from vjepa2.train.device_loop import (DeviceLoop, finetune_batch_fn,  # noqa: E402
                                      pretrain_batch_fn, random_resized_crop)
from vjepa2.train.pretrain import PretrainConfig, build_trainer  # noqa: E402

report = {}

# ---------------------------------------------------------------- masks against the host sampler
grid = (4, 8, 8)
sampler = device_masks.DeviceMaskSampler(grid)
host = MultiBlockMaskSampler(grid)
report["counts_equal"] = (sampler.num_context == tuple(host.num_context)
                          and sampler.num_target == tuple(host.num_target))
masks = jax.jit(sampler.sample, static_argnums=1)(jax.random.key(0), 256)
overlap, unsorted, out_of_range, shared_position = 0, 0, 0, 0
for m in masks:
    ctx, tgt = np.asarray(m["context_ids"]), np.asarray(m["target_ids"])
    unsorted += int(np.sum(np.diff(ctx, axis=1) <= 0) + np.sum(np.diff(tgt, axis=1) <= 0))
    out_of_range += int(np.sum((ctx < 0) | (ctx >= 256)) + np.sum((tgt < 0) | (tgt >= 256)))
    for c, t in zip(ctx, tgt):
        overlap += len(set(c) & set(t))
        # Masked blocks are tubes: no spatial position is context in one frame, target in another.
        shared_position += len(set(c % 64) & set(t % 64))
report.update(overlap=overlap, unsorted=unsorted, out_of_range=out_of_range,
              shared_position=shared_position,
              fallbacks=int(sum(int(m["fallbacks"]) for m in masks)),
              shapes=[[list(m["context_ids"].shape), list(m["target_ids"].shape)] for m in masks])

# The masked share of one sample, device against host, per mask set (2000 draws each).
rng = np.random.default_rng(0)
shares = []
for index, config in enumerate(host.mask_sets):
    host_share = np.mean([sample_spatial_mask(rng, (8, 8), config,
                                              _block_shape(rng, (8, 8), config)).mean()
                          for _ in range(2000)])

    def one(key, config=config):
        k_shape, k_pos = jax.random.split(key)
        bh, bw = device_masks._block_shape(k_shape, (8, 8), config)
        return device_masks._spatial_masks(k_pos, (8, 8), config, bh, bw, 1)[0].mean()

    keys = jax.random.split(jax.random.key(1), 2000)
    shares.append([float(host_share), float(jnp.mean(jax.vmap(one)(keys)))])
report["masked_share_host_device"] = shares

# Reference counts: per call a bucket drawn on the host, the batch drawn by the reference rule.
ref_sampler = device_masks.DeviceMaskSampler.reference(grid, batch_size=16)
ref_host = MultiBlockMaskSampler(grid, counts="reference")
report["buckets_equal"] = ref_sampler.buckets == [list(map(tuple, b))
                                                  for b in ref_host.bucket_shapes(16)]
sample_ref = jax.jit(ref_sampler.sample, static_argnums=(1, 2))
device_counts = []
ref_overlap, ref_fallbacks = 0, 0
for step in range(24):
    bucket = ref_sampler.draw_bucket(0, step)
    drawn = sample_ref(jax.random.key(step), 16, bucket)
    device_counts.append([(m["context_ids"].shape[1], m["target_ids"].shape[1]) for m in drawn])
    ref_fallbacks += sum(int(m["fallbacks"]) + 100 * int(m["unfilled"]) for m in drawn)
    for m in drawn:
        for c, t in zip(np.asarray(m["context_ids"]), np.asarray(m["target_ids"])):
            ref_overlap += len(set(c) & set(t))
# The counts the device draws on average (its bucket frequencies) against 200 host batches.
host_counts = np.array([[(m["context_ids"].shape[1], m["target_ids"].shape[1])
                         for m in ref_host.sample_batch(16, step)] for step in range(200)])
report["reference_mean_counts_host_device"] = [
    [host_counts[:, i].mean(axis=0).tolist(),
     (np.asarray(ref_sampler.bucket_probabilities[i]) @ np.asarray(ref_sampler.buckets[i],
                                                                   float)).tolist()]
    for i in range(2)]
report["reference_counts_are_buckets"] = all(
    counts[i] in ref_sampler.buckets[i] for counts in device_counts for i in range(2))
report.update(reference_overlap=ref_overlap, reference_fallbacks=ref_fallbacks)

# ---------------------------------------------------------------- crop augmentation
clip = jnp.asarray(np.random.default_rng(1).normal(size=(2, 2, 16, 16, 3)), jnp.float32)
full = random_resized_crop(jax.random.key(0), clip, scale=(1.0, 1.0), ratio=(1.0, 1.0))
report["full_crop_error"] = float(jnp.max(jnp.abs(full - clip)))

# ---------------------------------------------------------------- the loop on a micro model
config = PretrainConfig(videos="unused", out="unused", steps=8, batch_size=2, frames=4,
                        resolution=64, warmup_steps=1, decay_steps=1, ema=(0.9, 0.95))
frames = np.random.default_rng(2).integers(0, 255, size=(3, 6, 64, 64, 3), dtype=np.uint8)
data = {"frames": frames}
pre_sampler = device_masks.DeviceMaskSampler((2, 4, 4))
batch_fn = pretrain_batch_fn(2, 4, pre_sampler, crop=True)


def fresh():
    keras.utils.set_random_seed(0)
    return build_trainer(config, MICRO_OVERRIDES)


def weights(model):
    return [np.asarray(v.value) for v in model.weights]


# Two steps in one call equal two of the trainer's own steps on the same batches.
trainer = fresh()
initial = weights(trainer)
loop = DeviceLoop(trainer, batch_fn, data, steps_per_call=2, seed=5)
logs = loop.run_call()
loop.sync()
scanned = weights(trainer)
reference = fresh()
state = ([v.value for v in reference.trainable_variables],
         [v.value for v in reference.non_trainable_variables],
         [v.value for v in reference.optimizer.variables],
         [v.value for v in reference.metrics_variables])
step_fn = jax.jit(reference.train_step)
device_data = {k: jnp.asarray(v) for k, v in data.items()}
for step in range(2):
    batch = batch_fn(jax.random.fold_in(jax.random.key(5), step), device_data, step)
    ref_logs, state = step_fn(state, batch)
    report.setdefault("loss_error", []).append(abs(float(ref_logs["loss"]) - logs[step]["loss"]))
for group, values in zip((reference.trainable_variables, reference.non_trainable_variables),
                         state[:2]):
    for variable, value in zip(group, values):
        variable.assign(value)
report["scan_error"] = max(float(np.abs(a - b).max()) for a, b in zip(scanned, weights(reference)))
report["moved"] = max(float(np.abs(a - b).max()) for a, b in zip(scanned, initial))
report["logged_steps"] = [entry["step"] for entry in logs]
report["loss_finite"] = all(np.isfinite(entry["loss"]) for entry in logs)

# The loop with reference counts: one compiled call per bucket, chosen on the host.
ref_loop = DeviceLoop(fresh(), pretrain_batch_fn(2, 4, device_masks.DeviceMaskSampler.reference(
    (2, 4, 4), batch_size=2)), data, steps_per_call=2, seed=5)
report["reference_loop_losses"] = [entry["loss"] for entry in ref_loop.run_call()]

# Exact resume: the loop above, checkpointed after its 2 steps and restored into a fresh trainer,
# then 2 more steps on each side.
# Keras' save_weights on JAX converts variables with np.array(variable), whose __array__ lacks
# NumPy 2's copy keyword: a DeprecationWarning from inside Keras, not from this project.
warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy",
                        category=DeprecationWarning)
with tempfile.TemporaryDirectory() as folder:
    manager = CheckpointManager(folder)
    manager.save(trainer, trainer.optimizer, loop.step, {})
    resumed_trainer = fresh()
    manager.restore(resumed_trainer, resumed_trainer.optimizer)
loop.run(4)
loop.sync()
resumed = DeviceLoop(resumed_trainer, batch_fn, data, steps_per_call=2, seed=5)
report["resumed_from"] = resumed.step
resumed.run(4)
resumed.sync()
report["resume_error"] = max(float(np.abs(a - b).max())
                             for a, b in zip(weights(trainer), weights(resumed_trainer)))

# ---------------------------------------------------------------- AC fine-tuning, bf16
keras.mixed_precision.set_global_policy("mixed_bfloat16")
from vjepa2.models import ActionConditionedPredictor, VideoEncoder  # noqa: E402
from vjepa2.train.ac import ACTrainer  # noqa: E402
from vjepa2.train.optim import make_adamw  # noqa: E402

keras.utils.set_random_seed(0)
encoder = VideoEncoder.from_preset("tiny", **MICRO_OVERRIDES["encoder"])
predictor = ActionConditionedPredictor.from_preset(
    "tiny", embed_dim=24, depth=1, num_heads=2, mlp_dim=48, encoder_dim=48, action_dim=4,
    state_dim=7)
ac = ACTrainer(encoder, predictor)
ac.build()
ac.compile(optimizer=make_adamw(ac, 1e-3, weight_decay=0.04))
ac_data = {"frames": frames, "actions": np.ones((3, 6, 4), np.float32),
           "states": np.zeros((3, 6, 7), np.float32)}
ac_loop = DeviceLoop(ac, finetune_batch_fn(2, 3), ac_data, steps_per_call=3)
ac_logs = ac_loop.run_call()
report["ac_losses"] = [entry["loss"] for entry in ac_logs]
report["ac_compute_dtype"] = str(predictor.compute_dtype)
print(json.dumps(report))
