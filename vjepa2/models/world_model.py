"""`WorldModel`: the frozen encoder + the action-conditioned predictor + their conventions.

This is what the planner imagines with (`planning.WorldModel` protocol): `encode` turns frames
into normalized per-frame latents once per observation or goal; `rollout` imagines the latents
that candidate action sequences lead to, batched over candidates, in `keras.ops` only so that it
runs inside the planner's compiled CEM iteration.

A fine-tuning run folder (`vjepa2 finetune-ac --out RUN`) holds what `load_world_model(RUN)`
needs:
    encoder/           the frozen encoder, a `VideoEncoder` preset folder
    ac_predictor/      the `ActionConditionedPredictor` preset folder
    conventions.json   `WorldModelConventions`: action/state units, deltas, frame stride, frame
                       size and normalization, key mapping
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from keras import ops

from vjepa2.data.video import IMAGENET_MEAN, IMAGENET_STD
from vjepa2.errors import UsageError

ENCODER_DIR = "encoder"
PREDICTOR_DIR = "ac_predictor"
CONVENTIONS_FILE = "conventions.json"


@dataclasses.dataclass(frozen=True)
class WorldModelConventions:
    """The facts a caller must respect to feed the world model what it was trained on.

    Args:
        action_dim: `A`.
        state_dim: `S`.
        image_size: frames are resized (bilinear) to `image_size` x `image_size` before encoding
            (each camera image of a multi-view frame).
        view: what the frames show, the env's view name (`envs.views`), e.g. `"scene"` or
            `"scene+wrist"`; evaluation renders this view.
        frame_views: camera images side by side in a frame (`W = frame_views * H`).
        frame_stride: environment steps one frame step spans; an action is the sum over these
            steps on its delta dims, their mean on the others.
        action: what an action holds, with units.
        state: what a state holds, with units.
        action_delta_dims: action dims that are increments of state dims...
        state_delta_dims: ...these state dims, one for one...
        action_to_state_scale: ...times this factor: `state[s] += scale * action[a]`. The
            rollout propagates imagined states with it; other state dims are held.
        action_normalization: `"none"`: actions are used as logged (summed over the stride).
        frame_normalization: `"imagenet"`: `(x / 255 - mean) / std` per channel, as in
            pretraining.
        frame_range: frames are `uint8` in [0, 255] or floating in [0, 1].
        env_step_seconds: seconds per environment step, if known.
        action_low: optional `(A,)` bounds for planning (per frame step).
        action_high: optional `(A,)`.
        keymap: the RLDS key mapping the training logs were read with.
        stop_energy: the planner's stop threshold (latent distance to the goal), calibrated on
            the training logs by `planning.calibrate`; `None` if not calibrated.
        stop_calibration: how `stop_energy` was measured.
    """

    action_dim: int
    state_dim: int
    image_size: int
    frame_stride: int = 1
    view: str = "scene"
    frame_views: int = 1
    action: str = ""
    state: str = ""
    action_delta_dims: tuple[int, ...] = ()
    state_delta_dims: tuple[int, ...] = ()
    action_to_state_scale: tuple[float, ...] = ()
    action_normalization: str = "none"
    frame_normalization: str = "imagenet"
    frame_range: str = "uint8 in [0, 255] or float in [0, 1]"
    env_step_seconds: float | None = None
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    keymap: dict | None = None
    stop_energy: float | None = None
    stop_calibration: dict | None = None

    def __post_init__(self):
        def check(condition, message):
            if not condition:
                raise UsageError(f"conventions: {message}")

        for name in ("action_dim", "state_dim", "image_size", "frame_stride", "frame_views"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1,
                  f"{name} must be a positive integer; received {value!r}")
        for name in ("action_delta_dims", "state_delta_dims", "action_to_state_scale"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check(len(self.action_delta_dims) == len(self.state_delta_dims)
              == len(self.action_to_state_scale),
              "action_delta_dims, state_delta_dims and action_to_state_scale must have equal "
              f"lengths; received {self.action_delta_dims}, {self.state_delta_dims}, "
              f"{self.action_to_state_scale}")
        check(all(0 <= d < self.action_dim for d in self.action_delta_dims),
              f"action_delta_dims must be in [0, {self.action_dim}); received "
              f"{self.action_delta_dims}")
        check(all(0 <= d < self.state_dim for d in self.state_delta_dims),
              f"state_delta_dims must be in [0, {self.state_dim}); received "
              f"{self.state_delta_dims}")
        check(self.frame_normalization in ("imagenet", "unit"),
              f"frame_normalization must be 'imagenet' or 'unit'; received "
              f"{self.frame_normalization!r}")
        for name in ("action_low", "action_high"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                check(len(value) == self.action_dim,
                      f"{name} must have {self.action_dim} values; received {value}")
                object.__setattr__(self, name, value)

    def to_json(self) -> dict:
        """A JSON-ready dict; unset optional entries are left out (the planner reads
        `action_low`/`action_high` only when present)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> "WorldModelConventions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"conventions: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def state_update_matrix(self):
        """`(A, S)` matrix `M` with `next_state = state + action @ M`."""
        import numpy as np

        matrix = np.zeros((self.action_dim, self.state_dim), "float32")
        for a, s, scale in zip(self.action_delta_dims, self.state_delta_dims,
                               self.action_to_state_scale):
            matrix[a, s] = scale
        return matrix


