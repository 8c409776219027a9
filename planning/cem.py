"""Cross-entropy method (CEM) over action sequences in a world model's latent space.

Each iteration samples `samples` action sequences around a Gaussian mean, keeps them inside the
action bounds (and optionally a per-step L1 ball), imagines their outcomes with the world model's
`rollout`, scores the imagined latents against the goal latent, and refits the Gaussian to the
`elites` lowest-energy sequences. One iteration is one compiled, batched call: there is no Python
loop over samples.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
from keras import ops

from planning._compile import compile_function
from planning.energy import EnergyConfig, make_energy

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


@dataclasses.dataclass(frozen=True)
class PlanResult:
    """The outcome of one plan.

    Attributes:
        actions: `(H, A)` float32 numpy: the planned action sequence.
        first_action: `(A,)`: the action to execute now (`actions[0]`).
        energy: energy of `actions` under the world model (one extra batch-1 rollout when the
            mean is returned).
        energy_trace: `{"best": (I,), "elite_mean": (I,)}`: per CEM iteration, the lowest energy
            and the mean energy of the elites.
        timings: seconds: `encode` (0 when latents were given), `iterations` (sum),
            `per_iteration` (tuple), `evaluate`, `total`. The first plan of a new shape includes
            tracing/compilation.
        goal_index: which sub-goal the plan aimed at (0 for a single goal).
        observed_energy: the latest context frame's latent distance to the goal (set by
            `Planner`; `None` from `CEMPlanner.plan`).
        candidates: `(I, samples, H, A)` every sampled candidate, only when asked for.
    """

    actions: np.ndarray
    first_action: np.ndarray
    energy: float
    energy_trace: dict[str, np.ndarray]
    timings: dict[str, Any]
    goal_index: int = 0
    observed_energy: float | None = None
    candidates: np.ndarray | None = None


def project_l1_ball(x, radius, mask=None):
    """Euclidean projection of each vector along the last axis onto the L1 ball of `radius`.

    Exact (Duchi et al., 2008: sort, find the soft-threshold, shrink), so points already inside
    are unchanged and points outside move the least distance needed. Dims where `mask` is 0 are
    left untouched and do not count towards the norm.

    Args:
        x: `(..., A)` tensor.
        radius: positive float.
        mask: optional `(A,)` 0/1 tensor of the dims the ball applies to.

    Returns:
        A tensor shaped like `x`.
    """
    v = x if mask is None else x * mask
    a = ops.abs(v)
    norm = ops.sum(a, axis=-1, keepdims=True)
    u = ops.flip(ops.sort(a, axis=-1), axis=-1)
    cssv = ops.cumsum(u, axis=-1)
    dim = a.shape[-1]
    j = ops.cast(ops.arange(1, dim + 1), a.dtype)
    # For descending u, the condition holds on a prefix; its length rho fixes the threshold.
    positive = ops.cast(u - (cssv - radius) / j > 0, "int32")
    rho = ops.maximum(ops.sum(positive, axis=-1, keepdims=True), 1)
    theta = (ops.take_along_axis(cssv, rho - 1, axis=-1) - radius) / ops.cast(rho, a.dtype)
    shrunk = ops.sign(v) * ops.maximum(a - theta, 0.0)
    projected = ops.where(norm > radius, shrunk, v)
    if mask is None:
        return projected
    return ops.where(mask > 0, projected, x)


def sample_candidates(mean, std, noise, low, high, l1_radius=None, ball_mask=None):
    """Gaussian candidates kept feasible: clipped to the bounds, then projected into the L1 ball.

    Clip-then-project stays inside both sets when the bounds contain 0 on the ball's dims (the
    projection only shrinks magnitudes); `CEMPlanner` checks that.

    Args:
        mean: `(H, A)`; std: `(H, A)`; noise: `(B, H, A)` standard normal.
        low, high: `(A,)` bounds.
        l1_radius: optional per-step L1 radius; ball_mask: optional `(A,)` 0/1 dims mask.

    Returns:
        `(B, H, A)` candidates.
    """
    cand = mean[None] + std[None] * noise
    cand = ops.minimum(ops.maximum(cand, low), high)
    if l1_radius is not None:
        cand = project_l1_ball(cand, l1_radius, ball_mask)
    return cand


class CEMPlanner:
    """Plans action sequences with CEM in a world model's latent space.

    Args:
        world_model: an object following `planning.WorldModel` (`rollout` must be traceable).
        action_low: `(A,)` lower action bounds (a scalar broadcasts when the world model has
            `action_dim`).
        action_high: `(A,)` upper action bounds.
        config: a `CEMConfig`; defaults to `CEMConfig()`.
        energy: an `EnergyConfig`, or a callable `energy(z_pred (B, H, N, D), goal (1, N, D))
            -> (B,)` written in `keras.ops`.

    Randomness: a numpy `Generator` seeded with `config.seed` is created here and by
    `reset(seed=...)`; each plan draws its noise `(iterations, samples, H, A)` from it and passes
    it into the compiled iteration. Two planners with the same seed given the same calls return
    the same plans; the noise is the same on every backend and never depends on tracing.

    Example:

    >>> planner = CEMPlanner(model, [-1, -1], [1, 1], CEMConfig(horizon=1))
    >>> result = planner.plan(z_context, states, goal_z)
    >>> result.first_action   # (A,)
    """

    def __init__(self, world_model, action_low, action_high, config: CEMConfig | None = None,
                 energy: EnergyConfig | Callable | None = None):
        config = CEMConfig() if config is None else config
        if not isinstance(config, CEMConfig):
            raise TypeError(f"config must be a CEMConfig; received {type(config).__name__}")
        if not callable(getattr(world_model, "rollout", None)):
            raise TypeError("world_model must have a callable rollout(); "
                            f"received {type(world_model).__name__}")
        self.world_model = world_model
        self.config = config
        low, high = self._check_bounds(action_low, action_high)
        self.action_dim = low.shape[0]
        self.action_low, self.action_high = low, high
        # Effective bounds: action bounds intersected with the per-axis clip.
        if config.clip is not None:
            clip = np.asarray(config.clip, "float32")
            if clip.ndim == 1 and clip.shape[0] != self.action_dim:
                raise ValueError(f"clip must have one value per action dim; received "
                                 f"{clip.shape[0]} values for action_dim={self.action_dim}")
            clip = np.broadcast_to(clip, low.shape)
            low, high = np.maximum(low, -clip), np.minimum(high, clip)
            if np.any(low > high):
                raise ValueError("clip leaves no feasible action: bounds and clip do not overlap; "
                                 f"received low={low.tolist()}, high={high.tolist()}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("action bounds must be finite (set clip for unbounded spaces); "
                             f"received low={low.tolist()}, high={high.tolist()}")
        self._low, self._high = low.astype("float32"), high.astype("float32")
        self._mask = None
        if config.l1_radius is not None:
            dims = range(self.action_dim) if config.ball_dims is None else config.ball_dims
            if max(dims) >= self.action_dim:
                raise ValueError(f"ball_dims must be < action_dim={self.action_dim}; "
                                 f"received ball_dims={config.ball_dims}")
            mask = np.zeros(self.action_dim, "float32")
            mask[list(dims)] = 1.0
            on = mask > 0
            if np.any(self._low[on] > 0) or np.any(self._high[on] < 0):
                raise ValueError("the L1 ball needs bounds containing 0 on its dims; "
                                 f"received low={self._low.tolist()}, high={self._high.tolist()}")
            self._mask = mask
        self._binary = None
        if config.binary_dims is not None:
            if max(config.binary_dims) >= self.action_dim:
                raise ValueError(f"binary_dims must be < action_dim={self.action_dim}; "
                                 f"received binary_dims={config.binary_dims}")
            if self._mask is not None and np.any(self._mask[list(config.binary_dims)] > 0):
                raise ValueError("a dim cannot be both binary and in the L1 ball (ball_dims "
                                 f"None covers all); received binary_dims={config.binary_dims}")
            binary = np.zeros(self.action_dim, "float32")
            binary[list(config.binary_dims)] = 1.0
            self._binary = binary
        half = (self._high - self._low) / 2.0
        mid = ((self._high + self._low) / 2.0).astype("float32")
        if self._mask is not None:
            # Start feasible: the returned mean mixes feasible points, so it stays feasible too.
            mid = ops.convert_to_numpy(project_l1_ball(
                ops.convert_to_tensor(mid[None]), config.l1_radius,
                ops.convert_to_tensor(self._mask)))[0]
        self._mid = np.asarray(mid, "float32")
        self._init_std = np.broadcast_to(config.init_std * half, (config.horizon, self.action_dim))
        self._min_std = (config.min_std * half).astype("float32")

        if isinstance(energy, EnergyConfig) or energy is None:
            self.energy_config = EnergyConfig() if energy is None else energy
            self._energy = make_energy(self.energy_config, config.horizon)
        elif callable(energy):
            self.energy_config = None
            self._energy = energy
        else:
            raise TypeError("energy must be an EnergyConfig or a callable; "
                            f"received {type(energy).__name__}")

        self._step = compile_function(self._iteration, config.jit_compile)
        self._evaluate = compile_function(self._evaluate_actions, config.jit_compile)
        self._rng = np.random.default_rng(config.seed)
        self._previous = None

    def _check_bounds(self, action_low, action_high):
        dim = getattr(self.world_model, "action_dim", None)
        low = np.asarray(action_low, dtype="float64")
        high = np.asarray(action_high, dtype="float64")
        if low.ndim == 0 and high.ndim == 0:
            if dim is None:
                raise ValueError("scalar action bounds need world_model.action_dim; "
                                 f"received action_low={action_low!r}")
            low, high = np.full(dim, low), np.full(dim, high)
        low, high = np.broadcast_arrays(low, high)
        if low.ndim != 1 or low.shape[0] == 0:
            raise ValueError(f"action bounds must be 1-D (A,); received shape {low.shape}")
        if dim is not None and low.shape[0] != dim:
            raise ValueError(f"action bounds have {low.shape[0]} dims but the world model's "
                             f"action_dim is {dim}")
        if np.any(np.isnan(low)) or np.any(np.isnan(high)) or np.any(low > high):
            raise ValueError("action bounds must satisfy low <= high; "
                             f"received low={low.tolist()}, high={high.tolist()}")
        return low.astype("float32"), high.astype("float32")

    # -- compiled pieces -------------------------------------------------------------------

    def _scores(self, actions, z_context, states, context_actions, goal):
        z_pred = self.world_model.rollout(z_context, states, actions, context_actions)
        energy = self._energy(z_pred, goal)
        # A NaN energy must never win the top-k.
        return ops.where(ops.isnan(energy), ops.full_like(energy, np.inf), energy)

    def _iteration(self, mean, std, noise, z_context, states, context_actions, goal):
        cfg = self.config
        low = ops.convert_to_tensor(self._low)
        high = ops.convert_to_tensor(self._high)
        mask = None if self._mask is None else ops.convert_to_tensor(self._mask)
        cand = sample_candidates(mean, std, noise, low, high, cfg.l1_radius, mask)
        if self._binary is None:
            energy = self._scores(cand, z_context, states, context_actions, goal)
        else:
            cand, energy = self._paired_binary(cand, mean, noise, low, high, z_context, states,
                                               context_actions, goal)
        _, idx = ops.top_k(-energy, cfg.elites)
        elites = ops.take(cand, idx, axis=0)
        elite_energy = ops.take(energy, idx, axis=0)
        new_mean = cfg.momentum_mean * mean + (1.0 - cfg.momentum_mean) * ops.mean(elites, axis=0)
        new_std = cfg.momentum_std * std + (1.0 - cfg.momentum_std) * ops.std(elites, axis=0)
        new_std = ops.maximum(new_std, ops.convert_to_tensor(self._min_std))
        return new_mean, new_std, elite_energy[0], ops.mean(elite_energy), elites[0], cand

    def _paired_binary(self, cand, mean, noise, low, high, z_context, states, context_actions,
                       goal):
        """Sets the binary dims of `cand` by antithetic Bernoulli pairs; returns the better of
        each pair and its energy."""
        binary = ops.convert_to_tensor(self._binary) > 0
        span = high - low
        p = (mean - low) / span
        # The Gaussian noise on the binary dims, through the normal CDF, is a uniform draw.
        uniform = 0.5 * (1.0 + ops.erf(noise / np.sqrt(2.0)))
        draw = ops.cast(uniform < p[None], cand.dtype)
        first = ops.where(binary, low + draw * span, cand)
        second = ops.where(binary, high - draw * span, cand)
        energy = self._scores(ops.concatenate([first, second], axis=0), z_context, states,
                              context_actions, goal)
        count = cand.shape[0]
        e_first, e_second = energy[:count], energy[count:]
        take_second = e_second < e_first
        chosen = ops.where(take_second[:, None, None], second, first)
        return chosen, ops.minimum(e_first, e_second)

    def _evaluate_actions(self, actions, z_context, states, context_actions, goal):
        return self._scores(actions, z_context, states, context_actions, goal)

    # -- public ----------------------------------------------------------------------------

    def reset(self, seed: int | None = None):
        """Forgets the warm start; with `seed`, also re-seeds the noise generator."""
        self._previous = None
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def initial_mean(self) -> np.ndarray:
        """The mean the next plan starts from `(H, A)`: the previous plan shifted by one step
        when warm-starting, else the middle of the bounds."""
        horizon = self.config.horizon
        if not self.config.warm_start or self._previous is None:
            return np.broadcast_to(self._mid, (horizon, self.action_dim)).copy()
        prev = self._previous
        fill = prev[-1:] if self.config.warm_start_fill == "repeat" else self._mid[None]
        return np.concatenate([prev[1:], fill], axis=0).astype("float32")

    def plan(self, z_context, states, goal_z, context_actions=None, *,
             keep_candidates: bool = False) -> PlanResult:
        """Plans from encoded observations.

        Args:
            z_context: `(Tc, N, D)` or `(1, Tc, N, D)` latents of the context frames.
            states: `(Tc, S)` or `(1, Tc, S)` their proprio states.
            goal_z: `(N, D)` or `(1, N, D)` goal latent.
            context_actions: `(Tc - 1, A)` or `(1, Tc - 1, A)` actions between context frames.
            keep_candidates: also return every sampled candidate (for inspection and tests).

        Returns:
            A `PlanResult`.
        """
        start = time.perf_counter()
        cfg = self.config
        z_context = _batched(z_context, 4, "z_context")
        states = _batched(states, 3, "states")
        goal_z = _batched(goal_z, 3, "goal_z")
        if context_actions is not None:
            context_actions = _batched(context_actions, 3, "context_actions")
        mean = ops.convert_to_tensor(self.initial_mean(), "float32")
        std = ops.convert_to_tensor(np.asarray(self._init_std, "float32"))
        noise = self._rng.standard_normal(
            (cfg.iterations, cfg.samples, cfg.horizon, self.action_dim)).astype("float32")

        best, elite_mean, per_iteration, kept = [], [], [], []
        best_energy, best_actions = np.inf, None
        for i in range(cfg.iterations):
            t0 = time.perf_counter()
            mean, std, e_best, e_mean, a_best, cand = self._step(
                mean, std, ops.convert_to_tensor(noise[i]), z_context, states, context_actions,
                goal_z)
            e_best = float(ops.convert_to_numpy(e_best))
            per_iteration.append(time.perf_counter() - t0)
            best.append(e_best)
            elite_mean.append(float(ops.convert_to_numpy(e_mean)))
            if e_best < best_energy:
                best_energy, best_actions = e_best, a_best
            if keep_candidates:
                kept.append(ops.convert_to_numpy(cand))

        t0 = time.perf_counter()
        if cfg.return_best and best_actions is not None:
            actions = np.asarray(ops.convert_to_numpy(best_actions), "float32")
            energy = best_energy
        else:
            actions = np.asarray(ops.convert_to_numpy(mean), "float32")
            energy = float(ops.convert_to_numpy(self._evaluate(
                ops.convert_to_tensor(actions[None]), z_context, states, context_actions,
                goal_z))[0])
        evaluate_seconds = time.perf_counter() - t0
        self._previous = actions.copy()
        timings = {
            "encode": 0.0,
            "iterations": float(sum(per_iteration)),
            "per_iteration": tuple(per_iteration),
            "evaluate": evaluate_seconds,
            "total": time.perf_counter() - start,
        }
        return PlanResult(
            actions=actions,
            first_action=actions[0].copy(),
            energy=energy,
            energy_trace={"best": np.asarray(best, "float32"),
                          "elite_mean": np.asarray(elite_mean, "float32")},
            timings=timings,
            candidates=np.stack(kept) if keep_candidates else None,
        )


def _batched(x, rank, name):
    x = ops.convert_to_tensor(x, "float32")
    if len(x.shape) == rank - 1:
        x = x[None]
    if len(x.shape) != rank:
        raise ValueError(f"{name} must have rank {rank - 1} or {rank}; received shape "
                         f"{tuple(x.shape)}")
    return x
