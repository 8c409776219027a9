"""Training on several devices and workers: data shards, MirroredStrategy on two logical CPU
devices, and MultiWorkerMirroredStrategy with two worker processes on localhost.

Equality with one process is the test throughout: a worker reads only its share of the data,
and the shares side by side are the single-process batch, so the trained weights agree up to
float32 rounding (the gradients of the two half batches are summed in another order).
"""
import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import micro_encoder
from tests.test_ac_predictor import MICRO_AC, _write_logs
from vjepa2.cli import main
from vjepa2.data import rlds
from vjepa2.data.shards import shard_indices
from vjepa2.errors import UsageError
from vjepa2.train.finetune_ac import (FinetuneACConfig, _resolve_data_shards, finetune_ac,
                                      make_finetune_dataset, resolve_keymap)
from vjepa2.train.pretrain import PretrainConfig, make_mask_sampler, make_pretrain_dataset

ROOT = Path(__file__).resolve().parents[1]
# Bound on |w_workers - w_one_process| over every weight and optimizer variable. The two runs
# see the same batches; only the order of float32 sums differs (two half-batch gradients
# all-reduced vs one batch), about 1e-7 relative per step. A data mix-up (a wrong row, a
# skipped batch) moves weights by about the learning rate, 1e-3, per step.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return _write_logs(tmp_path_factory.mktemp("logs"), episodes=4, length=10)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("pretrain") / "encoder"
    encoder = micro_encoder(depth=1)
    encoder.trainable = False
    encoder.save_to_preset(folder)
    return folder.parent


@pytest.fixture(scope="module")
def predictor_dir(tmp_path_factory):
    """A micro predictor as a preset folder, so that the command line trains it (`--preset`)."""
    from vjepa2.models import ActionConditionedPredictor

    keras.utils.set_random_seed(1)
    folder = tmp_path_factory.mktemp("predictor")
    ActionConditionedPredictor.from_preset(
        "tiny", **MICRO_AC, encoder_dim=48, action_dim=4, state_dim=4).save_to_preset(folder)
    return folder


def _config(logs, encoder_dir, out, **kwargs):
    base = dict(encoder=str(encoder_dir), logs=str(logs), out=str(out), steps=4, batch_size=4,
                clip_length=3, checkpoint_every=2, lr=1e-3, start_lr=1e-3, warmup_steps=0,
                decay_steps=0, precision="float32", augment=True)
    base.update(kwargs)
    return FinetuneACConfig(**base)


def _h5(path):
    values = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return values


def _max_difference(a, b):
    """Largest |a - b| over the float arrays of two weight files with the same layout."""
    x, y = _h5(a), _h5(b)
    assert x.keys() == y.keys()
    return max(float(np.max(np.abs(x[k].astype(np.float64) - y[k]), initial=0.0))
               for k in x if x[k].dtype.kind == "f")


def _metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------- data shards

def test_shard_indices_split_every_global_batch_in_worker_order():
    batch, start = 4, 8
    whole, rows = shard_indices(start, 20, batch, (1, 0))
    parts = [shard_indices(start, 20, batch, (2, i)) for i in range(2)]
    assert rows == 4 and all(b == 2 for _, b in parts)
    expected = np.arange(start, 20)[:(20 - start) // batch * batch].reshape(-1, batch)
    got = np.concatenate([np.asarray(list(d.as_numpy_iterator())).reshape(-1, 2)
                          for d, _ in parts], axis=1)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.asarray(list(whole.as_numpy_iterator())), range(8, 20))
    with pytest.raises(UsageError, match="batch size 5 must split evenly over 2 workers"):
        shard_indices(0, 10, 5, (2, 0))


def test_pretrain_worker_rows_side_by_side_are_the_one_process_batch(tmp_path):
    from vjepa2.data.synthetic import generate_videos

    generate_videos(tmp_path / "videos", 3, frames=24, size=64, fps=8, seed=0)
    config = PretrainConfig(videos=str(tmp_path / "videos"), out=str(tmp_path / "run"),
                            steps=4, batch_size=4, frames=4, resolution=64, workers=1)
    sampler = make_mask_sampler(config)

    def batches(shard):
        dataset, _ = make_pretrain_dataset(config, sampler, start_step=1, shard=shard)
        return list(dataset.take(2).as_numpy_iterator())

    whole, first, second = batches((1, 0)), batches((2, 0)), batches((2, 1))
    for w, a, b in zip(whole, first, second):
        assert w.keys() == a.keys() and a["video"].shape[0] == 2
        for key in w:
            np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), w[key], key)


