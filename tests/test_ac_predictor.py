"""V-JEPA 2-AC: the action-conditioned predictor, the world model and fine-tuning."""
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.helpers import InterruptAt, assert_saved_model_equal, micro_encoder
from vjepa2.data import rlds
from vjepa2.errors import UsageError
from vjepa2.models import ActionConditionedPredictor
from vjepa2.models.world_model import (WorldModel, WorldModelConventions, load_world_model)
from vjepa2.train.finetune_ac import FinetuneACConfig, build_trainer, finetune_ac

SIZE = 32  # 2 x 2 patches of 16 px: tiny token counts keep tracing and steps fast
MICRO_AC = dict(embed_dim=24, depth=1, num_heads=2, mlp_dim=48)


def _micro_predictor(encoder_dim=48, action_dim=4, state_dim=4, **overrides):
    return ActionConditionedPredictor.from_preset(
        "tiny", **{**MICRO_AC, "encoder_dim": encoder_dim, "action_dim": action_dim,
                   "state_dim": state_dim, **overrides})


def _render(state):
    """A frame whose content is a function of the state: a bright square at the state's xy."""
    image = np.full((SIZE, SIZE, 3), 30, np.uint8)
    x, y = (np.clip(state[:2], -1, 1) * (SIZE // 2 - 6) + SIZE // 2).astype(int)
    image[max(y - 5, 0):y + 5, max(x - 5, 0):x + 5] = (230, 200, 40)
    image[:, :, 2] = np.uint8(100 + 100 * np.clip(state[3], 0, 1))
    return image


def _write_logs(out, episodes=4, length=12, seed=0):
    """Synthetic RLDS logs written with the rlds writer (no rendering in this process):
    state_{t+1} = state_t + 0.05 * action_t on xyz, frames drawn from the state."""
    features = rlds.episode_features(
        observation={"image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                     "state": tfds.features.Tensor(shape=(4,), dtype=tf.float32)},
        action_dim=4, metadata={"seed": tfds.features.Scalar(dtype=tf.int64)})
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        state = np.array([*rng.uniform(-0.5, 0.5, 2), 0.0, 0.5], np.float32)
        steps = []
        for t in range(length):
            action = rng.uniform(-1, 1, 4).astype(np.float32) if t < length - 1 else \
                np.zeros(4, np.float32)
            steps.append({"observation": {"image": _render(state), "state": state.copy()},
                          "action": action, "reward": 0.0, "discount": 1.0,
                          "is_first": t == 0, "is_last": t == length - 1,
                          "is_terminal": False})
            state = state.copy()
            # Larger moves than Fetch's 0.05 m per unit, so a move shows in 32 px frames.
            state[:3] = np.clip(state[:3] + 0.05 * action[:3] * 4, -1, 1)
            state[3] = np.clip(state[3] + 0.1 * action[3], 0, 1)
        rlds.write_episode_file(rlds.episode_path(out, e), features,
                                {"steps": steps, "episode_metadata": {"seed": e}})
    rlds.finalize_dataset(out, features)
    return out


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return _write_logs(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("pretrain") / "encoder"
    encoder = micro_encoder(depth=1)
    encoder.trainable = False  # saved like a pretraining run's EMA teacher
    encoder.save_to_preset(folder)
    return folder.parent


def _config(logs, encoder_dir, out, **kwargs):
    base = dict(encoder=str(encoder_dir), logs=str(logs), out=str(out), steps=4, batch_size=2,
                clip_length=3, checkpoint_every=2, warmup_steps=1, decay_steps=1,
                precision="float32")
    base.update(kwargs)
    return FinetuneACConfig(**base)


def _inputs(batch=2, steps=4, tokens=4, dim=48, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, steps, tokens, dim)).astype("float32"),
            rng.normal(size=(batch, steps, 4)).astype("float32"),
            rng.normal(size=(batch, steps, 4)).astype("float32"))


def _world_model(depth=2):
    keras.utils.set_random_seed(1)
    encoder = micro_encoder(depth=1)
    predictor = _micro_predictor(depth=depth)
    conventions = WorldModelConventions(
        action_dim=4, state_dim=4, image_size=SIZE, action_delta_dims=(0, 1, 2),
        state_delta_dims=(0, 1, 2), action_to_state_scale=(0.05, 0.05, 0.05),
        action_low=(-1, -1, -1, -1), action_high=(1, 1, 1, 1))
    return WorldModel(encoder, predictor, conventions)


# ---------------------------------------------------------------------------------- the model


def test_changing_step_t_changes_no_prediction_for_earlier_steps():
    keras.utils.set_random_seed(0)
    predictor = _micro_predictor(depth=2, residual=False)  # the reference's direct head
    z, actions, states = _inputs()
    base = np.asarray(predictor(z, actions, states))
    assert base.shape == z.shape
    for t in range(4):
        for name, (zz, aa, ss) in {
            "action": (z, actions.copy(), states),
            "frame": (z.copy(), actions, states),
            "state": (z, actions, states.copy()),
        }.items():
            {"action": aa, "frame": zz, "state": ss}[name][:, t] += 1.0
            changed = np.asarray(predictor(zz, aa, ss))
            np.testing.assert_array_equal(changed[:, :t], base[:, :t], err_msg=f"{name} {t}")
            assert np.abs(changed[:, t] - base[:, t]).max() > 1e-4, f"{name} at {t} ignored"


def test_action_and_state_tokens_rotate_in_time_only():
    predictor = _micro_predictor()
    cos, _ = predictor.step_rope(3, 1, (2, 2))
    cos = np.asarray(cos)  # tokens [a, s, 4 patches] x (3 axes * segment/2)
    half = cos.shape[-1] // 3
    np.testing.assert_array_equal(cos[:2, half:], 1.0)  # no height/width rotation
    assert np.all(cos[:2, :half] == cos[2, :half])  # same time angle as the step's patches
    assert not np.all(cos[2:, half:] == 1.0)


def test_keras_round_trip_and_preset_round_trip_are_exact(tmp_path):
    predictor = _micro_predictor()
    z, actions, states = _inputs()
    assert_saved_model_equal(predictor, None, tmp_path,
                             call=lambda m: m(z, actions, states))
    assert predictor.get_config()["action_dim"] == 4
    predictor.save_to_preset(tmp_path / "preset")
    restored = ActionConditionedPredictor.from_preset(tmp_path / "preset")
    np.testing.assert_array_equal(np.asarray(restored(z, actions, states)),
                                  np.asarray(predictor(z, actions, states)))


def test_bad_predictor_config_and_inputs_give_one_line_errors():
    with pytest.raises(ValueError, match="num_heads must divide embed_dim; received "
                       "embed_dim=24, num_heads=5"):
        _micro_predictor(num_heads=5)
    with pytest.raises(ValueError, match="action_dim must be a positive integer; received "
                       "action_dim=0"):
        _micro_predictor(action_dim=0)
    predictor = _micro_predictor()
    z, actions, states = _inputs()
    with pytest.raises(ValueError, match=r"actions must be \(B, T, 4\); received shape "
                       r"\(2, 4, 3\)"):
        predictor(z, actions[..., :3], states)
    with pytest.raises(ValueError, match="same number of steps"):
        predictor(z, actions[:, :3], states)
    with pytest.raises(ValueError, match="not a square grid"):
        predictor(z[:, :, :3], actions, states)


# ---------------------------------------------------------------------------------- world model


def test_cached_rollout_equals_full_recompute_over_batch_and_horizon():
    model = _world_model()
    rng = np.random.default_rng(3)
    z_context = rng.normal(size=(1, 2, 4, 48)).astype("float32")
    states = rng.normal(size=(1, 2, 4)).astype("float32")
    context_actions = rng.normal(size=(1, 1, 4)).astype("float32")
    for horizon in (1, 3):
        actions = rng.normal(size=(5, horizon, 4)).astype("float32")
        cached = np.asarray(model.rollout(z_context, states, actions, context_actions))
        naive = np.asarray(model.rollout_recompute(z_context, states, actions, context_actions))
        assert cached.shape == (5, horizon, 4, 48)
        np.testing.assert_allclose(cached, naive, rtol=1e-5, atol=1e-5)
        # A batch-1 context is broadcast: the same as giving each candidate its own copy.
        tiled = np.asarray(model.rollout(np.repeat(z_context, 5, 0), np.repeat(states, 5, 0),
                                         actions, np.repeat(context_actions, 5, 0)))
        np.testing.assert_allclose(cached, tiled, rtol=1e-5, atol=1e-5)
    # One context frame; candidates that share a first action share the first prediction.
    actions = rng.normal(size=(3, 2, 4)).astype("float32")
    actions[1, 0] = actions[0, 0]
    out = np.asarray(model.rollout(z_context[:, -1:], states[:, -1:], actions))
    np.testing.assert_allclose(out[0, 0], out[1, 0], atol=1e-6)
    assert np.abs(out[0, 1] - out[1, 1]).max() > 1e-6
    assert np.abs(out[0, 0] - out[2, 0]).max() > 1e-6
    # The imagined state follows the stored convention: state + 0.05 * action on xyz.
    s = np.asarray(model.next_state(states[:, -1:], actions[:1, :1]))
    np.testing.assert_allclose(s[0, 0, :3], states[0, -1, :3] + 0.05 * actions[0, 0, :3],
                               rtol=1e-6)
    assert s[0, 0, 3] == states[0, -1, 3]


def test_world_model_satisfies_the_planner_protocol_and_plans():
    from planning import protocol
    from planning.api import PlanInputError, Planner
    from planning.cem import CEMConfig

    model = _world_model(depth=1)
    assert isinstance(model, protocol.WorldModel)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(2, 2 * SIZE, 2 * SIZE, 3), dtype=np.uint8)
    z = np.asarray(model.encode(frames[None]))
    assert z.shape == (1, 2, 4, 48)  # resized to the trained 32 px: 2 x 2 patches
    np.testing.assert_allclose(z.mean(-1), 0.0, atol=1e-5)  # non-affine LayerNorm
    planner = Planner(model, action_low=model.conventions["action_low"],
                      action_high=model.conventions["action_high"],
                      config=CEMConfig(samples=16, elites=4, iterations=2, horizon=2))
    result = planner.plan(frames, np.zeros((2, 4), np.float32), frames[-1],
                          context_actions=np.zeros((1, 4), np.float32))
    assert result.actions.shape == (2, 4) and np.isfinite(result.energy)
    # One planned action of a stride-2 model is two env actions: deltas halved, grip repeated.
    np.testing.assert_allclose(planner.env_actions([0.4, -0.2, 0.6, 1.0]),
                               [[0.4, -0.2, 0.6, 1.0]])
    strided = WorldModel(model.encoder, model.predictor,
                         dataclasses.replace(model._conventions, frame_stride=2))
    split = Planner(strided, action_low=[-1] * 4, action_high=[1] * 4).env_actions(
        [0.4, -0.2, 0.6, 1.0])
    np.testing.assert_allclose(split, [[0.2, -0.1, 0.3, 1.0], [0.2, -0.1, 0.3, 1.0]])
    with pytest.raises(PlanInputError, match="action must have 4 values"):
        planner.env_actions([0.1, 0.2])
    with pytest.raises(ValueError, match=r"actions must be \(B, H, 4\)"):
        model.rollout(z, np.zeros((1, 2, 4)), np.zeros((3, 2, 5)), np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="context_actions"):
        model.rollout(z, np.zeros((1, 2, 4)), np.zeros((3, 2, 4)))


# ---------------------------------------------------------------------------------- fine-tuning


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _encoder_weights(folder):
    from vjepa2.models import VideoEncoder

    return [np.asarray(w) for w in VideoEncoder.from_preset(folder).weights]


def test_finetune_keeps_the_encoder_and_resumes_exactly(logs, encoder_dir, tmp_path):
    # Augmented batches are drawn from (seed, batch index) only, so resume stays exact.
    whole = _config(logs, encoder_dir, tmp_path / "whole", augment=True)
    finetune_ac(whole, verbose=0, predictor_overrides=MICRO_AC)
    before = _encoder_weights(encoder_dir / "encoder")
    after = _encoder_weights(tmp_path / "whole" / "encoder")
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)  # bit-identical

    split = _config(logs, encoder_dir, tmp_path / "split", augment=True)
    with pytest.raises(KeyboardInterrupt):
        finetune_ac(split, verbose=0, predictor_overrides=MICRO_AC,
                    extra_callbacks=[InterruptAt(3)])
    state = json.loads((tmp_path / "split/checkpoints/ckpt-00000002/state.json").read_text())
    assert state["step"] == 2 and state["data_index"] == 4
    with pytest.raises(UsageError, match="already holds a run at step 2; pass --resume"):
        finetune_ac(split, verbose=0)
    with pytest.raises(UsageError, match="holds a run with batch_size=.*--resume needs the same value"):
        finetune_ac(_config(logs, encoder_dir, tmp_path / "split", batch_size=3, augment=True),
                    resume=True, verbose=0)
    finetune_ac(split, resume=True, verbose=0)

    def load(run):
        trainer = build_trainer(whole, 4, 4, MICRO_AC)
        from vjepa2.train.checkpoint import CheckpointManager

        CheckpointManager(run / "checkpoints").restore(trainer, trainer.optimizer)
        return trainer

    a, b = load(tmp_path / "whole"), load(tmp_path / "split")
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 4
    for x, y in zip(a.weights + a.optimizer.variables, b.weights + b.optimizer.variables):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    whole_log, split_log = _metrics(tmp_path / "whole"), _metrics(tmp_path / "split")
    assert [r["step"] for r in split_log] == [1, 2, 3, 4]
    assert {"loss", "loss_tf", "loss_rollout", "lr", "latent_std"} <= set(whole_log[0])
    np.testing.assert_allclose([r["loss"] for r in split_log], [r["loss"] for r in whole_log],
                               rtol=1e-5)

    model = load_world_model(tmp_path / "whole")
    conventions = json.loads((tmp_path / "whole" / "conventions.json").read_text())
    assert conventions["action_to_state_scale"] == [0.05, 0.05, 0.05]
    assert conventions["frame_stride"] == 1 and conventions["image_size"] == SIZE
    assert model.action_dim == 4 and model.state_dim == 4
    z = model.encode(np.zeros((1, 2, SIZE, SIZE, 3), np.uint8))
    assert tuple(z.shape) == (1, 2, 4, 48)


