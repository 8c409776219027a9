"""Shared helpers for model and training tests: micro configs, serialization round trips."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

# A model small enough that tracing and stepping take seconds on 2 CPU cores; head dims >= 6
# so that 3D RoPE rotates every axis.
MICRO_OVERRIDES = {
    "encoder": dict(embed_dim=48, depth=2, num_heads=2, mlp_dim=96, patch_size=16),
    "predictor": dict(embed_dim=24, depth=1, num_heads=2, mlp_dim=48),
}


def micro_encoder(**overrides):
    from vjepa2.models import VideoEncoder

    return VideoEncoder.from_preset("tiny", **{**MICRO_OVERRIDES["encoder"], **overrides})


def micro_predictor(encoder_dim=48, **overrides):
    from vjepa2.models import MaskedPredictor

    return MaskedPredictor.from_preset(
        "tiny", **{**MICRO_OVERRIDES["predictor"], "encoder_dim": encoder_dim, **overrides})


def assert_saved_model_equal(model, inputs, tmp_path, call=None):
    """A `.keras` save/load round trip reproduces the outputs exactly."""
    import keras

    call = call or (lambda m: m(inputs))
    expected = np.asarray(call(model))
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(call(restored)), expected)
    return restored


def random_video(batch=2, frames=4, size=64, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, frames, size, size, 3)).astype(
        "float32")



class InterruptAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt after batch `at_batch` (1-based): a simulated Ctrl-C."""

    def __init__(self, at_batch):
        super().__init__()
        self.at_batch = at_batch

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.at_batch:
            raise KeyboardInterrupt


def load_script(name):
    """The module of `scripts/<name>.py` (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