# ----------------------------------------------------------------------------------- encoding


def layer_norm_no_affine(x, epsilon=1e-6):
    """LayerNorm over the last axis without scale or bias: the normalization of encoder tokens
    used as pretraining targets and as the AC predictor's inputs and targets."""
    x = ops.cast(x, "float32")
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.var(x, axis=-1, keepdims=True)
    return (x - mean) * ops.rsqrt(var + epsilon)


def preprocess_frames(frames, image_size: int | None = None, normalization: str = "imagenet"):
    """Frames `(B, T, H, W, 3)` uint8 [0, 255] or float [0, 1] -> normalized float32.

    When the frames' camera images are not `image_size` square they are resized bilinearly
    (a frame of `V` views side by side to `image_size x V * image_size`); uint8 frames are
    rounded back to integers after resizing, as the training reader does.
    """
    is_uint8 = "uint8" in str(frames.dtype)
    x = ops.cast(frames, "float32")
    if not is_uint8:
        x = x * 255.0
    width = None if image_size is None else image_size * frame_views(x.shape)
    if image_size is not None and (x.shape[2] != image_size or x.shape[3] != width):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (-1, x.shape[2], x.shape[3], 3))
        x = ops.image.resize(x, (image_size, width), interpolation="bilinear",
                             antialias=False)
        if is_uint8:
            x = ops.clip(ops.round(x), 0.0, 255.0)
        x = ops.reshape(x, (b, t, image_size, width, 3))
    x = x / 255.0
    if normalization == "imagenet":
        x = (x - ops.convert_to_tensor(IMAGENET_MEAN, "float32")) / ops.convert_to_tensor(
            IMAGENET_STD, "float32")
    return x


def frame_views(shape) -> int:
    """Camera images side by side in frames of `shape` `(..., H, W, 3)`: `W / H` (1 for a
    square frame). Raises `ValueError` when `W` is not a multiple of `H`."""
    h, w = int(shape[-3]), int(shape[-2])
    if w % h:
        raise ValueError(f"frames must be square camera images side by side (width a multiple "
                         f"of height); received shape {tuple(shape)}")
    return w // h


def frame_grid(shape, patch_size: int) -> tuple[int, int]:
    """The predictor's `(rows, columns)` patch grid of frames of `shape`: the views' square
    grids stacked, as `encode_frames` concatenates their tokens."""
    side = int(shape[-3]) // patch_size
    return (frame_views(shape) * side, side)


