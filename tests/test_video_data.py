"""Video clip pipeline and procedural test videos: listing, sampling, determinism, bad files."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vjepa2.data import video_decode
from vjepa2.data.synthetic import SHAPE_KINDS, generate_videos, synthesize_video
from vjepa2.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipConfig,
    ClipSampler,
    VideoStats,
    list_videos,
    make_clip_dataset,
    measure_throughput,
    resample_offsets,
    write_video_csv,
)
from vjepa2.data.video_io import read_video, write_video
from vjepa2.errors import UsageError

# Small clips keep the suite fast: 8 fps sources resampled to 4 fps, 4 frames, 32 px.
SMALL = dict(frames=4, fps=4.0, resolution=32, batch_size=4)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("videos")
    generate_videos(out, num_videos=6, frames=24, size=64, fps=8, seed=0, csv_name="videos.csv")
    return out


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory, video_dir) -> Path:
    """Four good videos plus a corrupt, an empty and a too-short one."""
    out = tmp_path_factory.mktemp("mixed")
    for i in range(4):
        (out / f"good_{i}.mp4").write_bytes((video_dir / f"video_{i:05d}.mp4").read_bytes())
    (out / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (out / "empty.mp4").write_bytes(b"")
    # 3 frames at 8 fps; a 4-frame clip at 4 fps needs 7.
    write_video(out / "short.mp4", synthesize_video(0, 99, frames=3, size=64)[0], fps=8)
    return out


def _batches(dataset, count: int) -> list[np.ndarray]:
    # The iterator is dropped on return: a live tf.data iterator with in-flight
    # numpy_function calls can block interpreter shutdown.
    iterator = iter(dataset)
    out = [np.asarray(next(iterator)) for _ in range(count)]
    del iterator
    return out


def _index_video(path: Path, num_frames: int, fps: int, size: int = 64) -> None:
    """Frame k: left half grey 16*(k % 16) + 8, right half 16*(k // 16) + 8 (robust to H.264)."""
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    for k in range(num_frames):
        frames[k, :, : size // 2] = 16 * (k % 16) + 8
        frames[k, :, size // 2 :] = 16 * (k // 16) + 8
    write_video(path, frames, fps=fps)


def _frame_index(frame: np.ndarray) -> int:
    w = frame.shape[1]
    low = int(round((float(frame[:, : w // 4].mean()) - 8) / 16))
    high = int(round((float(frame[:, -w // 4 :].mean()) - 8) / 16))
    return 16 * high + low


# ---------------------------------------------------------------- listing


def test_list_videos_folder_is_recursive_sorted_and_filtered(tmp_path):
    for name in ["b.mp4", "a/c.WEBM", "a/d.mkv", "e.avi", "notes.txt", "f.mp4.part"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    videos = list_videos(tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p, _ in videos] == [
        "a/c.WEBM",
        "a/d.mkv",
        "b.mp4",
        "e.avi",
    ]
    assert all(label is None for _, label in videos)


def test_list_videos_csv_resolves_relative_paths_and_labels(tmp_path):
    (tmp_path / "clips").mkdir()
    absolute = tmp_path / "elsewhere.mp4"
    (tmp_path / "clips" / "list.csv").write_text(
        f"path,label\nx/one.mp4,3\n\n{absolute},\ntwo.mp4\n", encoding="utf-8"
    )
    videos = list_videos(tmp_path / "clips" / "list.csv")
    assert videos == [
        (str(tmp_path / "clips" / "x" / "one.mp4"), 3),
        (str(absolute), None),
        (str(tmp_path / "clips" / "two.mp4"), None),
    ]


def test_write_video_csv_round_trips(tmp_path):
    paths = [tmp_path / "v" / "a.mp4", tmp_path / "b.mp4"]
    write_video_csv(tmp_path / "v" / "list.csv", paths, [1, 2])
    lines = (tmp_path / "v" / "list.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "a.mp4,1"  # relative: the folder can move
    assert list_videos(tmp_path / "v" / "list.csv") == [
        (str((tmp_path / "v" / "a.mp4").resolve()), 1),
        (str((tmp_path / "b.mp4").resolve()), 2),
    ]


def test_list_videos_errors_name_the_source(tmp_path):
    with pytest.raises(UsageError, match="does not exist.*nowhere"):
        list_videos(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no videos", encoding="utf-8")
    with pytest.raises(UsageError, match="no video files.*empty"):
        list_videos(tmp_path / "empty")
    (tmp_path / "blank.csv").write_text("path,label\n\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no video rows.*blank.csv"):
        list_videos(tmp_path / "blank.csv")
    (tmp_path / "bad.csv").write_text("a.mp4,cat\n", encoding="utf-8")
    with pytest.raises(UsageError, match="label must be an integer.*'cat'"):
        list_videos(tmp_path / "bad.csv")


def test_clip_config_rejects_bad_values(video_dir):
    with pytest.raises(UsageError, match="frames must be >= 1; received 0"):
        ClipConfig(frames=0)
    with pytest.raises(UsageError, match="crop_scale"):
        ClipConfig(crop_scale=(0.5, 1.5))
    with pytest.raises(UsageError, match="start_index must be >= 0; received -8"):
        make_clip_dataset(video_dir, start_index=-8)


# ---------------------------------------------------------------- sampling


def test_resample_offsets_round_the_fps_ratio():
    offsets = resample_offsets(8, source_fps=30.0, target_fps=4.0)
    np.testing.assert_array_equal(offsets, [0, 8, 15, 23, 30, 38, 45, 53])
    np.testing.assert_array_equal(resample_offsets(4, 8.0, 4.0), [0, 2, 4, 6])
    # A target above the source rate repeats frames rather than inventing them.
    np.testing.assert_array_equal(resample_offsets(4, 4.0, 8.0), [0, 1, 1, 2])


def test_fps_resampling_decodes_the_right_frames(tmp_path):
    _index_video(tmp_path / "idx.mp4", num_frames=64, fps=30)
    # Evaluation takes the middle clip: 64 frames, span 54 -> start (63 - 53) // 2 = 5.
    dataset, _ = make_clip_dataset(
        tmp_path, frames=8, fps=4.0, resolution=64, batch_size=1, training=False,
        normalize=False, repeat=False,
    )
    (clip,) = _batches(dataset, 1)
    sampled = [_frame_index(np.round(f * 255.0)) for f in clip[0]]
    assert sampled == [5, 13, 20, 28, 35, 43, 50, 58]
    # Training starts anywhere, but the spacing is always 7.5 frames on average.
    config = ClipConfig(frames=8, fps=4.0, training=True, hflip=False, crop_scale=(1.0, 1.0),
                        crop_ratio=(1.0, 1.0))
    sampler = ClipSampler(list_videos(tmp_path), config, VideoStats())
    starts = set()
    for i in range(6):
        clip, _ = sampler.clip(i)
        sampled = np.array([_frame_index(f) for f in clip])
        assert set(np.diff(sampled)) <= {7, 8}
        assert sampled[-1] - sampled[0] == 53
        starts.add(int(sampled[0]))
    assert len(starts) > 1


def test_seeking_into_a_long_video_lands_on_the_right_frames(tmp_path, monkeypatch):
    _index_video(tmp_path / "long.mp4", num_frames=240, fps=30)
    config = ClipConfig(frames=8, fps=4.0, training=False)
    videos = list_videos(tmp_path)
    # Middle clip of 240 frames starts at (239 - 53) // 2 = 93, past the seek threshold.
    clip, _ = ClipSampler(videos, config, VideoStats()).clip(0)
    expected = 93 + resample_offsets(8, 30.0, 4.0)
    assert [_frame_index(f) for f in clip] == expected.tolist()
    monkeypatch.setattr(video_decode, "_SEEK_MIN_FRAMES", 10**9)
    linear, _ = ClipSampler(videos, config, VideoStats()).clip(0)
    np.testing.assert_array_equal(clip, linear)


def test_webm_without_frame_count_is_counted_from_packets(tmp_path):
    import av

    # VP9 in WebM: the header has no frame count, so the sampler counts packets.
    frames = np.zeros((40, 64, 64, 3), np.uint8)
    for k in range(40):
        frames[k, :, :32] = 16 * (k % 16) + 8
        frames[k, :, 32:] = 16 * (k // 16) + 8
    with av.open(str(tmp_path / "a.webm"), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    sampler = ClipSampler(list_videos(tmp_path), ClipConfig(frames=4, fps=5.0, training=False), VideoStats())
    clip, _ = sampler.clip(0)
    # 40 frames at 10 fps, span 7 -> middle start (39 - 6) // 2 = 16, every second frame.
    assert [_frame_index(f) for f in clip] == [16, 18, 20, 22]


# ---------------------------------------------------------------- the dataset


def test_batches_have_static_shapes_and_imagenet_normalization(video_dir):
    dataset, stats = make_clip_dataset(video_dir, seed=3, **SMALL)
    spec = dataset.element_spec
    assert tuple(spec.shape) == (4, 4, 32, 32, 3) and spec.dtype.name == "float32"
    raw_dataset, _ = make_clip_dataset(video_dir, seed=3, normalize=False, **SMALL)
    (normalized,) = _batches(dataset, 1)
    (raw,) = _batches(raw_dataset, 1)
    assert raw.min() >= 0.0 and raw.max() <= 1.0 and raw.std() > 0.05
    expected = (raw - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    np.testing.assert_allclose(normalized, expected, atol=1e-5)
    assert stats.clips >= 4 and stats.counts == {}


def test_same_seed_and_start_index_reproduce_the_stream(video_dir):
    def stream(**kwargs):
        dataset, _ = make_clip_dataset(video_dir, seed=7, **SMALL, **kwargs)
        return dataset

    # 4 batches of 4 from 6 videos cross an epoch boundary (a new permutation).
    first = _batches(stream(num_parallel_calls=2), 4)
    again = _batches(stream(num_parallel_calls=1), 4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    resumed = _batches(stream(start_index=2 * SMALL["batch_size"]), 2)
    np.testing.assert_array_equal(resumed[0], first[2])
    np.testing.assert_array_equal(resumed[1], first[3])
    (other,) = _batches(make_clip_dataset(video_dir, seed=8, **SMALL)[0], 1)
    assert not np.array_equal(other, first[0])


def test_each_epoch_visits_every_video_in_a_new_order(video_dir):
    sampler = ClipSampler(list_videos(video_dir), ClipConfig(**SMALL), VideoStats())
    orders = [sampler.order(epoch) for epoch in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(6))
    assert not all(np.array_equal(orders[0], o) for o in orders[1:])
    eval_sampler = ClipSampler(list_videos(video_dir), ClipConfig(training=False), VideoStats())
    assert eval_sampler.order(5).tolist() == list(range(6))


def test_labels_follow_the_csv(video_dir):
    videos = list_videos(video_dir / "videos.csv")
    dataset, _ = make_clip_dataset(
        video_dir / "videos.csv", training=False, repeat=False, with_labels=True,
        **{**SMALL, "batch_size": 3},
    )
    labels = [label for _, batch_labels in dataset for label in batch_labels.numpy().tolist()]
    assert labels == [label for _, label in videos]
    assert set(labels) <= set(range(len(SHAPE_KINDS)))


def test_one_pass_without_repeat_drops_the_partial_batch(video_dir):
    dataset, _ = make_clip_dataset(video_dir, repeat=False, **SMALL)
    assert len(list(dataset)) == 1  # 6 videos, batches of 4


def test_bad_files_are_skipped_counted_and_logged_once(mixed_dir, caplog):
    caplog.set_level(logging.WARNING, logger="vjepa2.data.video")
    dataset, stats = make_clip_dataset(mixed_dir, seed=1, **SMALL)
    # 3 batches of 4 = 12 elements: every one of the 7 files is drawn at least once.
    batches = _batches(dataset, 3)
    assert all(b.shape == (4, 4, 32, 32, 3) and np.isfinite(b).all() for b in batches)
    assert stats.counts == {"unreadable": 1, "empty": 1, "too_short": 1}
    assert sorted(Path(p).name for p in stats.bad_paths) == ["corrupt.mp4", "empty.mp4", "short.mp4"]
    assert stats.redraws >= 3
    assert "3 bad videos (empty 1, too_short 1, unreadable 1)" in stats.summary()
    logged = [r.getMessage() for r in caplog.records if r.name == "vjepa2.data.video"]
    assert len(logged) == 3 and all(r.levelno == logging.WARNING for r in caplog.records)


def test_missing_csv_entry_is_skipped(tmp_path, video_dir):
    write_video_csv(tmp_path / "list.csv", [video_dir / "video_00000.mp4", tmp_path / "gone.mp4"])
    dataset, stats = make_clip_dataset(tmp_path / "list.csv", **SMALL)
    _batches(dataset, 1)
    assert stats.counts == {"missing": 1}


def test_known_bad_files_are_not_decoded_again(mixed_dir, monkeypatch):
    sampler = ClipSampler(list_videos(mixed_dir), ClipConfig(**SMALL), VideoStats())
    opened: list[str] = []
    load = sampler._load

    def counting_load(path, rng):
        opened.append(Path(path).name)
        return load(path, rng)

    monkeypatch.setattr(sampler, "_load", counting_load)
    for i in range(3 * 7):  # three epochs
        sampler.clip(i)
    for name in ["corrupt.mp4", "empty.mp4", "short.mp4"]:
        assert opened.count(name) == 1
    assert opened.count("good_0.mp4") >= 3


def test_stream_with_bad_files_is_deterministic_and_resumable(mixed_dir):
    # A resumed run has not yet seen the bad files; it must still produce the same clips.
    first = _batches(make_clip_dataset(mixed_dir, seed=2, **SMALL)[0], 3)
    resumed = _batches(make_clip_dataset(mixed_dir, seed=2, start_index=8, **SMALL)[0], 1)
    np.testing.assert_array_equal(resumed[0], first[2])


def test_all_bad_source_raises_a_usage_error(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.webm").write_bytes(os.urandom(2048))
    write_video(tmp_path / "c.mp4", np.zeros((2, 32, 32, 3), np.uint8), fps=8)
    with pytest.raises(UsageError, match=f"no readable video.*{tmp_path}"):
        make_clip_dataset(tmp_path, **SMALL)


def test_measure_throughput_counts_clips(video_dir):
    dataset, _ = make_clip_dataset(video_dir, **SMALL)
    assert measure_throughput(dataset, batches=2) > 0


def test_process_exits_while_a_pipeline_is_running(video_dir, tmp_path):
    # An uncaught exception keeps the live iterator in its traceback until interpreter
    # shutdown; without the exit drain, TensorFlow then waits forever on decode threads.
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(f"""
        from vjepa2.data.video import make_clip_dataset

        def main():
            dataset, _ = make_clip_dataset({str(video_dir)!r}, frames=4, fps=4.0, resolution=32)
            iterator = iter(dataset)
            next(iterator)
            raise RuntimeError("boom")

        main()
    """), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=env
    )
    assert result.returncode == 1 and "RuntimeError: boom" in result.stderr


# ---------------------------------------------------------------- synthetic videos


def test_synthetic_videos_are_deterministic_per_seed():
    a, label_a = synthesize_video(seed=0, index=1, frames=12, size=64)
    b, label_b = synthesize_video(seed=0, index=1, frames=12, size=64)
    np.testing.assert_array_equal(a, b)
    assert label_a == label_b and 0 <= label_a < len(SHAPE_KINDS)
    assert a.shape == (12, 64, 64, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, synthesize_video(seed=1, index=1, frames=12, size=64)[0])
    assert not np.array_equal(a, synthesize_video(seed=0, index=2, frames=12, size=64)[0])


def test_generate_videos_writes_decodable_files(tmp_path):
    paths = generate_videos(tmp_path, num_videos=2, frames=10, size=48, fps=8, seed=4,
                            csv_name="list.csv")
    assert [p.name for p in paths] == ["video_00000.mp4", "video_00001.mp4"]
    assert len(list_videos(tmp_path / "list.csv")) == 2
    frames, fps = read_video(paths[0])
    assert frames.shape == (10, 48, 48, 3) and fps == 8
    expected, _ = synthesize_video(seed=4, index=0, frames=10, size=48)
    assert np.abs(frames.astype(np.int16) - expected).mean() < 4  # lossy, but close


def test_synthetic_motion_is_predictable_from_the_past():
    errors_copy, errors_mean = [], []
    for index in range(4):
        video = synthesize_video(seed=0, index=index, frames=24, size=64)[0].astype(np.float32)
        # Predicting frame t+1 by frame t must beat predicting it by the clip's mean frame:
        # consecutive frames are strongly related, yet the video is not static.
        errors_copy.append(np.mean((video[1:] - video[:-1]) ** 2))
        errors_mean.append(np.mean((video[1:] - video.mean(axis=0)) ** 2))
        assert np.mean(np.abs(video[-1] - video[0])) > 1.0
    assert np.mean(errors_copy) < 0.5 * np.mean(errors_mean)
    a = synthesize_video(seed=0, index=0, frames=24, size=64)[0].astype(np.float32)
    correlation = np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]
    assert correlation > 0.9
