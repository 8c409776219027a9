"""The pretraining step on the JAX backend (single device and keras.distribution.DataParallel).

Runs in a subprocess because the backend is chosen at import time; skipped when JAX is not
installed (install the `jax` extra).
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Slow: two XLA compilations of the train step on the CPU take minutes.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                 reason="jax is not installed (pip install -e '.[jax]')")]


def test_jax_train_step_ema_and_data_parallel_equality():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run([sys.executable, str(root / "tests" / "jax_pretrain_check.py")],
                            capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    assert report["moved"] > 0
    assert report["ema_error"] < 1e-6
    assert report["parallel_error"] < 1e-5
