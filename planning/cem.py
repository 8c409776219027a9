"""Cross-entropy method (CEM) over action sequences in a world model's latent space.

Each iteration samples `samples` action sequences around a Gaussian mean, keeps them inside the
action bounds (and optionally a per-step L1 ball), imagines their outcomes with the world model's
`rollout`, scores the imagined latents against the goal latent, and refits the Gaussian to the
`elites` lowest-energy sequences. One iteration is one compiled, batched call: there is no Python
loop over samples. The search settings, `CEMConfig`, live in `planning.cem_config` and are
importable from here too.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np
from keras import ops

from planning._compile import compile_function
from planning.cem_config import CEMConfig
from planning.energy import EnergyConfig, make_energy


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
        mean: `(H, A)`, or any shape that broadcasts against `noise` (the planner passes
            `(B, 1, H, A)` for `B` problems); std: the same.
        noise: `(S, H, A)` (or `(B, S, H, A)`) standard normal.
        low, high: `(A,)` bounds.
        l1_radius: optional per-step L1 radius; ball_mask: optional `(A,)` 0/1 dims mask.

    Returns:
        Candidates shaped like `noise`.
    """
    cand = mean + std * noise
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
        # One trace per batch size: the batch size is a Python int inside (`_scores`).
        self._compiled_search = compile_function(self._search, config.jit_compile,
                                                 exact_shapes=True)
        self._row = CEMRow(np.random.default_rng(config.seed))

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
    # Shapes: B problems (robots, episodes) planned together, S samples, H steps, A dims.

    def _scores(self, actions, z_context, states, context_actions, goal):
        """Energies `(B, M)` of candidates `(B, M, H, A)`, each row against its own context and
        goal. One problem shares its context across candidates (the rollout broadcasts it);
        several are flattened into one rollout batch of `B * M`."""
        batch, count = actions.shape[0], actions.shape[1]
        flat = ops.reshape(actions, (batch * count,) + tuple(actions.shape[2:]))
        if batch > 1:
            z_context, states, goal = (ops.repeat(x, count, axis=0)
                                       for x in (z_context, states, goal))
            if context_actions is not None:
                context_actions = ops.repeat(context_actions, count, axis=0)
        z_pred = self.world_model.rollout(z_context, states, flat, context_actions)
        energy = ops.reshape(self._energy(z_pred, goal), (batch, count))
        # A NaN energy must never win the top-k.
        return ops.where(ops.isnan(energy), ops.full_like(energy, np.inf), energy)

    def _iteration(self, mean, std, noise, z_context, states, context_actions, goal):
        """One CEM iteration for every problem: `mean`, `std` `(B, H, A)`, `noise`
        `(B, S, H, A)`; returns the refitted mean and std, each problem's best and mean elite
        energy, its best candidate, and the candidates."""
        cfg = self.config
        low = ops.convert_to_tensor(self._low)
        high = ops.convert_to_tensor(self._high)
        mask = None if self._mask is None else ops.convert_to_tensor(self._mask)
        cand = sample_candidates(mean[:, None], std[:, None], noise, low, high, cfg.l1_radius,
                                 mask)
        if self._binary is None:
            energy = self._scores(cand, z_context, states, context_actions, goal)
        else:
            cand, energy = self._paired_binary(cand, mean, noise, low, high, z_context, states,
                                               context_actions, goal)
        _, idx = ops.top_k(-energy, cfg.elites)
        elites = ops.take_along_axis(cand, idx[:, :, None, None], axis=1)
        elite_energy = ops.take_along_axis(energy, idx, axis=1)
        new_mean = cfg.momentum_mean * mean + (1.0 - cfg.momentum_mean) * ops.mean(elites, axis=1)
        new_std = cfg.momentum_std * std + (1.0 - cfg.momentum_std) * ops.std(elites, axis=1)
        new_std = ops.maximum(new_std, ops.convert_to_tensor(self._min_std))
        return (new_mean, new_std, elite_energy[:, 0], ops.mean(elite_energy, axis=1),
                elites[:, 0], cand)

    def _paired_binary(self, cand, mean, noise, low, high, z_context, states, context_actions,
                       goal):
        """Sets the binary dims of `cand` by antithetic Bernoulli pairs; returns the better of
        each pair and its energy."""
        binary = ops.convert_to_tensor(self._binary) > 0
        span = high - low
        p = (mean - low) / span
        # The Gaussian noise on the binary dims, through the normal CDF, is a uniform draw.
        uniform = 0.5 * (1.0 + ops.erf(noise / np.sqrt(2.0)))
        draw = ops.cast(uniform < p[:, None], cand.dtype)
        first = ops.where(binary, low + draw * span, cand)
        second = ops.where(binary, high - draw * span, cand)
        energy = self._scores(ops.concatenate([first, second], axis=1), z_context, states,
                              context_actions, goal)
        count = cand.shape[1]
        e_first, e_second = energy[:, :count], energy[:, count:]
        take_second = e_second < e_first
        chosen = ops.where(take_second[:, :, None, None], second, first)
        return chosen, ops.minimum(e_first, e_second)

    def _search(self, mean, std, noise, z_context, states, context_actions, goal):
        """Every CEM iteration in one compiled loop, then the energy of the final mean: one
        call and one host sync per plan. `noise` is `(I, B, S, H, A)`."""
        iterations = self.config.iterations
        batch = mean.shape[0]

        def body(i, carry):
            mean, std, best, elite, best_e, best_a = carry
            mean, std, e_best, e_mean, a_best, _ = self._iteration(
                mean, std, ops.take(noise, i, axis=0), z_context, states, context_actions, goal)
            slot = ops.one_hot(i, iterations, dtype="float32")[None]
            better = e_best < best_e
            return (mean, std, best + e_best[:, None] * slot, elite + e_mean[:, None] * slot,
                    ops.where(better, e_best, best_e),
                    ops.where(better[:, None, None], a_best, best_a))

        traces = ops.zeros((batch, iterations), "float32")
        carry = (mean, std, traces, traces, ops.full((batch,), np.inf, "float32"),
                 ops.zeros_like(mean))
        mean, _, best, elite, best_e, best_a = ops.fori_loop(0, iterations, body, carry)
        mean_energy = self._scores(mean[:, None], z_context, states, context_actions, goal)
        return mean, best, elite, best_e, best_a, mean_energy[:, 0]

    def _evaluate_actions(self, actions, z_context, states, context_actions, goal):
        return self._scores(actions, z_context, states, context_actions, goal)

    # -- public ----------------------------------------------------------------------------

    def new_row(self, seed: int | None = None) -> "CEMRow":
        """The search state of one more problem (its noise generator and warm start), for
        `plan_batch`; `seed` `None` uses `config.seed`."""
        return CEMRow(np.random.default_rng(self.config.seed if seed is None else seed))

    def reset(self, seed: int | None = None):
        """Forgets the warm start; with `seed`, also re-seeds the noise generator."""
        self._row.reset(seed)

    def initial_mean(self, row: "CEMRow | None" = None) -> np.ndarray:
        """The mean the next plan starts from `(H, A)`: the previous plan shifted by one step
        when warm-starting, else the middle of the bounds."""
        prev = (self._row if row is None else row).previous
        horizon = self.config.horizon
        if not self.config.warm_start or prev is None:
            return np.broadcast_to(self._mid, (horizon, self.action_dim)).copy()
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
            keep_candidates: also return every sampled candidate (for inspection and tests;
                runs the iterations one call at a time).

        Returns:
            A `PlanResult`.
        """
        inputs = (_batched(z_context, 4, "z_context"), _batched(states, 3, "states"),
                  None if context_actions is None
                  else _batched(context_actions, 3, "context_actions"),
                  _batched(goal_z, 3, "goal_z"))
        if keep_candidates:
            return self._plan_stepwise(*inputs)
        return self.plan_batch(*inputs, rows=[self._row])[0]

    def plan_batch(self, z_context, states, context_actions, goal_z,
                   rows: Sequence["CEMRow"]) -> list[PlanResult]:
        """Plans `B` problems in one compiled call.

        Args:
            z_context: `(B, Tc, N, D)`; states: `(B, Tc, S)`; context_actions:
                `(B, Tc - 1, A)` or `None`; goal_z: `(B, N, D)`.
            rows: `B` search states (`new_row`), one per problem: each keeps its own noise
                generator and warm start, so a problem's plan does not depend on what it is
                batched with (up to float rounding).

        Returns:
            One `PlanResult` per problem.
        """
        start = time.perf_counter()
        cfg = self.config
        if len(rows) != z_context.shape[0]:
            raise ValueError(f"rows must hold one search state per problem; received "
                             f"{len(rows)} for a batch of {z_context.shape[0]}")
        mean = np.stack([self.initial_mean(row) for row in rows]).astype("float32")
        std = np.broadcast_to(np.asarray(self._init_std, "float32"), mean.shape)
        noise = np.stack([row.rng.standard_normal(
            (cfg.iterations, cfg.samples, cfg.horizon, self.action_dim)).astype("float32")
            for row in rows], axis=1)
        out = [ops.convert_to_numpy(x) for x in self._compiled_search(
            ops.convert_to_tensor(mean), ops.convert_to_tensor(np.ascontiguousarray(std)),
            ops.convert_to_tensor(noise), z_context, states, context_actions, goal_z)]
        mean, best, elite, best_e, best_a, mean_e = out
        seconds = time.perf_counter() - start
        results = []
        for b, row in enumerate(rows):
            use_best = cfg.return_best and np.isfinite(best_e[b])
            actions = np.asarray(best_a[b] if use_best else mean[b], "float32")
            row.previous = actions.copy()
            results.append(PlanResult(
                actions=actions, first_action=actions[0].copy(),
                energy=float(best_e[b] if use_best else mean_e[b]),
                energy_trace={"best": best[b].astype("float32"),
                              "elite_mean": elite[b].astype("float32")},
                timings={"encode": 0.0, "iterations": seconds,
                         "per_iteration": (seconds / cfg.iterations,) * cfg.iterations,
                         "evaluate": 0.0, "total": seconds}))
        return results

    def _plan_stepwise(self, z_context, states, context_actions, goal_z) -> PlanResult:
        """One problem, one compiled call per iteration, keeping every candidate."""
        start = time.perf_counter()
        cfg, row = self.config, self._row
        mean = ops.convert_to_tensor(self.initial_mean()[None], "float32")
        std = ops.convert_to_tensor(np.asarray(self._init_std, "float32")[None])
        noise = row.rng.standard_normal(
            (cfg.iterations, cfg.samples, cfg.horizon, self.action_dim)).astype("float32")
        best, elite_mean, per_iteration, kept = [], [], [], []
        best_energy, best_actions = np.inf, None
        for i in range(cfg.iterations):
            t0 = time.perf_counter()
            mean, std, e_best, e_mean, a_best, cand = self._step(
                mean, std, ops.convert_to_tensor(noise[i][None]), z_context, states,
                context_actions, goal_z)
            e_best = float(ops.convert_to_numpy(e_best)[0])
            per_iteration.append(time.perf_counter() - t0)
            best.append(e_best)
            elite_mean.append(float(ops.convert_to_numpy(e_mean)[0]))
            if e_best < best_energy:
                best_energy, best_actions = e_best, ops.convert_to_numpy(a_best)[0]
            kept.append(ops.convert_to_numpy(cand)[0])
        t0 = time.perf_counter()
        if cfg.return_best and best_actions is not None:
            actions, energy = np.asarray(best_actions, "float32"), best_energy
        else:
            actions = np.asarray(ops.convert_to_numpy(mean)[0], "float32")
            energy = float(ops.convert_to_numpy(self._evaluate(
                ops.convert_to_tensor(actions[None, None]), z_context, states,
                context_actions, goal_z))[0, 0])
        row.previous = actions.copy()
        return PlanResult(
            actions=actions, first_action=actions[0].copy(), energy=energy,
            energy_trace={"best": np.asarray(best, "float32"),
                          "elite_mean": np.asarray(elite_mean, "float32")},
            timings={"encode": 0.0, "iterations": float(sum(per_iteration)),
                     "per_iteration": tuple(per_iteration),
                     "evaluate": time.perf_counter() - t0,
                     "total": time.perf_counter() - start},
            candidates=np.stack(kept))


@dataclasses.dataclass
class CEMRow:
    """The search state one problem keeps between plans: its noise generator and the previous
    plan (the warm start)."""

    rng: np.random.Generator
    previous: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        """Forgets the warm start; with `seed`, also re-seeds the noise generator."""
        self.previous = None
        if seed is not None:
            self.rng = np.random.default_rng(seed)


def _batched(x, rank, name):
    x = ops.convert_to_tensor(x, "float32")
    if len(x.shape) == rank - 1:
        x = x[None]
    if len(x.shape) != rank:
        raise ValueError(f"{name} must have rank {rank - 1} or {rank}; received shape "
                         f"{tuple(x.shape)}")
    return x
