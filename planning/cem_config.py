"""The CEM planner's search budget and sampling rules.

`CEMConfig` is plain, validated data (`reference()` and `notebook()` give the V-JEPA 2-AC
budgets); `planning.cem.CEMPlanner` turns one into a search.
"""
from __future__ import annotations

import dataclasses

import numpy as np

_FILLS = ("repeat", "zeros")


def _as_tuple(value, name):
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a sequence of numbers; "
                         f"received {name}={value!r}") from None


@dataclasses.dataclass(frozen=True)
class CEMConfig:
    """Search budget and sampling rules of the CEM planner.

    The defaults are sized for a 2-core CPU (a plan in well under a second with a small world
    model); `reference()` and `notebook()` reproduce the V-JEPA 2-AC budgets.

    Args:
        samples: candidate action sequences per iteration.
        elites: lowest-energy candidates the Gaussian is refitted to (top-k).
        iterations: CEM iterations per plan.
        horizon: planned steps `H`; only the first is executed by MPC. The default 1 is the
            reference planner's (and gave more reach successes than 2 on validation episodes).
        init_std: initial standard deviation, as a fraction of each action dim's half-range
            `(high - low) / 2` (after `clip`), so one value fits actions of any scale.
        min_std: floor on the standard deviation, same units as `init_std`; keeps the search from
            collapsing before the last iteration.
        momentum_mean: `mean <- m * mean + (1 - m) * elite_mean`. 0 is plain CEM.
        momentum_std: the same for the standard deviation.
        l1_radius: if set, each step's action (restricted to `ball_dims`) is projected onto the
            L1 ball of this radius (the reference: 0.075 on the xyz deltas, about 13 cm of travel
            per step at most). The projection is the exact Euclidean one (Duchi et al., 2008),
            not a rescaling: it moves a sample the least distance needed.
        ball_dims: action dims the L1 ball applies to; `None` means all dims.
        clip: per-axis magnitude limit `|a_i| <= clip_i`, a number or one value per action dim,
            intersected with the action bounds (the notebook: 0.05 m on xyz, 0.75 on gripper).
        warm_start: start each plan from the previous plan shifted by one step.
        warm_start_fill: what fills the freed last step: `"repeat"` the previous last action, or
            `"zeros"` (the middle of the bounds, projected into the L1 ball).
        return_best: return the lowest-energy candidate seen instead of the final mean (the
            reference returns the mean, which averages out sampling noise).
        binary_dims: action dims searched as a choice between their two bounds (a gripper
            commanded open/close) instead of a Gaussian. Each sampled candidate is imagined
            twice, with these dims drawn from Bernoulli(p) and with every one of those draws
            flipped (an antithetic pair; at horizon 1 that is simply both values), and keeps the
            better of the two. Pairing compares the two values under the same continuous move,
            so a small but consistent energy preference is not drowned by the spread that
            sampling the other dims adds (on Fetch's grasp: 0.005 against 0.015). `p` is
            refitted to the elites like the mean, and the returned action holds its expectation
            `low + p (high - low)`. Costs twice the rollouts per iteration. `None`: all
            Gaussian, as the reference.
        seed: seed of the planner's noise generator; `None` draws fresh entropy.
        jit_compile: TensorFlow only: XLA-compile the iteration (`None`: backend default).
    """

    samples: int = 64
    elites: int = 10
    iterations: int = 2
    horizon: int = 1
    init_std: float = 0.5
    min_std: float = 0.02
    momentum_mean: float = 0.0
    momentum_std: float = 0.0
    l1_radius: float | None = None
    ball_dims: tuple[int, ...] | None = None
    clip: float | tuple[float, ...] | None = None
    warm_start: bool = True
    warm_start_fill: str = "repeat"
    return_best: bool = False
    binary_dims: tuple[int, ...] | None = None
    seed: int | None = 0
    jit_compile: bool | None = None

    def __post_init__(self):
        for name in ("samples", "elites", "iterations", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; received {name}={value!r}")
        if self.samples < self.elites:
            raise ValueError("samples must be >= elites; "
                             f"received samples={self.samples}, elites={self.elites}")
        if not (np.isfinite(self.init_std) and self.init_std > 0):
            raise ValueError(f"init_std must be > 0; received init_std={self.init_std!r}")
        if not (np.isfinite(self.min_std) and 0 <= self.min_std <= self.init_std):
            raise ValueError("min_std must be in [0, init_std]; "
                             f"received min_std={self.min_std!r}, init_std={self.init_std!r}")
        for name in ("momentum_mean", "momentum_std"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1); received {name}={value!r}")
        if self.l1_radius is not None and not (np.isfinite(self.l1_radius)
                                               and self.l1_radius > 0):
            raise ValueError("l1_radius must be > 0 or None; "
                             f"received l1_radius={self.l1_radius!r}")
        if self.ball_dims is not None:
            dims = tuple(self.ball_dims)
            if (not dims or len(set(dims)) != len(dims)
                    or any(not isinstance(d, (int, np.integer)) or d < 0 for d in dims)):
                raise ValueError("ball_dims must be distinct non-negative ints or None; "
                                 f"received ball_dims={self.ball_dims!r}")
            if self.l1_radius is None:
                raise ValueError("ball_dims needs l1_radius; "
                                 f"received ball_dims={self.ball_dims!r}, l1_radius=None")
            object.__setattr__(self, "ball_dims", tuple(int(d) for d in dims))
        if self.binary_dims is not None:
            try:
                dims = tuple(self.binary_dims)
            except TypeError:
                dims = None
            if (not dims or len(set(dims)) != len(dims)
                    or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0
                           for d in dims)):
                raise ValueError("binary_dims must be distinct non-negative ints or None; "
                                 f"received binary_dims={self.binary_dims!r}")
            dims = tuple(int(d) for d in dims)
            if self.ball_dims is not None and set(dims) & set(self.ball_dims):
                raise ValueError("a dim cannot be both binary and in the L1 ball; received "
                                 f"binary_dims={dims}, ball_dims={self.ball_dims}")
            object.__setattr__(self, "binary_dims", dims)
        clip = _as_tuple(self.clip, "clip")
        if clip is not None:
            values = clip if isinstance(clip, tuple) else (clip,)
            if not values or any(not np.isfinite(v) or v < 0 for v in values):
                raise ValueError(f"clip must be finite and >= 0; received clip={self.clip!r}")
        object.__setattr__(self, "clip", clip)
        if self.warm_start_fill not in _FILLS:
            raise ValueError(f"warm_start_fill must be one of {_FILLS}; "
                             f"received warm_start_fill={self.warm_start_fill!r}")
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, (int, np.integer))):
            raise ValueError(f"seed must be an int or None; received seed={self.seed!r}")

    @classmethod
    def reference(cls, **overrides) -> "CEMConfig":
        """The V-JEPA 2-AC paper's budget: 800 samples, top-10, 10 iterations, horizon 1, each
        step's xyz delta (dims 0-2) in an L1 ball of 0.075."""
        values = dict(samples=800, elites=10, iterations=10, horizon=1, l1_radius=0.075,
                      ball_dims=(0, 1, 2))
        values.update(overrides)
        return cls(**values)

    @classmethod
    def notebook(cls, action_dim: int = 7, **overrides) -> "CEMConfig":
        """The public V-JEPA 2-AC notebook's budget: 400 samples, top-10, 10 iterations,
        horizon 2, momentum 0.15 on mean and std, returns the mean; per-axis clip of 0.05 m on
        xyz and 0.75 on the gripper.

        Args:
            action_dim: 7 (xyz, Euler rotation held at 0, gripper: the DROID layout) or 4 (xyz,
                gripper).
        """
        if action_dim == 7:
            clip = (0.05, 0.05, 0.05, 0.0, 0.0, 0.0, 0.75)
        elif action_dim == 4:
            clip = (0.05, 0.05, 0.05, 0.75)
        else:
            raise ValueError("notebook() knows action_dim 7 or 4; "
                             f"received action_dim={action_dim}")
        values = dict(samples=400, elites=10, iterations=10, horizon=2, momentum_mean=0.15,
                      momentum_std=0.15, clip=clip)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes) -> "CEMConfig":
        """Returns a validated copy with `changes` applied."""
        return dataclasses.replace(self, **changes)