def test_episode_shards_partition_the_logs_and_match_one_process(logs, encoder_dir, tmp_path):
    keymap, _ = resolve_keymap("default")

    def first_states(shard):
        clips = rlds.make_clip_dataset(logs, keymap, clip_length=3, batch_size=1,
                                       shuffle=False, episode_shard=shard)
        return {tuple(np.round(c["states"][0, 0], 5)) for c in clips.as_numpy_iterator()}

    a, b, every = first_states((2, 0)), first_states((2, 1)), first_states((1, 0))
    assert a and b and not a & b and a | b == every
    with pytest.raises(UsageError, match="holds 4 data files; cannot split them into 8"):
        rlds.make_clip_dataset(logs, keymap, episode_shard=(8, 0))

    config = _config(logs, encoder_dir, tmp_path / "run", data_shards=2)
    whole = make_finetune_dataset(config, keymap, start_step=1)
    parts = [make_finetune_dataset(config, keymap, 1, range(i, i + 1)) for i in range(2)]
    for w, x, y in zip(whole.take(2), parts[0].take(2), parts[1].take(2)):
        assert int(x["frames"].shape[0]) == 2
        for key in w:
            np.testing.assert_array_equal(np.concatenate([x[key], y[key]]), w[key], key)


def test_data_shards_follow_the_workers_and_the_resumed_run():
    config = FinetuneACConfig(encoder="e", logs="l", out="o", steps=2, batch_size=4)
    assert _resolve_data_shards(config, 2, None).data_shards == 2
    assert _resolve_data_shards(config, 1, {"data_shards": 2}).data_shards == 2
    assert _resolve_data_shards(config, 1, {}).data_shards == 1  # a run from before shards
    with pytest.raises(UsageError, match="holds a run with data_shards=2; received "
                       "data_shards=4"):
        _resolve_data_shards(dataclasses.replace(config, data_shards=4), 1,
                             {"data_shards": 2})
    with pytest.raises(UsageError, match=r"data shards \(1\) must be a multiple of the "
                       r"workers \(2\)"):
        _resolve_data_shards(config, 2, {})
    with pytest.raises(UsageError, match="batch size 4 must split evenly over 3 data shards"):
        FinetuneACConfig(encoder="e", logs="l", out="o", steps=2, batch_size=4, data_shards=3)


def test_distribution_settings_give_one_line_errors(logs, encoder_dir, tmp_path):
    with pytest.raises(UsageError, match="start JAX processes for --distribute data_parallel; "
                       "received --distribute multi_worker"):
        _config(logs, encoder_dir, tmp_path, distribute="multi_worker", coordinator="h:1",
                num_processes=2, process_id=0)
    with pytest.raises(UsageError, match="go together"):
        _config(logs, encoder_dir, tmp_path, distribute="data_parallel", coordinator="h:1")
    with pytest.raises(UsageError, match="process-id must be in"):
        PretrainConfig(videos="v", out="o", steps=1, distribute="data_parallel",
                       coordinator="h:1", num_processes=2, process_id=2)
    with pytest.raises(UsageError, match="needs the jax backend"):
        finetune_ac(_config(logs, encoder_dir, tmp_path / "x", distribute="data_parallel"),
                    verbose=0)
    with pytest.raises(UsageError, match=r"batch size 3 must split evenly over 1 worker\(s\) x "
                       r"2 device\(s\)"):
        finetune_ac(_config(logs, encoder_dir, tmp_path / "x", batch_size=3,
                            distribute="mirrored"), verbose=0)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------- training