def test_actions_change_predictions_after_a_short_fit(logs, encoder_dir, tmp_path):
    config = _config(logs, encoder_dir, tmp_path / "fit", steps=40, batch_size=8, lr=3e-3,
                     start_lr=3e-3, warmup_steps=0, decay_steps=0, checkpoint_every=40)
    finetune_ac(config, verbose=0, predictor_overrides=MICRO_AC)
    losses = [r["loss"] for r in _metrics(tmp_path / "fit")]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    model = load_world_model(tmp_path / "fit")
    batch = next(iter(rlds.make_clip_dataset(logs, clip_length=2, batch_size=16,
                                             shuffle=False)))
    z = np.asarray(model.encode(batch["frames"].numpy()))
    true_actions = batch["actions"].numpy()[:, :1]
    states = batch["states"].numpy()[:, :1]
    with_true = np.asarray(model.rollout(z[:, :1], states, true_actions))[:, 0]
    flipped = np.asarray(model.rollout(z[:, :1], states, -true_actions))[:, 0]
    target = z[:, 1]
    # Different actions give different predictions, and the true ones predict better.
    assert np.abs(with_true - flipped).mean() > 0.05 * np.abs(target - z[:, 0]).mean()
    assert np.abs(with_true - target).mean() < np.abs(flipped - target).mean()


