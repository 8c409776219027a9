"""A device-resident training loop on JAX: several optimizer steps per compiled call.

`keras.Model.fit` feeds one host batch per step; on a GPU a small model then waits on the host
(batch assembly, mask sampling, the Python step loop). `DeviceLoop` moves all of that onto the
device:

- the data set (whole episodes of uint8 frames, actions, states) is uploaded once;
- each step draws its batch (clip positions, pixel normalisation, optional crop augmentation)
  and its masks (`DeviceMaskSampler`) from `fold_in(key(seed), step)`: no host round trip, and
  the same step always sees the same batch, so a resumed run continues exactly;
- `steps_per_call` optimizer steps run inside one `jax.jit` call (`lax.scan` over the trainer's
  pure `train_step`), the training state donated so that it is updated in place;
- mixed precision comes from the Keras dtype policy the trainer was built under (bf16 on GPUs).

The trainer is any `BackendTrainer` (the V-JEPA 2 pretrainer, the AC trainer); `batch_fn(key,
data, step)` builds one batch from the device arrays `data`. Per-step logs come back once per
call. `sync()` writes the state into the Keras variables (to save presets or checkpoints with
the usual tools); `load()` reads them back, e.g. after `CheckpointManager.restore`.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from vjepa2.data.video import IMAGENET_MEAN, IMAGENET_STD


class DeviceLoop:
    """Runs `steps_per_call` steps of `trainer` per compiled call; see the module docstring.

    Args:
        trainer: a compiled `BackendTrainer` (built, with its optimizer built).
        batch_fn: `(key, data, step) -> batch dict`, traceable.
        data: dict of arrays; uploaded to the device once.
        steps_per_call: optimizer steps per compiled call (`lax.scan` length).
        seed: the seed of every step's key (`fold_in(key(seed), step)`).
        variant_fn: optional `(seed, step) -> hashable`, evaluated on the host for the call
            that starts at `step` and passed to `batch_fn(..., variant=)` as a static value
            (one compiled call per variant: e.g. the mask-count bucket of the reference's
            counts, `pretrain_batch_fn` sets it).
    """

    def __init__(self, trainer, batch_fn, data: dict, steps_per_call: int = 10, seed: int = 0,
                 variant_fn=None):
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1; received {steps_per_call}")
        if trainer.optimizer is None or not trainer.optimizer.built:
            trainer.optimizer.build(trainer.trainable_variables)
        self.trainer = trainer
        self.batch_fn = batch_fn
        self.data = {k: jax.device_put(np.asarray(v)) for k, v in data.items()}
        self.steps_per_call = int(steps_per_call)
        self.seed = int(seed)
        self.variant_fn = variant_fn if variant_fn is not None else getattr(
            batch_fn, "variant_fn", None)
        self._compile()
        self.load()

    def _compile(self):
        self._compiled = jax.jit(self._run_steps, donate_argnums=(0,),
                                 static_argnames=("variant",))

    def recompile(self):
        """Drops the compiled calls: after a change to what the trace holds as constants (the
        learning-rate schedule, the EMA ramp); the state and the device data stay."""
        jax.clear_caches()  # else jit may reuse the trace holding the old constants
        self._compile()

    # ------------------------------------------------------------------------- state
    def load(self):
        """Reads the training state from the trainer's Keras variables."""
        t = self.trainer
        self.state = ([v.value for v in t.trainable_variables],
                      [v.value for v in t.non_trainable_variables],
                      [v.value for v in t.optimizer.variables],
                      [v.value for v in t.metrics_variables])
        # Copies: the state is donated to the compiled call, the variables keep their buffers.
        self.state = jax.tree_util.tree_map(jnp.copy, self.state)

    def sync(self):
        """Writes the training state into the trainer's Keras variables."""
        t = self.trainer
        groups = (t.trainable_variables, t.non_trainable_variables, t.optimizer.variables,
                  t.metrics_variables)
        for variables, values in zip(groups, self.state):
            for variable, value in zip(variables, values):
                variable.assign(jnp.copy(value))

    @property
    def step(self) -> int:
        """Optimizer steps taken (the optimizer's iteration counter)."""
        t = self.trainer
        index = next(i for i, v in enumerate(t.optimizer.variables)
                     if v is t.optimizer.iterations)
        return int(self.state[2][index])

    # ------------------------------------------------------------------------- steps
    def _run_steps(self, state, data, first_step, variant=None):
        base = jax.random.key(self.seed)

        def body(state, offset):
            step = first_step + offset
            key = jax.random.fold_in(base, step)
            batch = (self.batch_fn(key, data, step) if variant is None
                     else self.batch_fn(key, data, step, variant=variant))
            logs, state = self.trainer.train_step(state, batch)
            return state, {k: jnp.asarray(v, jnp.float32) for k, v in logs.items()}

        return jax.lax.scan(body, state, jnp.arange(self.steps_per_call))

    def run_call(self) -> list[dict]:
        """One compiled call: `steps_per_call` steps; returns each step's logs (floats)."""
        first = self.step
        variant = None if self.variant_fn is None else self.variant_fn(self.seed, first)
        self.state, logs = self._compiled(self.state, self.data, jnp.int32(first),
                                          variant=variant)
        logs = {k: np.asarray(v) for k, v in logs.items()}
        return [{"step": first + i + 1, **{k: float(v[i]) for k, v in logs.items()}}
                for i in range(self.steps_per_call)]

    def run(self, steps: int, until: float = float("inf"), on_call=None) -> dict:
        """Calls until `steps` steps are done (rounded up to whole calls) or wall time `until`;
        `on_call(logs)` after each call. Returns {steps, seconds, steps_per_second} where the
        rate leaves out the first call (compilation)."""
        started = time.time()
        times = []
        while self.step < steps and time.time() < until:
            logs = self.run_call()
            times.append(time.time())
            if on_call is not None:
                on_call(logs)
        warm = (len(times) - 1) * self.steps_per_call
        rate = warm / (times[-1] - times[0]) if warm else float("nan")
        return {"steps": self.step, "seconds": time.time() - started, "steps_per_second": rate}


