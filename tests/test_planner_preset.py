"""PlannerPreset: a frozen value that round-trips through a dict and takes text overrides."""
import json

import pytest

from planning import CEMConfig, EnergyConfig, GripperLatch, PlannerPreset, PresetError


def test_a_preset_round_trips_through_json():
    preset = PlannerPreset(
        cem=CEMConfig(iterations=4, clip=(1.0, 1.0, 1.0, 1.0), binary_dims=(3,),
                      l1_radius=1.5, ball_dims=(0, 1, 2)),
        energy=EnergyConfig(kind="l2", step_weights=(0.5, 1.0)), goals=("pregrasp", "goal"),
        gripper=GripperLatch(threshold=0.6, initial="high", at_subgoal_start=True),
        stop_energy=0.04, early_advance=True, description="x")
    data = json.loads(json.dumps(preset.to_dict()))
    assert PlannerPreset.from_dict(data) == preset
    assert PlannerPreset.from_dict(PlannerPreset().to_dict()) == PlannerPreset()


def test_overrides_change_one_field_each_and_leave_the_original():
    base = PlannerPreset()
    changed = base.override(["cem.samples=128", "cem.clip=1,1,1,0.5", "goals=pregrasp,goal",
                             "gripper.threshold=0.4", "stop_energy=0", "energy.kind=l2",
                             "early_advance=true"])
    assert changed.cem.samples == 128 and changed.cem.clip == (1.0, 1.0, 1.0, 0.5)
    assert changed.goals == ("pregrasp", "goal") and changed.early_advance is True
    assert changed.gripper == GripperLatch(threshold=0.4)  # started from the defaults
    assert changed.stop_energy is None  # 0 turns the stop rule off
    assert changed.energy.kind == "l2"
    assert base == PlannerPreset() and base.cem.samples == 64
    assert changed.override("gripper=off").gripper is None
    assert base.override("stop_energy=0.05").stop_threshold(0.2) == 0.05
    assert base.stop_threshold(0.2) == 0.2 and base.stop_threshold(None) is None


@pytest.mark.parametrize("assignment, message", [
    ("samples", "an override is field=value; received 'samples'"),
    ("cem.sample=3", "unknown field 'sample' of cem"),
    ("horizon=3", "unknown preset field 'horizon'"),
    ("goals.first=goal", "goals has no fields"),
    ("cem=null", None),
    ("cem={}", "cem is set field by field"),
    ("cem.samples=4", "samples must be >= elites"),
    ("goals=goal,pregrasp", "ending with goal"),
    ("stop_energy=-1", "stop_energy must be 'model', a number >= 0 or None"),
    ("context_frames=0", "context_frames must be a positive integer"),
    ("early_advance=maybe", "early_advance must be true or false"),
])
def test_bad_overrides_name_the_assignment(assignment, message):
    with pytest.raises(PresetError) as error:
        PlannerPreset().override(assignment)
    assert str(error.value).startswith(f"--set {assignment}:")
    if message:
        assert message in str(error.value)


def test_unknown_keys_in_a_saved_preset_raise():
    data = PlannerPreset().to_dict()
    with pytest.raises(PresetError, match="unknown preset key.* horizon"):
        PlannerPreset.from_dict({**data, "horizon": 2})
    with pytest.raises(PresetError, match="unknown cem key.* sample"):
        PlannerPreset.from_dict({**data, "cem": {"sample": 3}})


def test_the_reference_preset_states_the_papers_planner_in_the_given_units():
    droid = PlannerPreset.reference()
    assert (droid.cem.samples, droid.cem.iterations, droid.cem.elites, droid.cem.horizon) == (
        800, 10, 10, 1)
    assert droid.cem.l1_radius == 0.075 and droid.cem.ball_dims == (0, 1, 2)
    assert droid.gripper is None and droid.stop_energy is None
    fetch = PlannerPreset.reference(metres_per_unit=0.05)
    assert fetch.cem.l1_radius == pytest.approx(1.5)
