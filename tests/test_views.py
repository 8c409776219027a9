"""Camera views (`envs.views`), labelled probe frames (`envs.probe_data`) and the state probe."""
import numpy as np
import pytest

from tests.views_helpers import probe_data_report, view_report
from tests.envs_helpers import run_isolated
from vjepa2.errors import UsageError


@pytest.fixture(scope="module")
def report():
    return run_isolated(view_report)


def test_each_view_renders_its_frame_shape_without_touching_the_state(report):
    for view, shapes in report["shapes"].items():
        expected = [64, 128, 3] if view == "scene+wrist" else [64, 64, 3]
        assert shapes == [expected] * 3, view  # observation, render(), goal image
        assert report["state_unchanged"][view], view


def test_close_and_wrist_views_make_the_grasp_bigger(report):
    c = report["counts"]
    scene_object = c["scene_object_0"] + c["scene_object_1"]
    assert scene_object > 0
    assert c["close_object_0"] + c["close_object_1"] >= 2 * scene_object
    # At 64 px the scene camera shows the fingers in a few pixels at most (here none: the
    # gripper hides them); they fill a large part of the wrist frame.
    assert c["scene_fingers_0"] + c["scene_fingers_1"] <= 10
    assert min(c["wrist_fingers_0"], c["wrist_fingers_1"]) >= 100


def test_wrist_camera_rides_with_the_gripper(report):
    c = report["counts"]
    # The gripper moved 0.16 m and rose 0.08 m: its fingers stay where they were in the wrist
    # frame, while the scene camera sees them elsewhere.
    assert report["wrist_finger_iou"] > 0.8
    assert c["wrist_fingers_1"] == pytest.approx(c["wrist_fingers_0"], rel=0.1)


def test_unknown_view_is_a_one_line_error():
    from envs import views

    with pytest.raises(UsageError, match="unknown view 'top'"):
        views.check_view("top")


def test_probe_data_is_seeded_and_labelled(tmp_path):
    r = run_isolated(probe_data_report, str(tmp_path / "probe.npz"))
    assert r["same"]  # same seeds, one or two workers: identical frames and labels
    assert r["episodes"] == [11, 12]
    frames = r["meta"]["frames"]
    assert frames == 2 * 11  # 51 observations, every 5th
    assert r["shapes"]["frames_scene"] == [frames, 32, 32, 3]
    assert r["shapes"]["frames_wrist"] == [frames, 32, 32, 3]
    assert r["shapes"]["object_xyz"] == [frames, 3]
    # Held between both fingers: the fingers are never open (the probe's open threshold).
    assert r["held_gaps"] and max(r["held_gaps"]) < 0.075


def test_probe_data_refuses_bad_arguments(tmp_path):
    from envs.probe_data import make_probe_data

    with pytest.raises(UsageError, match="unknown camera view 'scene\\+wrist'"):
        make_probe_data(str(tmp_path / "a.npz"), "wide", 1, 0, views=("scene+wrist",))
    with pytest.raises(UsageError, match="must name a .npz file; received 'a.bin'"):
        make_probe_data("a.bin", "wide", 1, 0)
