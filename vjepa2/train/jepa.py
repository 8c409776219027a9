"""The V-JEPA 2 self-supervised objective as a `keras.Model` trained with `fit`.

The student encoder sees only the visible (context) tokens of each mask set; the predictor fills
in the masked (target) positions; an EMA teacher encoder sees the whole clip and its outputs,
after a non-affine LayerNorm, are the regression targets. L1 loss over the target tokens, the
mask sets averaged. No gradient reaches the teacher: it is updated only by the EMA after each
optimizer step.

The per-backend train steps come from `BackendTrainer`; this objective adds the EMA update of
the teacher after each optimizer step (TensorFlow: in cross-replica context under a strategy;
JAX: on the functional state).
"""
from __future__ import annotations

from keras import ops

from vjepa2.models.world_model import layer_norm_no_affine  # noqa: F401 (re-exported)
from vjepa2.train.family import CONTENT
from vjepa2.train.schedules import linear_momentum
from vjepa2.train.trainer import BackendTrainer


def feature_std(tokens):
    """Collapse indicator: per-feature std of tokens across batch and positions, averaged.

    A collapsing representation (every token alike) drives it towards 0.
    """
    tokens = ops.cast(tokens, "float32")
    flat = ops.reshape(tokens, (-1, ops.shape(tokens)[-1]))
    return ops.mean(ops.std(flat, axis=0))


class JEPAPretrainer(BackendTrainer):
    """Student encoder + predictor + EMA teacher, trained with the V-JEPA 2 objective.

    Args:
        encoder: the student `VideoEncoder` or `ImageEncoder` (its weights initialise the
            teacher, a fresh encoder of the same class and config).
        predictor: a `MaskedPredictor` with `num_mask_tokens >= num_mask_sets`.
        num_mask_sets: mask sets per clip (2 in V-JEPA 2).
        ema_start, ema_end: EMA momentum, linearly scheduled over `total_steps`.
        total_steps: length of the EMA schedule.
        clip_grad: optional global gradient-norm clip.

    Call arguments / data:
        A dict with `video`, the encoder's input ((B, T, H, W, 3) clips, or (B, H, W, C) images
        or spectrograms for an `ImageEncoder`), and, per mask set i, `context_ids_i` (B, Nc_i) and
        `target_ids_i` (B, Nt_i) int32.
    """

    def __init__(self, encoder, predictor, num_mask_sets=2, ema_start=0.99925, ema_end=0.99925,
                 total_steps=1, clip_grad=None, content="all", **kwargs):
        super().__init__(clip_grad=clip_grad, **kwargs)
        if content not in CONTENT:
            raise ValueError(f"content must be one of {', '.join(CONTENT)}; received {content!r}")
        self.content = content
        if predictor.num_mask_tokens < num_mask_sets:
            raise ValueError(f"predictor has {predictor.num_mask_tokens} mask tokens for "
                             f"{num_mask_sets} mask sets")
        for name, value in (("ema_start", ema_start), ("ema_end", ema_end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; received {value}")
        self.encoder = encoder
        self.predictor = predictor
        self.teacher = type(encoder).from_config(encoder.get_config())
        self.num_mask_sets = num_mask_sets
        self.ema_start = float(ema_start)
        self.ema_end = float(ema_end)
        self.total_steps = int(total_steps)

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
        """Returns (loss, aux) where aux holds per-mask-set losses and collapse indicators.

        A batch may also hold images mixed into video pretraining, as V-JEPA 2 does:
        `image_video` (B, tubelet, H, W, 3), each image repeated to one tubelet, with its own
        `image_context_ids_i` / `image_target_ids_i`; the two losses are averaged, or, with
        `content="images"`, the images' loss alone is the content loss (MC-JEPA's paper learns
        content from images; the clips then feed only the motion loss).
        """
        images = {k[len("image_"):]: v for k, v in data.items() if k.startswith("image_")}
        if self.content == "images":
            if not images:
                raise ValueError("content='images' needs images mixed into the batch "
                                 "(image_video)")
            return self._masked_loss(images, training)
        loss, aux = self._masked_loss(data, training)
        if images:
            image_loss, image_aux = self._masked_loss(images, training)
            aux.update({f"image_{k}": v for k, v in image_aux.items()})
            loss = (loss + image_loss) / 2.0
        return loss, aux

    def _masked_loss(self, data, training):
        video = data["video"]
        grid = self.encoder.grid_size(video.shape)
        teacher_tokens = ops.stop_gradient(self.teacher(video, training=False))
        targets = ops.stop_gradient(layer_norm_no_affine(teacher_tokens))
        total = 0.0
        aux = {}
        # The batch's own mask sets: mixed images may carry fewer (I-JEPA's one) than the clips.
        num_sets = sum(1 for key in data if key.startswith("context_ids_"))
        if not 1 <= num_sets <= self.num_mask_sets:
            raise ValueError(f"a batch needs 1 to {self.num_mask_sets} mask sets "
                             f"(context_ids_i); received {num_sets}")
        for i in range(num_sets):
            context_ids = data[f"context_ids_{i}"]
            target_ids = data[f"target_ids_{i}"]
            context = self.encoder(video, token_ids=context_ids, training=training)
            predicted = self.predictor(context, context_ids, target_ids, grid=grid,
                                       mask_index=i, training=training)
            target = ops.take_along_axis(targets, ops.expand_dims(target_ids, -1), axis=1)
            loss_i = ops.mean(ops.abs(ops.cast(predicted, "float32") - target))
            aux[f"loss_mask{i}"] = loss_i
            total = total + loss_i
        loss = total / float(num_sets)
        aux["teacher_std"] = feature_std(teacher_tokens)
        return loss, aux

    def compute_objective(self, data, training=True):
        return self.compute_jepa_loss(data, training=training)

    def momentum_at(self, step):
        return linear_momentum(step, self.ema_start, self.ema_end, self.total_steps)

    def extra_logs(self, step):
        return {"ema": ops.cast(self.momentum_at(step), "float32")}

    def _student_teacher_pairs(self):
        pairs = list(zip(self.teacher.weights, self.encoder.weights))
        for target, source in pairs:
            if tuple(target.shape) != tuple(source.shape):
                raise RuntimeError(f"teacher/student mismatch: {target.path} vs {source.path}")
        return pairs

    # ----------------------------------------------------------------------------- TensorFlow
    def after_update_tf(self, step):
        self._tf_ema_update(self.momentum_at(step))

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
    def after_update_jax(self, trainable, non_trainable, step):
        momentum = self.momentum_at(step)
        index_of = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        train_index = {id(v): i for i, v in enumerate(self.trainable_variables)}
        for target, source in self._student_teacher_pairs():
            ti = index_of[id(target)]
            if id(source) in train_index:
                value = trainable[train_index[id(source)]]
            else:
                value = non_trainable[index_of[id(source)]]
            non_trainable[ti] = momentum * non_trainable[ti] + (1.0 - momentum) * value
        return non_trainable
