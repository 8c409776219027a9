"""The V-JEPA 2-AC objective as a `keras.Model` trained with `fit`.

The encoder is frozen: each frame of a clip is encoded alone inside the step (no gradient,
`training=False`, not among the trainable variables) and its tokens pass a non-affine LayerNorm.
The predictor is trained with two L1 terms of equal weight:

- teacher forcing: from the true latents, actions and states of steps 0..T-2, predict the
  latents of steps 1..T-1 (one pass, block-causal);
- a 2-step rollout: the teacher-forced prediction of step 1 is fed back as the input of step 1
  (true states and actions) and step 2 is predicted from it, with the gradient flowing through
  that recurrent step; the loss covers the predictions of steps 1 and 2.

`train_step` is written once per backend (TensorFlow: GradientTape; JAX: a pure function of the
state), around one backend-agnostic loss in keras.ops, as in `vjepa2.train.jepa`.
"""
from __future__ import annotations

import keras
from keras import ops

from vjepa2.models.world_model import encode_frames
from vjepa2.train.jepa import feature_std


class ACTrainer(keras.Model):
    """Frozen encoder + action-conditioned predictor, trained with the V-JEPA 2-AC losses.

    Args:
        encoder: the frozen `VideoEncoder` (its weights never change).
        predictor: the `ActionConditionedPredictor` being trained.
        frame_normalization: pixel normalization before the encoder (`"imagenet"`).
        clip_grad: optional global gradient-norm clip.

    Call arguments / data:
        A dict with `frames` `(B, T, H, W, 3)` uint8, `actions` `(B, T, A)` and `states`
        `(B, T, S)` float32, `T >= 3`.
    """

    def __init__(self, encoder, predictor, frame_normalization="imagenet", clip_grad=None,
                 **kwargs):
        super().__init__(**kwargs)
        if predictor.encoder_dim != encoder.embed_dim:
            raise ValueError(f"predictor encoder_dim must equal the encoder width; received "
                             f"{predictor.encoder_dim} and {encoder.embed_dim}")
        self.encoder = encoder
        self.predictor = predictor
        self.frame_normalization = frame_normalization
        self.clip_grad = clip_grad

    def build(self, input_shape=None):
        for model in (self.encoder, self.predictor):
            if not model.built:
                model.build()
        self.encoder.trainable = False
        self.built = True

    # ----------------------------------------------------------------------------- objective
    def encode(self, frames):
        z = encode_frames(self.encoder, frames, None, self.frame_normalization)
        return ops.stop_gradient(z)

    def compute_ac_loss(self, data, training=True):
        """Returns `(loss, aux)`; aux holds the two loss terms and a collapse indicator."""
        frames, actions, states = data["frames"], data["actions"], data["states"]
        steps = frames.shape[1]
        if steps is not None and steps < 3:
            raise ValueError(f"clips need >= 3 frames for the 2-step rollout loss; received "
                             f"{steps}")
        actions = ops.cast(actions, "float32")
        states = ops.cast(states, "float32")
        z = self.encode(frames)  # (B, T, N, D)
        side = frames.shape[2] // self.encoder.patch_size
        grid = (side, frames.shape[3] // self.encoder.patch_size)
        predicted = self.predictor(z[:, :-1], actions[:, :-1], states[:, :-1], frame_grid=grid,
                                   training=training)
        predicted = ops.cast(predicted, "float32")
        loss_tf = ops.mean(ops.abs(predicted - z[:, 1:]))
        # Recurrent step: the predicted z_1 replaces the true one as the input of step 1.
        z_in = ops.concatenate([z[:, :1], predicted[:, :1]], axis=1)
        second = self.predictor(z_in, actions[:, :2], states[:, :2], frame_grid=grid,
                                training=training)[:, 1:2]
        rollout = ops.concatenate([predicted[:, :1], ops.cast(second, "float32")], axis=1)
        loss_rollout = ops.mean(ops.abs(rollout - z[:, 1:3]))
        loss = loss_tf + loss_rollout
        return loss, {"loss_tf": loss_tf, "loss_rollout": loss_rollout,
                      "latent_std": feature_std(z)}

    def call(self, data, training=False):
        return self.compute_ac_loss(data, training=training)[0]

    def _logs(self, loss, aux, step):
        logs = {"loss": loss, **aux}
        # The schedule itself, evaluated at the step being taken: the `learning_rate` property
        # reads the optimizer's iteration variable, which a JAX stateless step must not touch.
        lr = getattr(self.optimizer, "_learning_rate", None)
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            lr = lr(step)
        else:
            lr = self.optimizer.learning_rate
        logs["lr"] = ops.cast(lr, "float32")
        return logs

    # ----------------------------------------------------------------------------- TensorFlow
    def _tf_train_step(self, data):
        import tensorflow as tf

        step = self.optimizer.iterations
        with tf.GradientTape() as tape:
            loss, aux = self.compute_ac_loss(data, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / float(replicas))
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if self.clip_grad:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_grad)
        self.optimizer.apply(grads, variables)
        return self._logs(loss, aux, step)

    # ----------------------------------------------------------------------------- JAX
    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_vars, metrics_vars = state
        iteration_index = next(i for i, v in enumerate(self.optimizer.variables)
                               if v is self.optimizer.iterations)
        step = optimizer_vars[iteration_index]

        def loss_fn(trainable_values):
            mapping = list(zip(self.trainable_variables, trainable_values)) + \
                list(zip(self.non_trainable_variables, non_trainable))
            with keras.StatelessScope(state_mapping=mapping):
                return self.compute_ac_loss(data, training=True)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        if self.clip_grad:
            norm = jax.numpy.sqrt(sum(jax.numpy.sum(jax.numpy.square(g)) for g in grads))
            scale = jax.numpy.minimum(1.0, self.clip_grad / (norm + 1e-6))
            grads = [g * scale for g in grads]
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        # The frozen encoder's weights are the non-trainable state: returned untouched.
        logs = self._logs(loss, aux, step)
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)

    def train_step(self, *args):
        backend = keras.backend.backend()
        if backend == "tensorflow":
            return self._tf_train_step(*args)
        if backend == "jax":
            return self._jax_train_step(*args)
        raise NotImplementedError(f"ACTrainer has train steps for the tensorflow and jax "
                                  f"backends; the active backend is {backend}")
