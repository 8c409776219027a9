"""Training from exported arrays (the TensorFlow-free path for GPU machines)."""
import importlib.util
import json

import numpy as np
import pytest

from tests.helpers import MICRO_OVERRIDES, SCRIPTS
from tests.helpers import load_script
from tests.test_ac_predictor import _write_logs
from vjepa2.data import rlds
from vjepa2.models import VideoEncoder
from vjepa2.models.world_model import load_world_model

MICRO = {**MICRO_OVERRIDES, "ac_predictor": dict(embed_dim=24, depth=1, num_heads=2, mlp_dim=48)}


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    logs = _write_logs(tmp_path_factory.mktemp("logs"), episodes=3, length=9)
    out = tmp_path_factory.mktemp("arrays") / "logs.npz.xz"
    summary = load_script("export_arrays").export([str(logs)], str(out), image_size=64,
                                               frame_stride=2)
    return logs, out, summary


def test_export_cuts_whole_episodes_as_finetune_ac_does(arrays):
    logs, path, summary = arrays
    assert summary["episodes"] == 3 and summary["frames"] == 4  # (9 - 1) // 2 frames
    data = load_script("train_arrays").load_arrays(str(path))
    clips = rlds.make_clip_dataset(str(logs), clip_length=4, frame_stride=2, batch_size=1,
                                   shuffle=False, clip_shift=9, image_size=64)
    for e, clip in enumerate(clips):
        for key in ("frames", "states", "actions"):
            np.testing.assert_array_equal(data[key][e], clip[key].numpy()[0])
    assert data["conventions"]["frame_stride"] == 2
    assert data["conventions"]["action_high"] == [2.0, 2.0, 2.0, 1.0]


def test_training_from_arrays_gives_a_loadable_world_model(arrays, tmp_path, capsys):
    _, path, _ = arrays
    train = load_script("train_arrays")
    code = train.main(["--arrays", str(path), "--out", str(tmp_path), "--frames", "4",
                       "--clip-length", "3", "--pretrain-steps", "2", "--finetune-steps", "2",
                       "--pretrain-batch", "2", "--finetune-batch", "2", "--workers", "0",
                       "--precision", "float32", "--overrides", json.dumps(MICRO)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pretrain"]["steps"] == 2 and summary["finetune"]["steps"] == 2
    model = load_world_model(tmp_path / "world_model")
    assert model.conventions["frame_stride"] == 2 and model.conventions["image_size"] == 64
    pretrained = VideoEncoder.from_preset(tmp_path / "pretrain" / "encoder")
    for a, b in zip(pretrained.weights, model.encoder.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # frozen, as pretrained
    lines = (tmp_path / "world_model" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_bad_arguments_give_one_line_errors(arrays, tmp_path, capsys):
    _, path, _ = arrays
    train = load_script("train_arrays")
    assert train.main(["--arrays", str(tmp_path / "none.npz"), "--out", str(tmp_path)]) == 2
    assert "no array file" in capsys.readouterr().err
    assert train.main(["--arrays", str(path), "--out", str(tmp_path), "--frames", "6"]) == 2
    assert "--frames 6 > 4 frames per episode" in capsys.readouterr().err
    assert train.main(["--arrays", str(path), "--out", str(tmp_path),
                       "--pretrain-seconds", "0"]) == 2
    assert "--pretrain-seconds must be > 0; received 0.0" in capsys.readouterr().err
    (tmp_path / "world_model").mkdir()  # an earlier run is never overwritten
    assert train.main(["--arrays", str(path), "--out", str(tmp_path)]) == 2
    assert "already holds a run (world_model)" in capsys.readouterr().err


def test_gripper_probe_ridge_reads_a_linear_signal_and_not_noise():
    probe = load_script("gripper_probe")
    rng = np.random.default_rng(0)
    for features in (40, 400):  # primal (fewer features than samples) and dual
        # Latent-like features: a few factors spread over many dims, plus noise.
        factors = rng.normal(size=(300, 5))
        x = factors @ rng.normal(size=(5, features)) + 0.1 * rng.normal(size=(300, features))
        signal = factors[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.3
        predict = probe.ridge_fit(x[:200], signal[:200], lam=1.0)
        assert probe.r2(predict(x[200:]), signal[200:]) > 0.9
        noise = rng.normal(size=300)
        predict = probe.ridge_fit(x[:200], noise[:200], lam=1.0)
        assert probe.r2(predict(x[200:]), noise[200:]) < 0.1
    assert probe.main(["--arrays", "/nonexistent.npz"]) == 2


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_the_device_loop_trains_both_phases_on_jax(arrays, tmp_path):
    import os
    import subprocess
    import sys

    _, path, _ = arrays
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        # Keras' save_weights on JAX calls np.array(variable), whose __array__ lacks NumPy 2's
        # copy keyword: a DeprecationWarning from inside Keras; every other warning is an error.
        [sys.executable, "-W", "error", "-W", "ignore:__array__ implementation:DeprecationWarning",
         str(SCRIPTS / "train_arrays.py"), "--arrays", str(path),
         "--out", str(tmp_path), "--frames", "4", "--clip-length", "3", "--pretrain-steps", "4",
         "--finetune-steps", "4", "--pretrain-batch", "2", "--finetune-batch", "2",
         "--steps-per-call", "2", "--precision", "float32", "--overrides", json.dumps(MICRO)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pretrain"]["steps"] == 4 and summary["finetune"]["steps"] == 4
    for phase in ("pretrain", "world_model"):
        lines = (tmp_path / phase / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["step"] for r in records] == [1, 2, 3, 4]
        assert all(np.isfinite(r["loss"]) for r in records)
        assert json.loads((tmp_path / phase / "config.json").read_text())["steps_per_call"] == 2
    model = load_world_model(tmp_path / "world_model")
    assert model.conventions["image_size"] == 64
