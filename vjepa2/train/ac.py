"""The V-JEPA 2-AC objective as a `keras.Model` trained with `fit`.

The encoder is frozen: each frame of a clip is encoded alone inside the step (no gradient,
`training=False`, not among the trainable variables) and its tokens pass a non-affine LayerNorm.
The predictor is trained with two L1 terms of equal weight:

- teacher forcing: from the true latents, actions and states of steps 0..T-2, predict the
  latents of steps 1..T-1 (one pass, block-causal);
- a 2-step rollout: the teacher-forced prediction of step 1 is fed back as the input of step 1
  (true states and actions) and step 2 is predicted from it, with the gradient flowing through
  that recurrent step; the loss covers the predictions of steps 1 and 2.

The per-backend train steps come from `BackendTrainer` (the frozen encoder's weights are its
untouched non-trainable state).
"""
from __future__ import annotations

from keras import ops

from vjepa2.models.world_model import encode_frames, frame_grid
from vjepa2.train.jepa import feature_std
from vjepa2.train.trainer import BackendTrainer


class ACTrainer(BackendTrainer):
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
        super().__init__(clip_grad=clip_grad, **kwargs)
        if predictor.encoder_dim != encoder.embed_dim:
            raise ValueError(f"predictor encoder_dim must equal the encoder width; received "
                             f"{predictor.encoder_dim} and {encoder.embed_dim}")
        self.encoder = encoder
        self.predictor = predictor
        self.frame_normalization = frame_normalization

    def build(self, input_shape=None):
        for model in (self.encoder, self.predictor):
            if not model.built:
                model.build()
        # An encoder saved as trainable=False (the EMA teacher of a pretraining run) comes back
        # with that flag on itself only: the constructor argument does not reach the sublayers,
        # the setter does. Setting it through the setter freezes every sublayer.
        self.encoder.trainable = True
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
        grid = frame_grid(frames.shape, self.encoder.patch_size)
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

    def compute_objective(self, data, training=True):
        return self.compute_ac_loss(data, training=training)
