"""Scene variations: named sets of value ranges sampled at every reset.

A variation set says what the camera may see: the object's colour, size and shape, the table's
colour and finish, the light, the camera pose and a distractor object.

- `train`: a narrow set (one table finish, a +-8 degree camera), the scenes of the first logs.
- `wide`: domain randomization for training data. Every range of `heldout` lies *between* values
  of `wide` (camera poses on both sides of the held-out ones, table hues around the held-out blue,
  plain and speckled tables, never a checkered one) but no interval or category is shared, so a model
  trained on `wide` interpolates to `heldout` without ever seeing one of its values.
- `heldout`: the evaluation scenes.

`train` and `wide` are each disjoint from `heldout` parameter by parameter (no interval overlaps,
no shared category), so an agent evaluated on `heldout` never saw any of its values during
training. Sampling uses the generator passed in (the env's `self.np_random`), so a seed fixes the
scene.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, fields

import numpy as np

from vjepa2.errors import UsageError

Intervals = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class VariationSet:
    """Value ranges of one scene-variation set.

    Continuous parameters are unions of closed intervals (sampled uniformly: an interval is
    chosen in proportion to its length); categorical parameters are tuples of names.

    Args:
        name: the set's name (`"train"`, `"wide"` or `"heldout"`).
        object_shape: object shapes among `box`, `cylinder`, `star_prism`.
        object_half_size: object half extent in metres (half width and half height).
        object_hue, object_saturation, object_value: object colour in HSV.
        table_finish: `plain`, `checker` (a checkerboard texture) or `speckle` (random dots).
        table_hue, table_saturation, table_value: table colour in HSV.
        light_diffuse: diffuse intensity of the main light.
        light_tilt_deg: tilt of the main light from vertical, degrees.
        camera_azimuth_deg: camera azimuth offset around the workspace, degrees (0 = a side
            view from the table's +y edge, the arm entering from the left).
        camera_elevation_deg: camera elevation (looking down), degrees.
        camera_distance: camera distance to its look-at point, metres.
        distractor_shape: visual distractor shape among `sphere`, `box`, `capsule`, `ellipsoid`.
        distractor_hue: distractor hue (saturation 0.7, value 0.8).
    """

    name: str
    object_shape: tuple[str, ...]
    object_half_size: Intervals
    object_hue: Intervals
    object_saturation: Intervals
    object_value: Intervals
    table_finish: tuple[str, ...]
    table_hue: Intervals
    table_saturation: Intervals
    table_value: Intervals
    light_diffuse: Intervals
    light_tilt_deg: Intervals
    camera_azimuth_deg: Intervals
    camera_elevation_deg: Intervals
    camera_distance: Intervals
    distractor_shape: tuple[str, ...]
    distractor_hue: Intervals

    def parameter_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if f.name != "name")

    def sample(self, rng: np.random.Generator) -> dict:
        """Draws one scene: a dict of plain Python values (JSON-serializable)."""
        values = {"set": self.name}
        for key in self.parameter_names():
            domain = getattr(self, key)
            if isinstance(domain[0], str):
                values[key] = str(domain[int(rng.integers(len(domain)))])
            else:
                values[key] = _sample_intervals(domain, rng)
        return values

    def contains(self, key: str, value) -> bool:
        """Whether `value` lies in this set's domain for parameter `key`."""
        domain = getattr(self, key)
        if isinstance(domain[0], str):
            return value in domain
        return any(lo <= value <= hi for lo, hi in domain)


def _sample_intervals(intervals: Intervals, rng: np.random.Generator) -> float:
    lengths = np.array([hi - lo for lo, hi in intervals], dtype=np.float64)
    index = int(rng.choice(len(intervals), p=lengths / lengths.sum())) if len(intervals) > 1 else 0
    lo, hi = intervals[index]
    return float(rng.uniform(lo, hi))


def hsv_to_rgba(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array([*colorsys.hsv_to_rgb(hue % 1.0, saturation, value), 1.0])


TRAIN = VariationSet(
    name="train",
    object_shape=("box", "cylinder"),
    object_half_size=((0.020, 0.025),),
    # Warm and green hues; held-out objects are blue to purple.
    object_hue=((0.0, 0.40),),
    object_saturation=((0.65, 0.95),),
    object_value=((0.65, 0.95),),
    table_finish=("plain",),
    table_hue=((0.05, 0.15),),  # wood-like
    table_saturation=((0.05, 0.30),),
    table_value=((0.80, 0.95),),
    light_diffuse=((0.70, 0.90),),
    light_tilt_deg=((0.0, 15.0),),
    camera_azimuth_deg=((-8.0, 8.0),),
    camera_elevation_deg=((50.0, 60.0),),
    camera_distance=((0.78, 0.84),),
    distractor_shape=("sphere", "box"),
    distractor_hue=((0.45, 0.60),),
)

HELDOUT = VariationSet(
    name="heldout",
    object_shape=("star_prism",),
    object_half_size=((0.0255, 0.028),),
    object_hue=((0.55, 0.85),),
    object_saturation=((0.50, 0.64),),
    object_value=((0.50, 0.64),),
    table_finish=("checker",),
    table_hue=((0.50, 0.70),),  # cool blue-grey
    table_saturation=((0.31, 0.45),),
    table_value=((0.60, 0.79),),
    light_diffuse=((0.50, 0.69),),
    light_tilt_deg=((16.0, 30.0),),
    camera_azimuth_deg=((-16.0, -9.0), (9.0, 16.0)),
    camera_elevation_deg=((43.0, 49.0), (61.0, 67.0)),
    camera_distance=((0.86, 0.91),),
    distractor_shape=("capsule", "ellipsoid"),
    distractor_hue=((0.0, 0.10), (0.90, 1.0)),
)

WIDE = VariationSet(
    name="wide",
    object_shape=("box", "cylinder"),
    object_half_size=((0.018, 0.025), (0.029, 0.032)),
    object_hue=((0.0, 0.54), (0.86, 1.0)),
    object_saturation=((0.35, 0.49), (0.65, 0.95)),
    object_value=((0.35, 0.49), (0.65, 0.95)),
    table_finish=("plain", "speckle"),
    table_hue=((0.0, 0.49), (0.71, 1.0)),
    table_saturation=((0.05, 0.30), (0.46, 0.60)),
    table_value=((0.45, 0.59), (0.80, 0.95)),
    light_diffuse=((0.35, 0.49), (0.70, 0.95)),
    light_tilt_deg=((0.0, 15.0), (31.0, 40.0)),
    camera_azimuth_deg=((-24.0, -17.0), (-8.0, 8.0), (17.0, 24.0)),
    camera_elevation_deg=((36.0, 42.0), (50.0, 60.0), (68.0, 72.0)),
    camera_distance=((0.74, 0.85), (0.92, 0.98)),
    distractor_shape=("sphere", "box"),
    distractor_hue=((0.15, 0.89),),
)

VARIATION_SETS: dict[str, VariationSet] = {"train": TRAIN, "wide": WIDE, "heldout": HELDOUT}


def get_variation_set(name: str) -> VariationSet:
    """Returns the variation set `name`; raises `UsageError` naming the value otherwise."""
    if name not in VARIATION_SETS:
        raise UsageError(
            f"unknown variation {name!r}; expected one of {', '.join(VARIATION_SETS)}"
        )
    return VARIATION_SETS[name]
