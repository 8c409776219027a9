"""V-JEPA 2 pretraining: objective, EMA teacher, resume, distribution, command line."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import MICRO_OVERRIDES, InterruptAt
from vjepa2.errors import UsageError
from vjepa2.train.distribute import mirrored_strategy
from vjepa2.train.pretrain import (PretrainConfig, build_trainer, make_mask_sampler,
                                   make_pretrain_dataset, pretrain)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from vjepa2.data.synthetic import generate_videos

    folder = tmp_path_factory.mktemp("videos")
    generate_videos(folder, 6, frames=24, size=64, fps=8, seed=0)
    return folder


def _config(videos, out, **kwargs):
    base = dict(videos=str(videos), out=str(out), steps=4, batch_size=2, frames=4,
                resolution=64, checkpoint_every=2, warmup_steps=1, decay_steps=1, workers=2)
    base.update(kwargs)
    return PretrainConfig(**base)


def _first_batch(config):
    sampler = make_mask_sampler(config)
    dataset, _ = make_pretrain_dataset(config, sampler, start_step=0)
    return next(iter(dataset.take(1)))


def _weights(model):
    return [np.asarray(v) for v in model.weights]


def test_no_gradient_reaches_the_teacher_and_every_trainable_weight_gets_one(videos, tmp_path):
    config = _config(videos, tmp_path / "run")
    trainer = build_trainer(config, MICRO_OVERRIDES)
    batch = _first_batch(config)
    with tf.GradientTape(persistent=True) as tape:
        loss, _ = trainer.compute_jepa_loss(batch)
    teacher_grads = tape.gradient(loss, [v.value for v in trainer.teacher.weights])
    assert all(g is None for g in teacher_grads)
    grads = tape.gradient(loss, [v.value for v in trainer.trainable_variables])
    missing = [v.path for v, g in zip(trainer.trainable_variables, grads)
               if g is None or not np.any(np.asarray(g))]
    assert not missing, f"no gradient for {missing}"
    assert {v.path.split("/")[0] for v in trainer.trainable_variables} == {
        trainer.encoder.name, trainer.predictor.name}


def test_teacher_moves_only_by_the_ema_of_the_updated_student(videos, tmp_path):
    config = _config(videos, tmp_path / "run", ema=(0.9, 0.9))
    trainer = build_trainer(config, MICRO_OVERRIDES)
    # Start the teacher away from the student so the EMA is visible.
    for v in trainer.teacher.weights:
        v.assign(np.asarray(v) + 0.01)
    teacher_before = _weights(trainer.teacher)
    student_before = _weights(trainer.encoder)
    trainer.train_step(_first_batch(config))
    student_after = _weights(trainer.encoder)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(student_after, student_before))
    for t0, s1, t1 in zip(teacher_before, student_after, _weights(trainer.teacher)):
        np.testing.assert_allclose(t1, 0.9 * t0 + 0.1 * s1, rtol=1e-5, atol=1e-7)


def test_training_lowers_the_masked_prediction_error_on_fixed_clips(videos, tmp_path):
    # Scored on the same 4 batches with the same masks before and after 100 steps (the
    # per-step training loss is too noisy at batch 2 for a bar: its last-10 / first-10 ratio
    # spread over 0.82-0.87 across seeds). This statistic, over seeds 0-7 on the development
    # machine: 0.63-0.77; the bar leaves a margin of 0.08 above the worst.
    from vjepa2.train.checkpoint import CheckpointManager
    from vjepa2.train.pretrain_eval import masked_prediction_l1

    config = _config(videos, tmp_path / "run", steps=100, lr=1e-3, start_lr=1e-3,
                     warmup_steps=0, decay_steps=0, checkpoint_every=100)
    pretrain(config, verbose=0, preset_overrides=MICRO_OVERRIDES)
    sampler = make_mask_sampler(config)
    dataset, _ = make_pretrain_dataset(config, sampler, start_step=0)
    clips = [batch["video"] for batch in dataset.take(4)]
    trainer = build_trainer(config, MICRO_OVERRIDES)
    before = masked_prediction_l1(trainer, clips, sampler, mask_seed_offset=10_000)
    CheckpointManager(tmp_path / "run" / "checkpoints").restore(trainer, trainer.optimizer)
    after = masked_prediction_l1(trainer, clips, sampler, mask_seed_offset=10_000)
    assert after["model"] < 0.85 * before["model"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 101))
    assert {"loss_mask0", "loss_mask1", "lr", "ema", "teacher_std"} <= set(records[0])
    assert (tmp_path / "run" / "encoder" / "model.weights.h5").is_file()
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))

    # Killed after its last checkpoint, before the final save: --resume still writes them.
    import shutil

    shutil.rmtree(tmp_path / "run" / "encoder")
    shutil.rmtree(tmp_path / "run" / "predictor")
    assert pretrain(config, resume=True, verbose=0)["stopped"] == "complete"
    assert (tmp_path / "run" / "encoder" / "model.weights.h5").is_file()
    assert (tmp_path / "run" / "predictor" / "model.weights.h5").is_file()


def test_interrupted_and_resumed_run_equals_uninterrupted_run(videos, tmp_path):
    whole = _config(videos, tmp_path / "whole", steps=4)
    pretrain(whole, verbose=0, preset_overrides=MICRO_OVERRIDES)

    split = _config(videos, tmp_path / "split", steps=4)
    with pytest.raises(KeyboardInterrupt):
        # Interrupted after step 3; the checkpoint of step 2 survives.
        pretrain(split, verbose=0, preset_overrides=MICRO_OVERRIDES,
                 extra_callbacks=[InterruptAt(3)])
    state = json.loads((tmp_path / "split/checkpoints/ckpt-00000002/state.json").read_text())
    assert state["step"] == 2 and state["data_index"] == 4
    with pytest.raises(UsageError, match="already holds a run at step 2; pass --resume"):
        pretrain(split, verbose=0)
    pretrain(split, resume=True, verbose=0)

    def load(run):
        trainer = build_trainer(whole, MICRO_OVERRIDES)
        from vjepa2.train.checkpoint import CheckpointManager

        CheckpointManager(run / "checkpoints").restore(trainer, trainer.optimizer)
        return trainer

    a, b = load(tmp_path / "whole"), load(tmp_path / "split")
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 4
    for x, y in zip(a.weights + a.optimizer.variables, b.weights + b.optimizer.variables):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    lines = lambda run: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731,E501
    whole_log, split_log = lines(tmp_path / "whole"), lines(tmp_path / "split")
    assert [r["step"] for r in split_log] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["loss"] for r in split_log], [r["loss"] for r in whole_log],
                               rtol=1e-5)


def test_mirrored_strategy_step_matches_single_device_step(videos, tmp_path):
    config = _config(videos, tmp_path / "run", batch_size=4)
    batch = _first_batch(config)
    keras.utils.set_random_seed(0)
    single = build_trainer(config, MICRO_OVERRIDES)
    initial = _weights(single)
    single.train_step(batch)

    strategy = mirrored_strategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = build_trainer(config, MICRO_OVERRIDES)
    for v, value in zip(mirrored.weights, initial):
        v.assign(value)
    dataset = tf.data.Dataset.from_tensors(batch)
    mirrored.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    for v, w in zip(mirrored.weights, _weights(single)):
        np.testing.assert_allclose(np.asarray(v), w, rtol=1e-4, atol=1e-6, err_msg=v.path)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(videos, tmp_path):
    config = _config(videos, tmp_path / "run", steps=12, lr=1e30, start_lr=1e30,
                     warmup_steps=0, decay_steps=0, checkpoint_every=1)
    with pytest.raises(RuntimeError, match="loss became NaN/inf at step"):
        pretrain(config, verbose=0, preset_overrides=MICRO_OVERRIDES)
    state = json.loads((tmp_path / "run/checkpoints/latest").read_text().strip() and
                       (tmp_path / "run/checkpoints" /
                        (tmp_path / "run/checkpoints/latest").read_text().strip() /
                        "state.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    bad = [r["step"] for r in records if not np.isfinite(r["loss"])]
    assert bad and state["step"] == bad[0] - 1


def test_command_line_errors_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vjepa2", "pretrain", "--videos", str(tmp_path / "missing"),
         "--steps", "2", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    message = [line for line in result.stderr.splitlines() if line.startswith("vjepa2")]
    assert len(message) == 1 and str(tmp_path / "missing") in message[0]
    result = subprocess.run([sys.executable, "-m", "vjepa2", "pretrain", "--videos", "x",
                             "--steps", "0", "--out", "y"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "vjepa2 pretrain: error: steps must be > 0; received 0"


def test_config_validation_names_the_value(tmp_path):
    with pytest.raises(UsageError, match="frames must be an even number >= 2.*received 5"):
        _config(tmp_path, tmp_path, frames=5)
    with pytest.raises(UsageError, match="resolution must be a multiple of 16; received 100"):
        _config(tmp_path, tmp_path, resolution=100)


def test_init_encoder_warm_starts_student_and_teacher(videos, tmp_path):
    from tests.helpers import micro_encoder

    keras.utils.set_random_seed(3)
    source = micro_encoder()
    source.save_to_preset(str(tmp_path / "world_model" / "encoder"))
    config = _config(videos, tmp_path / "run", init_encoder=str(tmp_path / "world_model"))
    trainer = build_trainer(config, MICRO_OVERRIDES)
    for model in (trainer.encoder, trainer.teacher):
        for got, want in zip(_weights(model), _weights(source)):
            np.testing.assert_array_equal(got, want)
    wrong = _config(videos, tmp_path / "run2", init_encoder=str(tmp_path / "world_model"))
    with pytest.raises(UsageError, match="holds an encoder of another size"):
        build_trainer(wrong, {"encoder": {**MICRO_OVERRIDES["encoder"], "embed_dim": 32}})
    with pytest.raises(UsageError, match="--init-encoder .*missing is not a folder"):
        build_trainer(_config(videos, tmp_path / "r3", init_encoder=str(tmp_path / "missing")),
                      MICRO_OVERRIDES)


def test_xla_step_equals_the_plain_step(videos, tmp_path):
    """The XLA-compiled training step (the TensorFlow default on one device) computes what
    the op-by-op step computes: same loss, same updated weights, from the same start."""
    from vjepa2.train.pretrain import use_xla

    batch = _first_batch(_config(videos, tmp_path / "a"))
    results = []
    for jit in ("off", "on"):
        keras.utils.set_random_seed(5)
        config = _config(videos, tmp_path / jit, jit=jit)
        assert use_xla(config) == (jit == "on")
        trainer = build_trainer(config, MICRO_OVERRIDES)
        logs = trainer.train_on_batch(batch, return_dict=True)
        results.append((float(logs["loss"]), _weights(trainer.encoder) + _weights(
            trainer.predictor) + _weights(trainer.teacher)))
    (loss_off, w_off), (loss_on, w_on) = results
    assert loss_on == pytest.approx(loss_off, rel=1e-5)
    for a, b in zip(w_off, w_on):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    assert use_xla(_config(videos, tmp_path / "c")) and not use_xla(
        _config(videos, tmp_path / "d", distribute="mirrored"))
