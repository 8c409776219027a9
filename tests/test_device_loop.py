"""The device-resident JAX training loop (`vjepa2.train.device_loop`) and on-device masks.

Runs in a JAX subprocess on the CPU (the backend is chosen at import time): several optimizer
steps per compiled call equal the trainer's own steps, resume is exact, the masks follow the
host sampler's definition, AC fine-tuning runs in bf16. Skipped where JAX is not installed.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="jax is not installed (pip install -e '.[jax]')")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-W", "error", str(ROOT / "tests" /
                                                                 "jax_device_loop_check.py")],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_device_masks_follow_the_host_sampler(report):
    assert report["counts_equal"]
    # The fixed counts of a 4 x 8 x 8 grid, every row sorted, in range, context and target
    # disjoint and the masked blocks tubes through time.
    assert report["shapes"] == [[[256, 52], [256, 132]], [[256, 8], [256, 168]]]
    for key in ("overlap", "unsorted", "out_of_range", "shared_position", "fallbacks"):
        assert report[key] == 0, key
    for host, device in report["masked_share_host_device"]:
        assert abs(host - device) < 0.02  # 2000 draws each: the same block distribution


def test_reference_counts_follow_the_host_sampler(report):
    assert report["buckets_equal"] and report["reference_counts_are_buckets"]
    # No cut set shares a token; at most one batch in 24 fell back to a neighbouring bucket.
    assert report["reference_overlap"] == 0 and report["reference_fallbacks"] <= 1
    # Mean context and target counts: 200 host batches against the device's bucket
    # frequencies (within 10%: the host mean of 200 discrete draws).
    for host, device in report["reference_mean_counts_host_device"]:
        for h, d in zip(host, device):
            assert abs(h - d) <= 0.10 * h, (host, device)
    assert all(0 < x < 10 for x in report["reference_loop_losses"])


def test_steps_in_one_call_equal_the_trainers_own_steps(report):
    assert report["moved"] > 1e-5
    assert report["scan_error"] < 1e-5
    assert max(report["loss_error"]) < 1e-5
    assert report["logged_steps"] == [1, 2] and report["loss_finite"]


def test_resume_from_a_checkpoint_is_exact(report):
    assert report["resumed_from"] == 2
    assert report["resume_error"] == 0.0


def test_a_full_crop_is_the_identity_and_ac_finetuning_runs_in_bf16(report):
    assert report["full_crop_error"] < 1e-5
    assert report["ac_compute_dtype"] == "bfloat16"
    assert len(report["ac_losses"]) == 3 and all(0 < x < 10 for x in report["ac_losses"])


def test_the_gpu_speed_benchmark_runs_on_the_cpu_jax_backend(tmp_path):
    micro = {"encoder": dict(embed_dim=48, depth=2, num_heads=2, mlp_dim=96),
             "predictor": dict(embed_dim=24, depth=1, num_heads=2, mlp_dim=48),
             "ac_predictor": dict(embed_dim=24, depth=1, num_heads=2, mlp_dim=48)}
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "scripts" / "bench_device_loop.py"),
         "--overrides", json.dumps(micro), "--pretrain-batch", "4", "--finetune-batch", "4",
         "--episodes", "3", "--episode-frames", "8", "--steps-per-call", "3", "--calls", "1",
         "--matmul-size", "256", "--compare-fit", "--crop", "--json", str(out)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backend"] == "jax" and report["precision"] == "float32"  # auto, no GPU
    for phase in ("pretrain", "finetune"):
        assert report[phase]["steps_per_s"] > 0 and report[phase]["fit_steps_per_s"] > 0
    assert 0 < report["pretrain"]["fraction_of_matmul_peak"] < 1
    assert report["bars"]["pretrain_steps_per_s"] == 400.0
