"""The V-JEPA 2 self-supervised objective as a `keras.Model` trained with `fit`.

The student encoder sees only the visible (context) tokens of each mask set; the predictor fills
in the masked (target) positions; an EMA teacher encoder sees the whole clip and its outputs,
after a non-affine LayerNorm, are the regression targets. L1 loss over the target tokens, the
mask sets averaged. No gradient reaches the teacher: it is updated only by the EMA after each
optimizer step.

`train_step` is written once per backend (TensorFlow: GradientTape, works under
`tf.distribute` strategies; JAX: a pure function of the state, works under
`keras.distribution`), around one backend-agnostic loss in keras.ops.
"""
from __future__ import annotations

import keras
from keras import ops

from vjepa2.models.video_encoder import VideoEncoder
from vjepa2.models.world_model import layer_norm_no_affine  # noqa: F401 (re-exported)
from vjepa2.train.schedules import linear_momentum


def feature_std(tokens):
    """Collapse indicator: per-feature std of tokens across batch and positions, averaged.

    A collapsing representation (every token alike) drives it towards 0.
    """
    tokens = ops.cast(tokens, "float32")
    flat = ops.reshape(tokens, (-1, ops.shape(tokens)[-1]))
    return ops.mean(ops.std(flat, axis=0))


class JEPAPretrainer(keras.Model):
    """Student encoder + predictor + EMA teacher, trained with the V-JEPA 2 objective.

    Args:
        encoder: the student `VideoEncoder` (its weights initialise the teacher).
        predictor: a `MaskedPredictor` with `num_mask_tokens >= num_mask_sets`.
        num_mask_sets: mask sets per clip (2 in V-JEPA 2).
        ema_start, ema_end: EMA momentum, linearly scheduled over `total_steps`.
        total_steps: length of the EMA schedule.
        clip_grad: optional global gradient-norm clip.

    Call arguments / data:
        A dict with `video` (B, T, H, W, 3) and, per mask set i, `context_ids_i` (B, Nc_i) and
        `target_ids_i` (B, Nt_i) int32.
    """

    def __init__(self, encoder, predictor, num_mask_sets=2, ema_start=0.99925, ema_end=0.99925,
                 total_steps=1, clip_grad=None, **kwargs):
        super().__init__(**kwargs)
        if predictor.num_mask_tokens < num_mask_sets:
            raise ValueError(f"predictor has {predictor.num_mask_tokens} mask tokens for "
                             f"{num_mask_sets} mask sets")
        for name, value in (("ema_start", ema_start), ("ema_end", ema_end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; received {value}")
        self.encoder = encoder
        self.predictor = predictor
        self.teacher = VideoEncoder.from_config(encoder.get_config())
        self.num_mask_sets = num_mask_sets
        self.ema_start = float(ema_start)
        self.ema_end = float(ema_end)
        self.total_steps = int(total_steps)
        self.clip_grad = clip_grad

    def build(self, input_shape=None):
        for model in (self.encoder, self.predictor, self.teacher):
            if not model.built:
                model.build()
        self.teacher.trainable = False
        for target, source in zip(self.teacher.weights, self.encoder.weights):
            # A copy: on JAX an assigned array would share (and be donated with) the student's
            # buffer.
            target.assign(ops.copy(source.value))
        self.built = True

    # ----------------------------------------------------------------------------- objective
    def compute_jepa_loss(self, data, training=True):
        """Returns (loss, aux) where aux holds per-mask-set losses and collapse indicators."""
        video = data["video"]
        grid = self.encoder.grid_size(video.shape)
        teacher_tokens = ops.stop_gradient(self.teacher(video, training=False))
        targets = ops.stop_gradient(layer_norm_no_affine(teacher_tokens))
        total = 0.0
        aux = {}
        for i in range(self.num_mask_sets):
            context_ids = data[f"context_ids_{i}"]
            target_ids = data[f"target_ids_{i}"]
            context = self.encoder(video, token_ids=context_ids, training=training)
            predicted = self.predictor(context, context_ids, target_ids, grid=grid,
                                       mask_index=i, training=training)
            target = ops.take_along_axis(targets, ops.expand_dims(target_ids, -1), axis=1)
            loss_i = ops.mean(ops.abs(ops.cast(predicted, "float32") - target))
            aux[f"loss_mask{i}"] = loss_i
            total = total + loss_i
        loss = total / float(self.num_mask_sets)
        aux["teacher_std"] = feature_std(teacher_tokens)
        return loss, aux

    def call(self, data, training=False):
        return self.compute_jepa_loss(data, training=training)[0]

    def momentum_at(self, step):
        return linear_momentum(step, self.ema_start, self.ema_end, self.total_steps)

    def _logs(self, loss, aux, step):
        logs = {"loss": loss, **aux}
        # The raw schedule, evaluated at the traced step: on JAX the optimizer's variables are
        # not readable inside the train step (their values live in the functional state).
        schedule = self.optimizer._learning_rate
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            logs["lr"] = ops.cast(schedule(step), "float32")
        elif isinstance(schedule, (int, float)):
            logs["lr"] = ops.cast(schedule, "float32")
        logs["ema"] = ops.cast(self.momentum_at(step), "float32")
        return logs

    def _student_teacher_pairs(self):
        pairs = list(zip(self.teacher.weights, self.encoder.weights))
        for target, source in pairs:
            if tuple(target.shape) != tuple(source.shape):
                raise RuntimeError(f"teacher/student mismatch: {target.path} vs {source.path}")
        return pairs

    # ----------------------------------------------------------------------------- TensorFlow
    def _tf_train_step(self, data):
        import tensorflow as tf

        step = self.optimizer.iterations  # the step being taken, before increment
        with tf.GradientTape() as tape:
            loss, aux = self.compute_jepa_loss(data, training=True)
            # Gradients are summed across replicas by the optimizer: scale to the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = loss / float(replicas)
            scaled = self.optimizer.scale_loss(scaled)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if self.clip_grad:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_grad)
        self.optimizer.apply(grads, variables)
        self._tf_ema_update(self.momentum_at(step))
        return self._logs(loss, aux, step)

    def _tf_ema_update(self, momentum):
        import tensorflow as tf

        pairs = self._student_teacher_pairs()
        targets = [t.value for t, _ in pairs]
        sources = [s.value for _, s in pairs]

        def assign(var, source, m):
            return var.assign(m * var + (1.0 - m) * tf.cast(source, var.dtype))

        context = tf.distribute.get_replica_context()
        if tf.distribute.has_strategy() and context is not None:
            # Replica context of a strategy: update the mirrored teacher in cross-replica
            # context, each device with its own (identical, post-all-reduce) student value.
            def merged(strategy, momentum, *source_values):
                for var, value in zip(targets, source_values):
                    strategy.extended.update(var, assign, args=(value, momentum), group=False)

            context.merge_call(merged, args=(momentum, *sources))
        else:
            for var, value in zip(targets, sources):
                assign(var, value, momentum)

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
                loss, aux = self.compute_jepa_loss(data, training=True)
            return loss, aux

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        if self.clip_grad:
            norm = jax.numpy.sqrt(sum(jax.numpy.sum(jax.numpy.square(g)) for g in grads))
            scale = jax.numpy.minimum(1.0, self.clip_grad / (norm + 1e-6))
            grads = [g * scale for g in grads]
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        momentum = self.momentum_at(step)
        index_of = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        train_index = {id(v): i for i, v in enumerate(self.trainable_variables)}
        non_trainable = list(non_trainable)
        for target, source in self._student_teacher_pairs():
            ti = index_of[id(target)]
            if id(source) in train_index:
                value = trainable[train_index[id(source)]]
            else:
                value = non_trainable[index_of[id(source)]]
            non_trainable[ti] = momentum * non_trainable[ti] + (1.0 - momentum) * value
        logs = self._logs(loss, aux, step)
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)

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
        raise NotImplementedError(f"JEPAPretrainer has train steps for the tensorflow and jax "
                                  f"backends; the active backend is {backend}")
