"""Tests of an evaluation spread over worker processes (Ray tasks or child processes).

The merged results folder must be the one the one-process harness writes for the same seeds;
a re-run must continue it; a crashed worker must cost only its own unfinished episodes.
"""
import json
import os

import numpy as np
import pytest
from keras import ops

from vjepa2.app.evaluation import evaluate
from vjepa2.app.evaluation import workers
from vjepa2.app.evaluation.workers import Workers, workers_from_flags
from vjepa2.app.models import load_model
from vjepa2.cli import main
from vjepa2.errors import UsageError

SIZE = 64
SEEDS = [1000, 1001, 1002, 1003]


def records(folder):
    lines = (folder / "episodes.jsonl").read_text().splitlines()
    return {r["seed"]: r for r in map(json.loads, lines)}


def assert_same_episodes(got, want):
    assert set(got) == set(want)
    for seed in want:
        assert got[seed]["success"] == want[seed]["success"], seed
        assert got[seed]["index"] == want[seed]["index"]
        np.testing.assert_allclose(got[seed]["actions"], want[seed]["actions"], atol=1e-4)


def assert_same_results(folder, want):
    got = json.loads((folder / "results.json").read_text())
    for key in ("episodes", "successes", "success_rate", "ci95", "seeds", "complete",
                "planner", "model", "subgoals"):
        assert got[key] == want[key], key


@pytest.fixture
def local_ray():
    """A local Ray, started as `--engine ray` starts it, kept over a test's runs so that the
    second run reuses the first's worker processes (TensorFlow already imported)."""
    ray = pytest.importorskip("ray")
    assert workers._ray_init(ray, Workers(2, "ray")) and ray.is_initialized()
    yield ray
    ray.shutdown()


def test_ray_workers_merge_into_the_sequential_results_and_resume(tmp_path, local_ray):
    flags = ["--task", "reach", "--episodes", str(len(SEEDS)), "--max-steps", "4",
             "--videos", "1", "--image-size", str(SIZE)]
    model, folder = load_model("shipped")
    sequential = evaluate("reach", len(SEEDS), tmp_path / "sequential", world_model=model,
                          model_path=folder, max_steps=4, videos=1, image_size=SIZE,
                          progress=False)
    want = records(tmp_path / "sequential")

    out = tmp_path / "ray"
    assert main(["evaluate", *flags, "--out", str(out), "--workers", "2", "--engine", "ray"]) == 0
    assert_same_episodes(records(out), want)
    assert_same_results(out, sequential)
    assert (out / "videos" / "episode-00001000.mp4").stat().st_size > 0
    assert json.loads((out / "evaluation.json").read_text()) == json.loads(
        (tmp_path / "sequential" / "evaluation.json").read_text())

    # One worker's share lost (its records gone): a re-run does those episodes only.
    kept = [line for line in (out / "episodes.jsonl").read_text().splitlines()
            if json.loads(line)["seed"] in (1000, 1002)]
    (out / "episodes.jsonl").write_text("\n".join(kept) + "\n")
    assert main(["evaluate", *flags, "--out", str(out), "--ray-address", "local",
                 "--workers", "2"]) == 0  # the Ray of this process: not started again
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert lines[:2] == kept and len(lines) == len(SEEDS)
    assert_same_episodes(records(out), want)
    assert_same_results(out, sequential)


class CrashingPixelModel:
    """A stub world model (pooled image colours; actions shift them) whose first worker to
    reach its `crash_at`-th encode ends its process, as a crash would (once: a marker file)."""

    action_dim = 4
    conventions = {"frame_dtype": "uint8"}

    def __init__(self, marker, crash_at):
        self.marker, self.crash_at, self.parent, self.calls = str(marker), crash_at, \
            os.getpid(), 0

    def encode(self, frames):
        self.calls += 1
        if os.getpid() != self.parent and self.calls == self.crash_at:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(3)
        frames = np.asarray(frames)
        b, t, h, w, c = frames.shape
        pooled = frames.reshape(b, t, 4, h // 4, 4, w // 4, c).mean(axis=(3, 5)) / 255.0
        return pooled.reshape(b, t, 16, c).astype("float32")

    def rollout(self, z_context, states, actions, context_actions=None):
        shift = ops.cumsum(actions, axis=1)[:, :, :3] * 0.01
        return z_context[:, -1:] + shift[:, :, None, :]


def test_a_crashed_process_worker_loses_only_its_unfinished_episodes(tmp_path):
    kwargs = dict(preset="reference_method", overrides=["cem.samples=16", "cem.iterations=2"],
                  max_steps=3, videos=0, image_size=SIZE, progress=False)
    probe = CrashingPixelModel(tmp_path / "never", crash_at=0)
    evaluate("reach", 1, tmp_path / "probe", world_model=probe, **kwargs)
    per_episode = probe.calls  # encodes in one episode

    # Six episodes in two workers of three; one worker dies in its second episode.
    model = CrashingPixelModel(tmp_path / "crashed", crash_at=per_episode + 1)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match=r"1 of 2 workers failed \(.*exit code 3\); 2 "
                       "episodes are not done: re-run"):
        evaluate("reach", 6, out, world_model=model, workers=Workers(2), **kwargs)
    first = records(out)
    assert len(first) == 4 and (tmp_path / "crashed").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["episodes"] == 4 and results["complete"] is False
    # The re-run (here in one process) does the two missing episodes only.
    results = evaluate("reach", 6, out, world_model=model, **kwargs)
    assert results["complete"] and sorted(records(out)) == list(range(1000, 1006))
    assert all(records(out)[seed] == record for seed, record in first.items())


@pytest.mark.parametrize("flags, message", [
    ((0, None, None), "--workers must be a positive integer; received 0"),
    ((2, "dask", None), "unknown --engine 'dask'; expected one of processes, ray"),
    ((2, "processes", "auto"), "--ray-address auto applies to --engine ray"),
    ((None, "ray", None), "--engine needs --workers K"),
    ((None, None, "auto"), "--ray-address needs --workers K"),
])
def test_bad_worker_flags_are_one_line_errors(flags, message):
    with pytest.raises(UsageError, match=message):
        workers_from_flags(*flags)


@pytest.mark.parametrize("address, message", [
    ("head", "--ray-address must be local, auto or HOST:PORT; received 'head'"),
    ("127.0.0.1:1", "--ray-address 127.0.0.1:1: no Ray head node answers there"),
])
def test_an_unreachable_ray_address_is_a_one_line_error(address, message):
    with pytest.raises(UsageError, match=message):
        workers._check_reachable(address, timeout=5)


def test_workers_flags_and_remote_exclude_each_other(tmp_path):
    assert workers_from_flags(None, None, None) is None
    assert workers_from_flags(3, None, "auto") == Workers(3, "ray", "auto")
    with pytest.raises(UsageError, match="--remote and --workers exclude each other"):
        evaluate("reach", 1, tmp_path / "x", remote="http://127.0.0.1:9", workers=Workers(2))
