"""The fault campaign (scripts/fault_campaign.py) as tests.

The quick rows (in-process checks and small commands, seconds each) run in the default test
run; the full campaign (kills of real training, collection and evaluation runs, full disks,
corrupt files, bad arguments through the command) runs with `pytest -m faults`.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import fault_campaign  # noqa: E402


def _check(row):
    if row.skipped:
        pytest.skip(row.skipped)
    assert row.ok, f"{row.fault}: expected {row.expected}; observed {row.observed}"


@pytest.fixture(scope="module")
def quick_campaign(tmp_path_factory):
    return fault_campaign.Campaign(tmp_path_factory.mktemp("quick-campaign"))


def test_planner_refuses_out_of_range_float_images_and_non_finite_actions(quick_campaign):
    _check(fault_campaign.fault_quick.planner_inputs(quick_campaign))


def test_a_finite_but_diverged_loss_stops_the_run_and_keeps_the_checkpoint_before_it(
        quick_campaign):
    _check(fault_campaign.fault_quick.divergence_guard(quick_campaign))


def test_an_output_path_that_is_a_file_or_another_commands_folder_is_one_line_exit_2(
        quick_campaign):
    _check(fault_campaign.fault_quick.out_checks_in_process(quick_campaign))


def test_temp_files_of_killed_writes_are_removed_when_the_folder_is_next_opened(quick_campaign):
    _check(fault_campaign.fault_quick.killed_write_temps_removed(quick_campaign))


def test_a_torn_last_metrics_line_is_dropped_on_resume(quick_campaign):
    _check(fault_campaign.fault_quick.torn_metrics_line(quick_campaign))


def test_a_worker_ends_when_its_parent_is_killed(quick_campaign):
    _check(fault_campaign.fault_quick.worker_dies_with_parent(quick_campaign))


def test_a_full_disk_is_one_line_naming_the_path_and_the_space_needed(quick_campaign):
    _check(fault_campaign.fault_quick.disk_full_make_videos(quick_campaign))


def test_full_disk_errors_of_h5py_and_tensorflow_are_recognised(quick_campaign):
    _check(fault_campaign.fault_quick.disk_full_in_process(quick_campaign))


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_no_temp_folder(
        tmp_path, monkeypatch):
    import errno

    import keras

    from vjepa2.errors import DiskFullError
    from vjepa2.train.checkpoint import CheckpointManager

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.SGD()
    optimizer.build(model.trainable_variables)
    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save(model, optimizer, 2, {})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(DiskFullError, match="no space left on device writing .*ckpt-00000004 "
                                            r"\(about .* needed"):
        manager.save(model, optimizer, 4, {})
    assert manager.latest_state()["step"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-00000002",
                                                                           "latest"]


def test_frames_far_larger_than_the_clips_are_converted_at_a_reduced_size(tmp_path):
    from vjepa2.data.video_clips import ClipConfig, ClipSampler
    from vjepa2.data.video_decode import decode_size
    from vjepa2.data.video_io import write_video
    from vjepa2.data.video_sources import VideoStats

    assert decode_size(3840, 2160, 128) == (910, 512)
    assert decode_size(640, 480, 128) is None  # small videos keep their clips exactly
    frames = np.random.default_rng(0).integers(0, 255, (8, 360, 640, 3), dtype=np.uint8)
    path = write_video(tmp_path / "wide.mp4", frames, fps=8)
    config = ClipConfig(frames=4, fps=8.0, resolution=32, training=False)
    clip, _ = ClipSampler([(str(path), None)], config, VideoStats()).clip(0)
    assert clip.shape == (4, 128, 128, 3)  # the centre crop of a 228x128 conversion


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return fault_campaign.Campaign(tmp_path_factory.mktemp("fault-campaign"))


@pytest.mark.faults
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("row", fault_campaign.FULL, ids=lambda row: row.__name__)
def test_the_full_fault_campaign_row_passes(row, campaign):
    _check(row(campaign))
