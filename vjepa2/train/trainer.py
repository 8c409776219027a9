"""Per-backend train steps shared by the training objectives.

A subclass of `BackendTrainer` implements `compute_objective(data, training) -> (loss, aux)` in
keras.ops; this class turns it into a `train_step` for `fit` on each backend:

- TensorFlow: a GradientTape step that also runs under `tf.distribute` strategies, on one host
  or many (the loss is scaled by the replica count because the optimizer sums gradients across
  replicas; the logged values are averaged over all replicas);
- JAX: a pure function of the training state (`keras.StatelessScope`), so it runs jitted and
  under `keras.distribution`.

Optional global-norm gradient clipping, and hooks for state updated after the optimizer step
(the EMA teacher of pretraining): `after_update_tf(step)` and
`after_update_jax(trainable, non_trainable, step) -> non_trainable`.
"""
from __future__ import annotations

import keras
from keras import ops


class BackendTrainer(keras.Model):
    """Base of the training models; see the module docstring.

    Args:
        clip_grad: optional global gradient-norm clip.
    """

    def __init__(self, clip_grad=None, **kwargs):
        super().__init__(**kwargs)
        if clip_grad is not None and clip_grad <= 0:
            raise ValueError(f"clip_grad must be > 0; received {clip_grad}")
        self.clip_grad = clip_grad

    def compute_objective(self, data, training=True):
        """Returns `(loss, aux)`; implemented by each objective."""
        raise TypeError(f"{type(self).__name__} must implement compute_objective")

    def call(self, data, training=False):
        return self.compute_objective(data, training=training)[0]

    def after_update_tf(self, step):
        """TensorFlow: update extra state after the optimizer step (default: nothing)."""

    def after_update_jax(self, trainable, non_trainable, step):
        """JAX: return the updated non-trainable values after the optimizer step."""
        return non_trainable

    def extra_logs(self, step) -> dict:
        """Scalars logged with every step besides the loss, its terms and the learning rate."""
        return {}

    def _logs(self, loss, aux, step):
        logs = {"loss": loss, **aux}
        # The raw schedule, evaluated at the traced step: on JAX the optimizer's variables are
        # not readable inside the train step (their values live in the functional state).
        schedule = self.optimizer._learning_rate
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            logs["lr"] = ops.cast(schedule(step), "float32")
        elif isinstance(schedule, (int, float)):
            logs["lr"] = ops.cast(schedule, "float32")
        logs.update(self.extra_logs(step))
        return logs

    def _tf_train_step(self, data):
        import tensorflow as tf

        step = self.optimizer.iterations  # the step being taken, before increment
        with tf.GradientTape() as tape:
            loss, aux = self.compute_objective(data, training=True)
            # Gradients are summed across replicas by the optimizer: scale to the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / float(replicas))
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if self.clip_grad:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_grad)
        self.optimizer.apply(grads, variables)
        self.after_update_tf(step)
        logs = self._logs(loss, aux, step)
        strategy = tf.distribute.get_strategy()
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
                strategy.extended._in_multi_worker_mode():
            # `fit` averages the logs over every worker's replicas (so all workers' callbacks,
            # the divergence guard among them, see the global batch's values) along axis 0,
            # which a scalar lacks (keras-team/keras#20585): one element each.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

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
                return self.compute_objective(data, training=True)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        if self.clip_grad:
            norm = jax.numpy.sqrt(sum(jax.numpy.sum(jax.numpy.square(g)) for g in grads))
            scale = jax.numpy.minimum(1.0, self.clip_grad / (norm + 1e-6))
            grads = [g * scale for g in grads]
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        non_trainable = self.after_update_jax(trainable, list(non_trainable), step)
        logs = self._logs(loss, aux, step)
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy Keras draws a batch and averages it over the replicas
        # to build the model symbolically; across workers (MultiWorkerMirroredStrategy) that
        # fails (keras-team/keras#20585). These trainers and their optimizers are built before
        # fit, so there is nothing to build.
        if self.built and (self.optimizer is None or self.optimizer.built) and \
                self._compile_metrics is None and self._compile_loss is None:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, *args):
        backend = keras.backend.backend()
        args = list(args)
        # Array adapters yield (x,) tuples; datasets of dicts yield the dict itself.
        if isinstance(args[-1], (tuple, list)):
            args[-1] = args[-1][0]
        if backend == "tensorflow":
            return self._tf_train_step(*args)
        if backend == "jax":
            return self._jax_train_step(*args)
        raise RuntimeError(f"{type(self).__name__} has train steps for the tensorflow "
                                  f"and jax backends; the active backend is {backend}")