def test_finetune_bad_input_gives_one_line_errors(logs, encoder_dir, tmp_path, capsys):
    from vjepa2.cli import main

    with pytest.raises(UsageError, match="clip length must be >= 3"):
        _config(logs, encoder_dir, tmp_path / "x", clip_length=2)
    with pytest.raises(UsageError, match="neither a pretraining run folder"):
        finetune_ac(_config(logs, tmp_path / "nothing", tmp_path / "x"), verbose=0)
    with pytest.raises(UsageError, match="no RLDS dataset"):
        finetune_ac(_config(tmp_path, encoder_dir, tmp_path / "x"), verbose=0)
    with pytest.raises(UsageError, match="not a finetune-ac run folder"):
        load_world_model(tmp_path)
    bad_keymap = tmp_path / "keymap.json"
    bad_keymap.write_text(json.dumps({"image": "observation/image", "wrist": "x"}))
    with pytest.raises(UsageError, match=r"unknown keys \['wrist'\]"):
        finetune_ac(_config(logs, encoder_dir, tmp_path / "x", keymap=str(bad_keymap)),
                    verbose=0)
    code = main(["finetune-ac", "--encoder", str(encoder_dir), "--logs", str(logs), "--steps",
                 "2", "--out", str(tmp_path / "y"), "--clip-length", "9", "--frame-stride", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no clip of 9 frames" in err
    assert not (tmp_path / "y").exists()