def encode_frames(encoder, frames, image_size=None, normalization="imagenet"):
    """Each frame alone, repeated to fill one tubelet, through the frozen encoder; non-affine
    LayerNorm on its tokens. `(B, T, H, W, 3)` -> `(B, T, N, D)` float32.

    A frame of `V = W / H` camera views side by side (e.g. a scene and a wrist camera) is
    encoded view by view, each a square image as in pretraining; the frame's tokens are the
    views' tokens in order (`N = V * (H / p)^2`)."""
    x = preprocess_frames(frames, image_size, normalization)
    batch, steps = ops.shape(x)[0], ops.shape(x)[1]
    h, views = x.shape[2], frame_views(x.shape)
    x = ops.reshape(x, (-1, h, views, h, 3))
    x = ops.reshape(ops.transpose(x, (0, 2, 1, 3, 4)), (-1, 1, h, h, 3))
    x = ops.repeat(x, encoder.tubelet_size, axis=1)
    tokens = layer_norm_no_affine(encoder(x, training=False))
    return ops.reshape(tokens, (batch, steps, views * tokens.shape[1], tokens.shape[2]))


# ----------------------------------------------------------------------------------- the model


class WorldModel:
    """Frozen encoder + action-conditioned predictor, planned with by `planning`.

    Args:
        encoder: the frozen `VideoEncoder`.
        predictor: an `ActionConditionedPredictor` of matching width, action and state sizes.
        conventions: `WorldModelConventions` (or its dict).

    Attributes:
        action_dim, state_dim: `A`, `S`.
        conventions: the conventions as a dict (read by the planner).

    Example:
    ```python
    model = load_world_model("runs/ac")
    z = model.encode(frames[None])                    # (1, Tc, N, D)
    z_pred = model.rollout(z, states[None], actions)  # actions (B, H, A) -> (B, H, N, D)
    ```
    """

    # `encode` is keras.ops only, so planners may compile it (planning.WorldModel).
    traceable_encode = True

    def __init__(self, encoder, predictor, conventions):
        if not isinstance(conventions, WorldModelConventions):
            conventions = WorldModelConventions.from_json(dict(conventions))
        if predictor.encoder_dim != encoder.embed_dim:
            raise ValueError(f"predictor encoder_dim {predictor.encoder_dim} != encoder width "
                             f"{encoder.embed_dim}")
        if (predictor.action_dim, predictor.state_dim) != (conventions.action_dim,
                                                            conventions.state_dim):
            raise ValueError(f"predictor action/state dims ({predictor.action_dim}, "
                             f"{predictor.state_dim}) differ from the conventions' "
                             f"({conventions.action_dim}, {conventions.state_dim})")
        self.encoder = encoder
        self.predictor = predictor
        self._conventions = conventions
        self.action_dim = conventions.action_dim
        self.state_dim = conventions.state_dim
        self.image_size = conventions.image_size
        side = conventions.image_size // encoder.patch_size
        self.frame_views = conventions.frame_views
        self.frame_grid = (self.frame_views * side, side)
        self._state_matrix = ops.convert_to_tensor(conventions.state_update_matrix())

    @property
    def conventions(self) -> dict:
        return self._conventions.to_json()

    # ------------------------------------------------------------------------------ encode
    def encode(self, frames, chunk: int = 64):
        """Frames `(B, T, H, W, 3)` (uint8 [0, 255] or float [0, 1]) -> latents `(B, T, N, D)`.

        Each frame is encoded alone, `chunk` frames per encoder call.
        """
        x = ops.convert_to_tensor(frames)
        if len(x.shape) != 5 or x.shape[-1] != 3:
            raise ValueError(f"frames must be (B, T, H, W, 3); received shape {tuple(x.shape)}")
        if frame_views(x.shape) != self.frame_views:
            raise ValueError(f"this world model reads {self.frame_views} camera view(s) side by "
                             f"side ({self._conventions.view}); received frames of shape "
                             f"{tuple(x.shape)}")
        batch, steps = x.shape[0], x.shape[1]
        flat = ops.reshape(x, (batch * steps, 1) + tuple(x.shape[2:]))
        parts = [encode_frames(self.encoder, flat[i:i + chunk], self.image_size,
                               self._conventions.frame_normalization)
                 for i in range(0, batch * steps, chunk)]
        z = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)
        return ops.reshape(z, (batch, steps) + tuple(z.shape[2:]))

    # ------------------------------------------------------------------------------ predict
    def predict(self, z, actions, states):
        """Teacher-forced one-step predictions: `z (B, T, N, D)`, `actions (B, T, A)`,
        `states (B, T, S)` -> `(B, T, N, D)`, step k predicting `z_{k+1}`."""
        z, actions, states = (ops.convert_to_tensor(v, "float32") for v in (z, actions, states))
        return self.predictor(z, actions, states, frame_grid=self.frame_grid)

    def next_state(self, states, actions):
        """Imagined proprio state after `actions`: `state + action @ M` on the delta dims."""
        return states + ops.matmul(actions, ops.cast(self._state_matrix, actions.dtype))

    # ------------------------------------------------------------------------------ rollout
    def _rollout_inputs(self, z_context, states, actions, context_actions):
        z_context = ops.convert_to_tensor(z_context, "float32")
        states = ops.convert_to_tensor(states, "float32")
        actions = ops.convert_to_tensor(actions, "float32")
        if len(z_context.shape) != 4:
            raise ValueError("z_context must be (1 or B, Tc, N, D); received shape "
                             f"{tuple(z_context.shape)}")
        steps = z_context.shape[1]
        if steps is None or actions.shape[1] is None:
            raise ValueError("the context length Tc and the horizon H must be static (known when "
                             "tracing); received shapes "
                             f"{tuple(z_context.shape)} and {tuple(actions.shape)}")
        if len(states.shape) != 3 or states.shape[1] != steps or \
                states.shape[2] != self.state_dim:
            raise ValueError(f"states must be (1 or B, {steps}, {self.state_dim}); received "
                             f"shape {tuple(states.shape)}")
        if len(actions.shape) != 3 or actions.shape[2] != self.action_dim:
            raise ValueError(f"actions must be (B, H, {self.action_dim}); received shape "
                             f"{tuple(actions.shape)}")
        if steps > 1:
            if context_actions is None:
                raise ValueError(f"context_actions (1 or B, {steps - 1}, {self.action_dim}) are "
                                 f"needed with {steps} context frames")
            context_actions = ops.convert_to_tensor(context_actions, "float32")
            if tuple(context_actions.shape[1:]) != (steps - 1, self.action_dim):
                raise ValueError(f"context_actions must be (1 or B, {steps - 1}, "
                                 f"{self.action_dim}); received shape "
                                 f"{tuple(context_actions.shape)}")
        else:
            context_actions = None
        return z_context, states, actions, context_actions

    def rollout(self, z_context, states, actions, context_actions=None):
        """Imagines the latents of the `H` frames after the context, for `B` candidates.

        The context's steps before the last are run once, at the context's own batch (1 when
        shared by all candidates), filling a key/value cache; then each imagined step runs only
        its own `N + 2` tokens over that cache, feeding its prediction and the propagated state
        back as the next step's input. Block-causal attention makes this equal to recomputing
        the whole sequence at every step (`rollout_recompute`), at a fraction of the cost.

        Args:
            z_context: `(1 or B, Tc, N, D)` latents of the context frames.
            states: `(1 or B, Tc, S)` their proprio states.
            actions: `(B, H, A)` candidate action sequences.
            context_actions: `(1 or B, Tc - 1, A)` actions between the context frames, or None
                when `Tc == 1`.

        Returns:
            `(B, H, N, D)` imagined latents.
        """
        z_context, states, actions, context_actions = self._rollout_inputs(
            z_context, states, actions, context_actions)
        steps, horizon = z_context.shape[1], actions.shape[1]
        batch = ops.shape(actions)[0]
        cache = None
        if steps > 1:
            _, cache = self.predictor.forward_steps(
                z_context[:, :-1], context_actions, states[:, :-1], start_step=0,
                frame_grid=self.frame_grid, predict=False)
        z = _broadcast(z_context[:, -1:], batch)
        state = _broadcast(states[:, -1:], batch)
        predictions = []
        for k in range(horizon):
            action = actions[:, k:k + 1]
            z, cache = self.predictor.forward_steps(
                z, action, state, start_step=steps - 1 + k, cache=cache,
                frame_grid=self.frame_grid, predict=True)
            predictions.append(z)
            state = self.next_state(state, action)
        return predictions[0] if horizon == 1 else ops.concatenate(predictions, axis=1)

    def rollout_recompute(self, z_context, states, actions, context_actions=None):
        """`rollout` by recomputing the whole sequence at every step: the reference against
        which the cached rollout is tested and benchmarked."""
        z_context, states, actions, context_actions = self._rollout_inputs(
            z_context, states, actions, context_actions)
        steps, horizon = z_context.shape[1], actions.shape[1]
        batch = ops.shape(actions)[0]
        z_seq = _broadcast(z_context, batch)
        s_seq = _broadcast(states, batch)
        a_seq = None if context_actions is None else _broadcast(context_actions, batch)
        predictions = []
        for k in range(horizon):
            action = actions[:, k:k + 1]
            a_all = action if a_seq is None else ops.concatenate([a_seq, action], axis=1)
            out = self.predictor(z_seq, a_all, s_seq, frame_grid=self.frame_grid)[:, -1:]
            predictions.append(out)
            next_state = self.next_state(s_seq[:, -1:], action)
            z_seq = ops.concatenate([z_seq, out], axis=1)
            s_seq = ops.concatenate([s_seq, next_state], axis=1)
            a_seq = a_all
        return ops.concatenate(predictions, axis=1)