def test_mirrored_on_two_logical_cpus_trains_as_one_device(logs, encoder_dir, tmp_path):
    assert len(tf.config.list_logical_devices("CPU")) == 2  # tests/conftest.py
    # A mirrored run of another model first, in the same process: with collective all-reduce
    # the second strategy's gradients aborted ("Shape mismatch in the collective instance").
    finetune_ac(_config(logs, encoder_dir, tmp_path / "wider", steps=1, distribute="mirrored"),
                verbose=0, predictor_overrides={**MICRO_AC, "embed_dim": 32, "mlp_dim": 64})
    for name in ("none", "mirrored"):
        finetune_ac(_config(logs, encoder_dir, tmp_path / name, steps=2, distribute=name),
                    verbose=0, predictor_overrides=MICRO_AC)
    weights = "checkpoints/ckpt-00000002/model.weights.h5"
    difference = _max_difference(tmp_path / "none" / weights, tmp_path / "mirrored" / weights)
    assert difference <= TOLERANCE
    np.testing.assert_allclose([r["loss"] for r in _metrics(tmp_path / "mirrored")],
                               [r["loss"] for r in _metrics(tmp_path / "none")], rtol=1e-5)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(arguments, temp, backend, extra_env=()):
    """`vjepa2 finetune-ac ARGUMENTS` in a child process with its own TMPDIR."""
    temp.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=backend,
               JAX_PLATFORMS="cpu", TMPDIR=str(temp), **dict(extra_env))
    return subprocess.Popen([sys.executable, "-m", "vjepa2", "finetune-ac", *arguments],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _start_workers(arguments, tmp_path, backend):
    """Two workers on localhost: TensorFlow's through TF_CONFIG, JAX's through the flags."""
    ports = _free_ports(2)
    workers = []
    for index in range(2):
        if backend == "tensorflow":
            cluster = {"worker": [f"localhost:{port}" for port in ports]}
            flags = ["--distribute", "multi_worker"]
            env = {"TF_CONFIG": json.dumps({"cluster": cluster,
                                            "task": {"type": "worker", "index": index}})}
        else:
            flags = ["--distribute", "data_parallel", "--coordinator", f"localhost:{ports[0]}",
                     "--num-processes", "2", "--process-id", str(index)]
            env = {}
        workers.append(_start([*arguments, *flags], tmp_path / f"tmp{index}", backend, env))
    return workers


def _finish(processes, timeout=800):
    """The outputs of the processes; all are ended (killed on a timeout)."""
    try:
        return [p.communicate(timeout=timeout)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _arguments(logs, encoder_dir, predictor_dir):
    return ["--encoder", str(encoder_dir), "--logs", str(logs), "--preset", str(predictor_dir),
            "--steps", "4", "--batch-size", "4", "--clip-length", "3", "--checkpoint-every",
            "2", "--lr", "1e-3", "--start-lr", "1e-3", "--warmup-steps", "0", "--decay-steps",
            "0", "--precision", "float32", "--augment"]


def _check_one_run_like_one_process(run, one, workers, outputs, tmp_path, distribute):
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "worker 0 of 2" in outputs[0] and "fine-tuning" not in outputs[1]
    saved = json.loads((run / "config.json").read_text())
    assert saved["data_shards"] == 2 and saved["distribute"] == distribute
    # One writer: each step logged once, as many TensorBoard event files as one process
    # writes, no worker temp folder left.
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3, 4]
    assert len(list(run.rglob("events.out.tfevents.*"))) == \
        len(list(one.rglob("events.out.tfevents.*")))
    assert not [p for i in range(2) for p in (tmp_path / f"tmp{i}").iterdir()]
    np.testing.assert_allclose([r["loss"] for r in _metrics(run)],
                               [r["loss"] for r in _metrics(one)], rtol=1e-5)
    checkpoint = "checkpoints/ckpt-00000004/model.weights.h5"  # weights and optimizer state
    assert _max_difference(run / checkpoint, one / checkpoint) <= TOLERANCE
    weights = "ac_predictor/model.weights.h5"
    assert _max_difference(run / weights, one / weights) <= TOLERANCE
    first = _h5(one / "checkpoints/ckpt-00000002/model.weights.h5")
    last = _h5(one / checkpoint)
    assert max(float(np.max(np.abs(first[k] - last[k]), initial=0)) for k in first
               if first[k].dtype.kind == "f") > 100 * TOLERANCE  # training moved the weights


# Three TensorFlow processes on the 2-core machine: 70 s idle, up to 4 min under load.
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_on_localhost_write_one_run_equal_to_one_process(logs, encoder_dir,
                                                                     predictor_dir, tmp_path):
    arguments = _arguments(logs, encoder_dir, predictor_dir)
    workers = _start_workers(arguments + ["--out", str(tmp_path / "workers")], tmp_path,
                             "tensorflow")
    try:
        # The same global batches in one process: the workers' two episode shards.
        assert main(["finetune-ac", *arguments, "--out", str(tmp_path / "one"),
                     "--data-shards", "2"]) == 0
    finally:
        outputs = _finish(workers)
    _check_one_run_like_one_process(tmp_path / "workers", tmp_path / "one", workers, outputs,
                                    tmp_path, "multi_worker")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_two_jax_processes_on_localhost_write_one_run_equal_to_one_process(
        logs, encoder_dir, predictor_dir, tmp_path):
    arguments = _arguments(logs, encoder_dir, predictor_dir)
    workers = _start_workers(arguments + ["--out", str(tmp_path / "workers")], tmp_path, "jax")
    one = _start([*arguments, "--out", str(tmp_path / "one"), "--data-shards", "2"],
                 tmp_path / "tmp_one", "jax")
    outputs = _finish([*workers, one])
    assert one.returncode == 0, outputs[2][-3000:]
    _check_one_run_like_one_process(tmp_path / "workers", tmp_path / "one", workers, outputs,
                                    tmp_path, "data_parallel")


def test_only_the_chief_writes_into_the_run_folder(tmp_path, monkeypatch):
    from vjepa2.train.distribute import Distribution

    import tempfile

    (tmp_path / "temp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    distribution = Distribution("none")
    with distribution.output_folder(tmp_path / "run") as folder:
        assert folder == tmp_path / "run"
    distribution.workers, distribution.index = 2, 1  # as a second worker sees itself
    assert not distribution.chief and distribution.shard == (2, 1)
    with distribution.output_folder(tmp_path / "run") as folder:
        assert folder.parent == tmp_path / "temp" and folder.is_dir()
        (folder / "metrics.jsonl").write_text("{}\n")
    assert not folder.exists() and not (tmp_path / "run").exists()