# ----------------------------------------------------------------------------- batch makers
def _normalize(frames_uint8):
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (frames_uint8.astype(jnp.float32) / 255.0 - mean) / std


def _clip_indices(key, episodes, frames, batch_size, length):
    k_e, k_s = jax.random.split(key)
    e = jax.random.randint(k_e, (batch_size,), 0, episodes)
    s = jax.random.randint(k_s, (batch_size,), 0, frames - length + 1)
    return e[:, None], s[:, None] + jnp.arange(length)[None]


def random_resized_crop(key, clips, scale=(0.3, 1.0), ratio=(0.75, 1.35)):
    """Per clip, one crop of area `scale` and aspect `ratio` (log-uniform) of its frames,
    resized back to the frame size (bilinear), the same crop for every frame of a clip."""
    b, _, h, w, _ = clips.shape
    k_a, k_r, k_y, k_x = jax.random.split(key, 4)
    area = jax.random.uniform(k_a, (b,), minval=scale[0], maxval=scale[1])
    aspect = jnp.exp(jax.random.uniform(k_r, (b,), minval=np.log(ratio[0]),
                                        maxval=np.log(ratio[1])))
    ch = jnp.clip(jnp.sqrt(area * aspect) * h, 1.0, h)
    cw = jnp.clip(jnp.sqrt(area / aspect) * w, 1.0, w)
    y0 = jax.random.uniform(k_y, (b,)) * (h - ch)
    x0 = jax.random.uniform(k_x, (b,)) * (w - cw)

    def crop(clip, ch, cw, y0, x0):
        scale_yx = jnp.stack([h / ch, w / cw])
        return jax.image.scale_and_translate(
            clip, clip.shape, (1, 2), scale_yx, -jnp.stack([y0, x0]) * scale_yx, "linear")

    return jax.vmap(crop)(clips, ch, cw, y0, x0)


def pretrain_batch_fn(batch_size: int, frames: int, sampler, crop: bool = False):
    """`batch_fn` of V-JEPA 2 pretraining on `data["frames"]` (E, F, H, W, 3) uint8: random
    clips of `frames` frames, normalised as the video pipeline does, optionally a random resized
    crop per clip, and the multi-block masks of `sampler` (a `DeviceMaskSampler`; with
    reference counts, the call's bucket is its `variant`)."""

    def make(key, data, step, variant=None):
        k_clip, k_crop, k_mask = jax.random.split(key, 3)
        video = data["frames"]
        index = _clip_indices(k_clip, video.shape[0], video.shape[1], batch_size, frames)
        clips = _normalize(video[index])
        if crop:
            clips = random_resized_crop(k_crop, clips)
        batch = {"video": clips}
        for i, masks in enumerate(sampler.sample(k_mask, batch_size, variant)):
            batch[f"context_ids_{i}"] = masks["context_ids"]
            batch[f"target_ids_{i}"] = masks["target_ids"]
        return batch

    if sampler.counts == "reference":
        make.variant_fn = sampler.draw_bucket
    return make


def finetune_batch_fn(batch_size: int, clip_length: int):
    """`batch_fn` of V-JEPA 2-AC fine-tuning on `data` frames (E, F, H, W, 3) uint8, actions
    (E, F, A) and states (E, F, S): random windows of `clip_length` steps."""

    def make(key, data, step):
        video = data["frames"]
        index = _clip_indices(key, video.shape[0], video.shape[1], batch_size, clip_length)
        return {"frames": video[index], "actions": data["actions"][index],
                "states": data["states"][index]}

    return make