def _broadcast(x, batch):
    return ops.broadcast_to(x, (batch,) + tuple(x.shape[1:]))


# ----------------------------------------------------------------------------------- run folder


def save_world_model(run_dir, encoder, predictor, conventions: WorldModelConventions):
    """Writes `encoder/`, `ac_predictor/` and `conventions.json` into `run_dir`."""
    from vjepa2.files import atomic_write

    run_dir = Path(run_dir)
    encoder.save_to_preset(run_dir / ENCODER_DIR)
    predictor.save_to_preset(run_dir / PREDICTOR_DIR)
    atomic_write(run_dir / CONVENTIONS_FILE, json.dumps(conventions.to_json(), indent=2))


SHIPPED = "shipped"


def shipped_model_dir() -> Path:
    """The folder of the small world model installed with the package (`"shipped"`)."""
    return Path(__file__).resolve().parent.parent / "assets" / "world_model"


def resolve_run_dir(run_dir) -> Path:
    """`"shipped"` names the installed model; anything else is a path."""
    return shipped_model_dir() if str(run_dir) == SHIPPED else Path(run_dir)


def load_world_model(run_dir) -> WorldModel:
    """Loads the world model of a `vjepa2 finetune-ac` run folder in one call.

    Args:
        run_dir: the run folder, or `"shipped"` for the model installed with the package.

    Raises:
        UsageError: the folder is not a fine-tuning run with a saved world model.
    """
    from vjepa2.models.ac_predictor import ActionConditionedPredictor
    from vjepa2.models.video_encoder import VideoEncoder

    run_dir = resolve_run_dir(run_dir)
    missing = [name for name in (ENCODER_DIR, PREDICTOR_DIR, CONVENTIONS_FILE)
               if not (run_dir / name).exists()]
    if missing:
        raise UsageError(f"{run_dir} is not a finetune-ac run folder with a saved world model "
                         f"(missing {', '.join(missing)})")
    conventions = WorldModelConventions.from_json(
        json.loads((run_dir / CONVENTIONS_FILE).read_text()))
    try:
        encoder = VideoEncoder.from_preset(run_dir / ENCODER_DIR)
        predictor = ActionConditionedPredictor.from_preset(run_dir / PREDICTOR_DIR)
    except ValueError as error:
        raise UsageError(f"cannot load the world model in {run_dir}: {error}") from None
    encoder.trainable = False
    return WorldModel(encoder, predictor, conventions)
