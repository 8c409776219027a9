"""Planner presets: everything that decides how a goal is pursued, as one frozen value.

A `PlannerPreset` bundles the CEM search budget, the energy, the sub-goal schedule, the gripper
rule and the stop rule. It is data: it round-trips through a plain dict (`to_dict` /
`from_dict`, what a results folder records), and `override("cem.samples=128")` makes a changed
copy from the text a command line receives. Named presets per task live with the tasks they were
tuned for (the application layer); this module knows no task and no environment.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Iterable

from planning.cem import CEMConfig
from planning.energy import EnergyConfig
from planning.mpc import GripperLatch

_NESTED = {"cem": CEMConfig, "energy": EnergyConfig, "gripper": GripperLatch}
_STOP_FROM_MODEL = "model"


class PresetError(ValueError):
    """A preset value or an override that cannot be applied; the message names it."""


@dataclasses.dataclass(frozen=True)
class PlannerPreset:
    """How the planner pursues a task's goal images.

    Args:
        cem: the CEM search (`CEMConfig`), in the env's action units (Fetch: xyz in units of
            0.05 m per step, gripper in [-1, 1]).
        energy: how imagined latents are scored against a goal (`EnergyConfig`).
        goals: the goal images pursued in order, the last being the task's final `"goal"`
            (e.g. `("pregrasp", "goal")`); `None`: every goal image the task defines.
        early_advance: let the stop rule end an intermediate sub-goal before its budget
            (`False`: fixed sub-goal budgets, as the reference).
        gripper: a `GripperLatch` executing the gripper as open/close, or `None` (the planned
            value is executed as is, as the reference does).
        stop_energy: the stop rule, a latent distance to the final goal at or below which the
            episode ends: `"model"` (the world model's calibrated value, if it has one), a
            number > 0, or `None` (run every episode to its budget).
        context_frames: observed frames the world model is given as context (the reference: 1).
        description: one sentence on what the preset is for (recorded, not used).
    """

    cem: CEMConfig = CEMConfig()
    energy: EnergyConfig = EnergyConfig()
    goals: tuple[str, ...] | None = None
    early_advance: bool = False
    gripper: GripperLatch | None = None
    stop_energy: float | str | None = _STOP_FROM_MODEL
    context_frames: int = 1
    description: str = ""

    def __post_init__(self):
        for name, kind in _NESTED.items():
            value = getattr(self, name)
            if not isinstance(value, kind) and not (name == "gripper" and value is None):
                raise PresetError(f"{name} must be a {kind.__name__}; received {name}={value!r}")
        if self.goals is not None:
            goals = (self.goals.split(",") if isinstance(self.goals, str) else self.goals)
            goals = tuple(str(g).strip() for g in goals)
            if not goals or goals[-1] != "goal" or len(set(goals)) != len(goals):
                raise PresetError("goals must be distinct goal-image names ending with goal; "
                                  f"received goals={','.join(goals)}")
            object.__setattr__(self, "goals", goals)
        stop = self.stop_energy
        if stop is not None and stop != _STOP_FROM_MODEL:
            if isinstance(stop, bool) or not isinstance(stop, (int, float)) or not stop >= 0 \
                    or stop == float("inf"):
                raise PresetError("stop_energy must be 'model', a number >= 0 or None; "
                                  f"received stop_energy={stop!r}")
            object.__setattr__(self, "stop_energy", float(stop) if stop > 0 else None)
        if isinstance(self.context_frames, bool) or not isinstance(self.context_frames, int) \
                or self.context_frames < 1:
            raise PresetError("context_frames must be a positive integer; received "
                              f"context_frames={self.context_frames!r}")
        if not isinstance(self.early_advance, bool):
            raise PresetError("early_advance must be true or false; received "
                              f"early_advance={self.early_advance!r}")

    @classmethod
    def reference(cls, metres_per_unit: float = 1.0, **changes) -> "PlannerPreset":
        """The V-JEPA 2-AC paper's planner: CEM with 800 samples, 10 iterations, top-10,
        horizon 1, each step's xyz move in an L1 ball of 0.075 m; no gripper rule, no stop
        rule. `metres_per_unit`: metres per action unit on the xyz dims (1 for DROID's
        metre-valued actions, as a converted V-JEPA 2-AC model plans; 0.05 for Fetch)."""
        values = dict(cem=CEMConfig.reference(l1_radius=0.075 / metres_per_unit),
                      stop_energy=None, description="the V-JEPA 2-AC paper's planner: "
                      "800 x 10 x H1, L1 ball 0.075 m")
        values.update(changes)
        return cls(**values)

    # ------------------------------------------------------------------------ as data

    def to_dict(self) -> dict:
        """A JSON-safe dict of every field (nested configs as dicts, tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "PlannerPreset":
        """The preset `to_dict` wrote; unknown keys raise `PresetError` naming them."""
        if not isinstance(data, dict):
            raise PresetError(f"a preset must be a dict; received {type(data).__name__}")
        _check_keys(cls, data, "preset")
        values = {}
        for name, value in data.items():
            kind = _NESTED.get(name)
            if kind is not None and value is not None:
                if not isinstance(value, dict):
                    raise PresetError(f"{name} must be a dict of {kind.__name__} fields; "
                                      f"received {name}={value!r}")
                _check_keys(kind, value, name)
                value = _build(kind, {k: _tuples(v) for k, v in value.items()}, name)
            values[name] = _tuples(value)
        return _build(cls, values, "preset")

    def replace(self, **changes) -> "PlannerPreset":
        """A validated copy with `changes` applied."""
        return _build(type(self), {**_fields(self), **changes}, "preset")

    def override(self, assignments: Iterable[str] | str) -> "PlannerPreset":
        """A copy with `field=value` assignments applied, in order.

        A field is a preset field (`goals`, `stop_energy`, ...) or a nested one (`cem.samples`,
        `gripper.threshold`). Values are JSON (`128`, `0.5`, `true`, `null`, `[0, 1, 2]`) or
        plain text; comma-separated text gives a list (`goals=pregrasp,goal`); `off` and
        `none` mean `null`. `gripper.<field>=...` on a preset without a gripper rule starts
        from `GripperLatch()`'s defaults.

        Raises:
            PresetError: naming the assignment and what is wrong with it.
        """
        preset = self
        for text in [assignments] if isinstance(assignments, str) else assignments:
            field, sep, raw = str(text).partition("=")
            field = field.strip()
            head, _, tail = field.partition(".")
            try:
                if not sep or not field:
                    raise PresetError(f"an override is field=value; received {text!r}")
                value = _parse_value(raw)
                if tail:
                    kind = _NESTED.get(head)
                    if kind is None:
                        raise PresetError(f"{head} has no fields; nested fields are under "
                                          f"{', '.join(_NESTED)}")
                    inner = getattr(preset, head) or kind()
                    if tail not in {f.name for f in dataclasses.fields(kind)}:
                        raise PresetError(f"unknown field {tail!r} of {head}; expected one of "
                                          f"{', '.join(f.name for f in dataclasses.fields(kind))}")
                    value = _build(kind, {**_fields(inner), tail: value}, head)
                    field = head
                elif field not in {f.name for f in dataclasses.fields(PlannerPreset)}:
                    raise PresetError(f"unknown preset field {field!r}; expected one of "
                                      f"{', '.join(f.name for f in dataclasses.fields(PlannerPreset))}"
                                      f" or {', '.join(k + '.<field>' for k in _NESTED)}")
                elif field in _NESTED and value is not None:
                    raise PresetError(f"{field} is set field by field ({field}.<field>=...)"
                                      + (" or turned off (gripper=off)" if field == "gripper"
                                         else ""))
                preset = preset.replace(**{field: value})
            except PresetError as error:
                raise PresetError(f"--set {text}: {error}") from None
        return preset

    def stop_threshold(self, model_stop_energy: float | None) -> float | None:
        """The stop rule's threshold, given the world model's calibrated value (or `None`)."""
        if self.stop_energy == _STOP_FROM_MODEL:
            return None if model_stop_energy is None else float(model_stop_energy)
        return self.stop_energy


def _fields(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _check_keys(kind, data: dict, what: str) -> None:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PresetError(f"unknown {what} key(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(sorted(known))}")


def _build(kind, values: dict, what: str):
    hints = typing.get_type_hints(kind)
    for name, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool) and "float" in str(
                hints.get(name, "")) and "int" not in str(hints.get(name, "")):
            values[name] = float(value)
    try:
        return kind(**values)
    except PresetError:
        raise
    except (TypeError, ValueError) as error:
        raise PresetError(f"{what}: {error}") from None


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _parse_value(raw: str) -> Any:
    text = raw.strip()
    if text.lower() in ("off", "none", "null"):
        return None
    try:
        return _tuples(json.loads(text))
    except json.JSONDecodeError:
        pass
    if "," in text:
        return tuple(_parse_value(part) for part in text.split(","))
    return text
