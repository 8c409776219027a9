"""Tests of the planning package with analytic world models (no trained model needed)."""
import gymnasium as gym
import keras
import numpy as np
import pytest
from keras import ops

from planning import (
    MPC,
    CEMConfig,
    CEMPlanner,
    EnergyConfig,
    GripperLatch,
    PlanInputError,
    Planner,
    SubgoalSchedule,
    WorldModel,
    l1_energy,
    l2_energy,
    make_energy,
    project_l1_ball,
    sample_candidates,
)

SIZE = 32  # frame side of the point world, pixels


# ---------------------------------------------------------------------------------------------
# Analytic world models
# ---------------------------------------------------------------------------------------------


class SumModel:
    """Latent = context latent + running sum of the actions: z_k = z0 + a_1 + ... + a_k.

    With an L2 energy and horizon 1 the energy is the quadratic |z0 + a - g|^2, minimized at
    a = g - z0.
    """

    def __init__(self, action_dim=3):
        self.action_dim = action_dim
        self.rollout_calls = 0
        self.rollout_batches = []

    def encode(self, frames):
        raise NotImplementedError

    def rollout(self, z_context, states, actions, context_actions=None):
        # Python-level calls: with a compiled iteration this runs only while tracing.
        self.rollout_calls += 1
        self.rollout_batches.append(actions.shape[0])
        z0 = z_context[:, -1]  # (1, 1, A)
        return z0[:, None] + ops.cumsum(actions, axis=1)[:, :, None, :]


def render_point(pos, size=SIZE):
    """Draws a point as a bilinear splat in the red channel: its intensity centroid is `pos`."""
    img = np.zeros((size, size, 3), "float64")
    x, y = np.clip(np.asarray(pos, "float64"), 0.0, 1.0) * (size - 1)
    x0, y0 = int(min(np.floor(x), size - 2)), int(min(np.floor(y), size - 2))
    fx, fy = x - x0, y - y0
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            img[y0 + dy, x0 + dx, 0] = 255.0 * wx * wy
    return np.round(img).astype("uint8")


class PointModel:
    """A point in [0, 1]^2: latent tokens are a fixed linear embedding of the position, the
    dynamics are x_{k+1} = x_k + a_k, and the state is the position.

    `encode` reads the position back from the image (intensity centroid), in keras.ops.
    """

    action_dim = 2
    state_dim = 2
    conventions = {"frame_dtype": "uint8"}

    def __init__(self, tokens=4, dim=8):
        rng = np.random.default_rng(123)
        self.tokens, self.dim = tokens, dim
        self.embed = rng.normal(size=(2, tokens * dim)).astype("float32")
        self.encoded_frames = 0

    def _latent(self, pos):  # (..., 2) -> (..., N, D)
        z = ops.matmul(pos, ops.convert_to_tensor(self.embed))
        return ops.reshape(z, tuple(pos.shape[:-1]) + (self.tokens, self.dim))

    def encode(self, frames):
        frames = ops.convert_to_tensor(frames, "float32")  # (B, T, H, W, 3)
        self.encoded_frames += frames.shape[0] * frames.shape[1]
        w = frames[..., 0]
        coords = ops.cast(ops.arange(w.shape[-1]), "float32") / (w.shape[-1] - 1)
        total = ops.sum(w, axis=(2, 3))
        x = ops.sum(w * coords[None, None, None, :], axis=(2, 3)) / total
        y = ops.sum(w * coords[None, None, :, None], axis=(2, 3)) / total
        return self._latent(ops.stack([x, y], axis=-1))

    def rollout(self, z_context, states, actions, context_actions=None):
        pos = states[:, -1][:, None] + ops.cumsum(actions, axis=1)  # (B, H, 2)
        return self._latent(ops.clip(pos, 0.0, 1.0))


class PointEnv(gym.Env):
    """A point moved by bounded deltas, observed as a 32x32 image plus its position."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, start=(0.2, 0.25)):
        self.start = np.asarray(start, "float32")
        self.action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
            "state": gym.spaces.Box(0.0, 1.0, (2,), np.float32),
        })
        self.pos = self.start.copy()

    def _obs(self):
        return {"image": render_point(self.pos), "state": self.pos.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.start.copy()
        return self._obs(), {}

    def step(self, action):
        action = np.clip(action, self.action_space.low, self.action_space.high)
        self.pos = np.clip(self.pos + action, 0.0, 1.0).astype("float32")
        return self._obs(), 0.0, False, False, {"position": self.pos.copy()}


def _point_planner(**config):
    return Planner(PointModel(), PointEnv().action_space, config=CEMConfig(**config))


# ---------------------------------------------------------------------------------------------
# Energies
# ---------------------------------------------------------------------------------------------

Z = np.array([[[[0, 0]], [[1, 1]]], [[[2, 0]], [[3, 5]]]], "float32")  # (B=2, H=2, N=1, D=2)
GOAL = np.array([[1, 2]], "float32")  # (N=1, D=2)


def test_energies_on_hand_computed_values():
    # Per-step mean |z - g|: b0 = [1.5, 0.5], b1 = [1.5, 2.5].
    # Per-step mean (z - g)^2: b0 = [2.5, 0.5], b1 = [2.5, 6.5].
    np.testing.assert_allclose(ops.convert_to_numpy(l1_energy(Z, GOAL)), [0.5, 2.5])
    np.testing.assert_allclose(ops.convert_to_numpy(l1_energy(Z, GOAL[None])), [0.5, 2.5])
    np.testing.assert_allclose(ops.convert_to_numpy(l2_energy(Z, GOAL)), [0.5, 6.5])
    linear = make_energy(EnergyConfig("l1", "linear"), horizon=2)  # weights 1/3, 2/3
    np.testing.assert_allclose(ops.convert_to_numpy(linear(Z, GOAL)), [5 / 6, 13 / 6], rtol=1e-6)
    listed = make_energy(EnergyConfig("l2", [1, 3]), horizon=2)  # weights 1/4, 3/4
    np.testing.assert_allclose(ops.convert_to_numpy(listed(Z, GOAL)), [1.0, 5.5], rtol=1e-6)
    final = make_energy(EnergyConfig("l1", "final"), horizon=2)
    np.testing.assert_allclose(ops.convert_to_numpy(final(Z, GOAL)), [0.5, 2.5])


def test_energy_of_bf16_latents_is_float32():
    # A world model computing in bf16 (a mixed precision policy) against a float32 goal.
    energy = l1_energy(ops.cast(Z, "bfloat16"), GOAL)
    assert keras.backend.standardize_dtype(energy.dtype) == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(energy), [0.5, 2.5])


def test_energy_config_errors():
    with pytest.raises(ValueError, match="kind must be one of .*received kind='l3'"):
        EnergyConfig(kind="l3")
    with pytest.raises(ValueError, match="step_weights must be finite, non-negative"):
        EnergyConfig(step_weights=[1, -1])
    with pytest.raises(ValueError, match="step_weights must be None, one of"):
        EnergyConfig(step_weights="cubic")
    with pytest.raises(ValueError, match="one weight per horizon step; received 3 weights for "
                                         "horizon=2"):
        make_energy(EnergyConfig(step_weights=[1, 2, 3]), horizon=2)


# ---------------------------------------------------------------------------------------------
# CEM
# ---------------------------------------------------------------------------------------------


def test_cem_finds_quadratic_optimum():
    model = SumModel()
    goal = np.array([[0.3, -0.5, 0.7]], "float32")
    z0 = np.array([[[0.1, 0.1, -0.1]]], "float32")  # (Tc=1, N=1, D=3)
    planner = CEMPlanner(model, -1.0, 1.0, CEMConfig(horizon=1, iterations=8),
                         energy=EnergyConfig("l2"))
    result = planner.plan(z0, np.zeros((1, 1)), goal)
    np.testing.assert_allclose(result.actions[0], goal[0] - z0[0, 0], atol=0.02)
    assert result.energy < 1e-3
    assert result.energy_trace["best"].shape == (8,)
    assert result.energy_trace["best"][-1] < result.energy_trace["best"][0]
    assert np.all(result.energy_trace["best"] <= result.energy_trace["elite_mean"] + 1e-7)
    assert set(result.timings) >= {"encode", "iterations", "per_iteration", "total"}
    # return_best gives the lowest-energy candidate seen, with its energy.
    best = CEMPlanner(model, -1.0, 1.0, CEMConfig(horizon=1, iterations=8, return_best=True),
                      energy=EnergyConfig("l2")).plan(z0, np.zeros((1, 1)), goal)
    assert best.energy == pytest.approx(float(best.energy_trace["best"].min()))
    np.testing.assert_allclose(best.actions[0], goal[0] - z0[0, 0], atol=0.05)


def test_iteration_is_one_compiled_batched_call():
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip("eager backend: nothing is compiled")
    model = SumModel()
    planner = CEMPlanner(model, -1.0, 1.0, CEMConfig(samples=32, elites=4, iterations=3))
    args = (np.zeros((1, 1, 3), "float32"), np.zeros((1, 1)), np.ones((1, 3), "float32"))
    planner.plan(*args)
    traced = model.rollout_calls
    planner.plan(*args)
    planner.plan(*args)
    # Tracing calls rollout once for the iteration (all 32 samples at once) and once for the
    # evaluation of the returned plan; later plans run the compiled graph only.
    assert model.rollout_calls == traced
    assert 32 in model.rollout_batches and traced <= 4


def _reference_l1_projection(v, radius):
    """Bisection on the soft threshold: an implementation independent of the sort-based one."""
    a = np.abs(v)
    if a.sum() <= radius:
        return v
    lo, hi = 0.0, a.max()
    for _ in range(100):
        theta = (lo + hi) / 2
        lo, hi = (theta, hi) if np.maximum(a - theta, 0).sum() > radius else (lo, theta)
    return np.sign(v) * np.maximum(a - (lo + hi) / 2, 0)


def test_l1_projection_is_exact():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.1, size=(200, 5)).astype("float32")
    out = ops.convert_to_numpy(project_l1_ball(ops.convert_to_tensor(x), 0.075))
    expected = np.stack([_reference_l1_projection(v.astype("float64"), 0.075) for v in x])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert np.all(np.abs(out).sum(-1) <= 0.075 + 1e-6)
    inside = np.abs(x).sum(-1) <= 0.075
    np.testing.assert_array_equal(out[inside], x[inside])
    # A mask restricts the ball to some dims and leaves the others untouched.
    mask = np.array([1, 1, 1, 0, 0], "float32")
    masked = ops.convert_to_numpy(project_l1_ball(ops.convert_to_tensor(x), 0.075, mask))
    np.testing.assert_array_equal(masked[:, 3:], x[:, 3:])
    assert np.all(np.abs(masked[:, :3]).sum(-1) <= 0.075 + 1e-6)


def test_sampled_candidates_respect_bounds_and_ball():
    rng = np.random.default_rng(1)
    low = np.array([-0.1, -0.1, -0.1, 0.0], "float32")
    high = np.array([0.1, 0.1, 0.1, 1.0], "float32")
    mask = np.array([1, 1, 1, 0], "float32")
    for _ in range(5):  # a small property test over random means, stds and noise
        mean = rng.uniform(-0.5, 0.5, size=(3, 4)).astype("float32")
        std = rng.uniform(0.0, 1.0, size=(3, 4)).astype("float32")
        noise = rng.normal(size=(64, 3, 4)).astype("float32")
        cand = ops.convert_to_numpy(sample_candidates(mean, std, noise, low, high, 0.075, mask))
        assert np.all(cand >= low - 1e-7) and np.all(cand <= high + 1e-7)
        assert np.all(np.abs(cand[..., :3]).sum(-1) <= 0.075 + 1e-6)


def test_planner_never_samples_outside_bounds_or_ball():
    model = SumModel(action_dim=4)
    far_goal = np.array([[5.0, -5.0, 5.0, 5.0]], "float32")
    config = CEMConfig(samples=64, elites=8, iterations=4, horizon=2, l1_radius=0.075,
                       ball_dims=(0, 1, 2), init_std=1.0)
    low, high = [-0.1, -0.1, -0.1, -1.0], [0.1, 0.1, 0.1, 1.0]
    planner = CEMPlanner(model, low, high, config)
    result = planner.plan(np.zeros((1, 1, 4)), np.zeros((1, 1)), far_goal, keep_candidates=True)
    cand = result.candidates
    assert cand.shape == (4, 64, 2, 4)
    assert np.all(cand >= np.array(low) - 1e-7) and np.all(cand <= np.array(high) + 1e-7)
    assert np.all(np.abs(cand[..., :3]).sum(-1) <= 0.075 + 1e-6)
    assert np.abs(result.actions[:, :3]).sum(-1).max() <= 0.075 + 1e-6
    # Bounds whose middle lies outside the ball: the start and the returned mean stay feasible.
    planner = CEMPlanner(model, [-0.1, -0.1, -0.1, -1], [0.3, 0.3, 0.3, 1],
                         config.replace(momentum_mean=0.5, momentum_std=0.5))
    np.testing.assert_allclose(planner.initial_mean()[0], [0.025, 0.025, 0.025, 0.0], atol=1e-7)
    actions = planner.plan(np.zeros((1, 1, 4)), np.zeros((1, 1)), far_goal).actions
    assert np.abs(actions[:, :3]).sum(-1).max() <= 0.075 + 1e-6
    # The notebook's per-axis clip (0.05 m on xyz, 0.75 on the gripper) tightens the bounds.
    notebook = CEMConfig.notebook(action_dim=4, samples=64, iterations=2)
    planner = CEMPlanner(model, -1.0, 1.0, notebook)
    cand = planner.plan(np.zeros((1, 1, 4)), np.zeros((1, 1)), far_goal,
                        keep_candidates=True).candidates
    assert np.all(np.abs(cand[..., :3]) <= 0.05 + 1e-7)
    assert np.all(np.abs(cand[..., 3]) <= 0.75 + 1e-7)


class FaintGripperModel(SumModel):
    """SumModel whose last action dim moves its latent 100x less than the others do: a
    gripper the energy barely depends on."""

    def rollout(self, z_context, states, actions, context_actions=None):
        scale = ops.convert_to_tensor(np.array([1.0, 1.0, 0.01], "float32"))
        return super().rollout(z_context, states, actions * scale, context_actions)


def test_binary_dims_pick_a_faint_but_consistent_preference():
    z0 = np.zeros((1, 1, 3), "float32")
    goal = np.array([[0.4, -0.3, 0.01]], "float32")  # the gripper should be +1 (high)
    config = CEMConfig(samples=32, elites=8, iterations=3, init_std=1.0)
    model = FaintGripperModel()
    paired = CEMPlanner(model, -1.0, 1.0, config.replace(binary_dims=(2,)))
    result = paired.plan(z0, np.zeros((1, 1)), goal, keep_candidates=True)
    # Every candidate holds one of the two bounds on the binary dim, and each pair kept the
    # better one: here always high, so the returned expectation is exactly high.
    assert set(np.unique(result.candidates[..., 2])) <= {-1.0, 1.0}
    assert np.all(result.candidates[..., 2] == 1.0)
    assert result.first_action[2] == 1.0
    # Both members of a pair are imagined in the same batched call: 2 x samples rollouts.
    if keras.backend.backend() in ("tensorflow", "jax"):
        assert 64 in model.rollout_batches
    # A Gaussian over the same dim follows the continuous dims' spread instead.
    gaussian = CEMPlanner(FaintGripperModel(), -1.0, 1.0, config).plan(
        z0, np.zeros((1, 1)), goal)
    assert abs(gaussian.first_action[2]) < 0.6
    # Longer horizons: antithetic pairs, still only bound values, and the bounds of the other
    # dims hold.
    long = CEMPlanner(FaintGripperModel(), [-0.2, -0.2, -0.5], [0.2, 0.2, 0.5],
                      config.replace(horizon=3, binary_dims=(2,)))
    cand = long.plan(z0, np.zeros((1, 1)), goal, keep_candidates=True).candidates
    assert set(np.unique(cand[..., 2])) <= {-0.5, 0.5}
    assert np.all(np.abs(cand[..., :2]) <= 0.2 + 1e-7)
    with pytest.raises(ValueError, match="binary_dims must be < action_dim=3; received "
                                         r"binary_dims=\(3,\)"):
        CEMPlanner(SumModel(), -1.0, 1.0, CEMConfig(binary_dims=(3,)))
    with pytest.raises(ValueError, match="a dim cannot be both binary and in the L1 ball"):
        CEMConfig(l1_radius=0.1, ball_dims=(0, 1), binary_dims=(1,))
    with pytest.raises(ValueError, match="a dim cannot be both binary and in the L1 ball"):
        CEMPlanner(SumModel(), -1.0, 1.0, CEMConfig(l1_radius=0.1, binary_dims=(2,)))
    with pytest.raises(ValueError, match="binary_dims must be distinct non-negative ints"):
        CEMConfig(binary_dims=(2, 2))
    with pytest.raises(ValueError, match="binary_dims must be distinct non-negative ints"):
        CEMConfig(binary_dims=2)


def test_same_seed_same_plan():
    args = (np.zeros((1, 1, 3), "float32"), np.zeros((1, 1)), np.array([[0.2, 0.4, -0.3]]))

    def plans(seed):
        planner = CEMPlanner(SumModel(), -1.0, 1.0, CEMConfig(seed=seed))
        return [planner.plan(*args).actions for _ in range(2)]

    first, again, other = plans(7), plans(7), plans(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    # reset(seed) replays the same noise.
    planner = CEMPlanner(SumModel(), -1.0, 1.0, CEMConfig(seed=7))
    planner.plan(*args)
    planner.reset(seed=7)
    np.testing.assert_array_equal(planner.plan(*args).actions, first[0])


def test_warm_start_shifts_previous_plan():
    args = (np.zeros((1, 1, 3), "float32"), np.zeros((1, 1)), np.array([[0.2, 0.4, -0.3]]))
    planner = CEMPlanner(SumModel(), -1.0, 1.0, CEMConfig(horizon=3))
    np.testing.assert_array_equal(planner.initial_mean(), np.zeros((3, 3)))
    actions = planner.plan(*args).actions
    np.testing.assert_allclose(planner.initial_mean(),
                               np.concatenate([actions[1:], actions[-1:]]))
    planner.reset()
    np.testing.assert_array_equal(planner.initial_mean(), np.zeros((3, 3)))
    zeros = CEMPlanner(SumModel(), -1.0, 1.0, CEMConfig(horizon=3, warm_start_fill="zeros"))
    actions = zeros.plan(*args).actions
    np.testing.assert_allclose(zeros.initial_mean(),
                               np.concatenate([actions[1:], np.zeros((1, 3))]))
    cold = CEMPlanner(SumModel(), -1.0, 1.0, CEMConfig(horizon=3, warm_start=False))
    cold.plan(*args)
    np.testing.assert_array_equal(cold.initial_mean(), np.zeros((3, 3)))


def test_cem_config_presets_and_errors():
    ref = CEMConfig.reference()
    assert (ref.samples, ref.elites, ref.iterations, ref.horizon, ref.l1_radius) == (
        800, 10, 10, 1, 0.075)
    nb = CEMConfig.notebook()
    assert (nb.samples, nb.horizon, nb.momentum_mean, nb.momentum_std) == (400, 2, 0.15, 0.15)
    assert nb.clip == (0.05, 0.05, 0.05, 0.0, 0.0, 0.0, 0.75)
    with pytest.raises(ValueError, match="samples must be >= elites; received samples=8, "
                                         "elites=10"):
        CEMConfig(samples=8, elites=10)
    with pytest.raises(ValueError, match="horizon must be a positive integer; received "
                                         "horizon=0"):
        CEMConfig(horizon=0)
    with pytest.raises(ValueError, match=r"momentum_mean must be in \[0, 1\); received "
                                         "momentum_mean=1.0"):
        CEMConfig(momentum_mean=1.0)
    with pytest.raises(ValueError, match="ball_dims needs l1_radius"):
        CEMConfig(ball_dims=(0, 1))
    with pytest.raises(ValueError, match=r"min_std must be in \[0, init_std\]"):
        CEMConfig(min_std=2.0)
    with pytest.raises(ValueError, match="low <= high"):
        CEMPlanner(SumModel(), [1, 1, 1], [0, 0, 0])
    with pytest.raises(ValueError, match="action bounds have 2 dims but the world model's "
                                         "action_dim is 3"):
        CEMPlanner(SumModel(), [-1, -1], [1, 1])
    with pytest.raises(ValueError, match="L1 ball needs bounds containing 0"):
        CEMPlanner(SumModel(), [0.1, -1, -1], [1, 1, 1], CEMConfig(l1_radius=0.1))
    with pytest.raises(ValueError, match="action bounds must be finite"):
        CEMPlanner(SumModel(), -np.inf, np.inf)
    with pytest.raises(ValueError, match="clip must have one value per action dim; received 2 "
                                         "values for action_dim=3"):
        CEMPlanner(SumModel(), -1, 1, CEMConfig(clip=(0.1, 0.1)))


# ---------------------------------------------------------------------------------------------
# Planner API and MPC on the point world
# ---------------------------------------------------------------------------------------------


def test_point_model_follows_the_protocol():
    model = PointModel()
    assert isinstance(model, WorldModel)
    z = ops.convert_to_numpy(model.encode(render_point((0.3, 0.6))[None, None]))
    expected = ops.convert_to_numpy(model._latent(ops.convert_to_tensor([[[0.3, 0.6]]])))
    np.testing.assert_allclose(z, expected, atol=0.05)


def test_planner_api_plans_and_caches_goal():
    planner = _point_planner(samples=128, iterations=4, horizon=2)
    model = planner.world_model
    frame, goal = render_point((0.2, 0.2)), render_point((0.5, 0.5))
    result = planner.plan(frame, np.array([0.2, 0.2]), goal)
    assert result.first_action.shape == (2,) and result.actions.shape == (2, 2)
    assert np.all(result.first_action > 0.05)  # heads up-right, towards the goal
    assert result.observed_energy > result.energy
    assert result.timings["encode"] > 0
    encoded = model.encoded_frames
    planner.plan(frame, np.array([0.2, 0.2]), goal)
    assert model.encoded_frames == encoded + 1  # the frame again, the goal from the cache


def test_planner_api_subgoal_list_advances_with_budgets():
    planner = _point_planner(iterations=2, samples=32, elites=4)
    frame, state = render_point((0.2, 0.2)), np.array([0.2, 0.2])
    goals = [render_point((0.5, 0.2)), render_point((0.5, 0.5))]
    indices = [planner.plan(frame, state, goals, budgets=[1, 2]).goal_index for _ in range(4)]
    assert indices == [0, 1, 1, 1]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, f, s, g: p.plan(f[..., 0], s, g),
         r"frames must be \(H, W, 3\) or \(T, H, W, 3\); received shape \(32, 32\)"),
        (lambda p, f, s, g: p.plan(f.astype("int64"), s, g),
         "frames must be uint8 or floating; received dtype int64"),
        (lambda p, f, s, g: p.plan(np.full(f.shape, np.nan, "float32"), s, g),
         "frames contains NaN or inf"),
        (lambda p, f, s, g: p.plan(f, s, g[:16, :16]),
         "goal image is 16x16 but the frames are 32x32"),
        (lambda p, f, s, g: p.plan(f, np.zeros(3), g),
         "state has 3 dims but the world model's state_dim is 2"),
        (lambda p, f, s, g: p.plan(f, np.array([np.nan, 0.0]), g), "state contains NaN or inf"),
        (lambda p, f, s, g: p.plan(np.stack([f, f]), s, g),
         "state has 1 steps but there are 2 frames"),
        (lambda p, f, s, g: p.plan(np.stack([f, f]), np.stack([s, s]), g,
                                   context_actions=np.zeros((2, 2))),
         r"context_actions must be \(T - 1, A\) = \(1, 2\); received shape \(2, 2\)"),
        (lambda p, f, s, g: p.plan(f, s, [g, g]), "a list of 2 sub-goal images needs budgets"),
        (lambda p, f, s, g: p.plan(f, s, g[None]),
         r"goal image must be \(H, W, 3\); received shape \(1, 32, 32, 3\)"),
    ],
)
def test_planner_api_rejects_bad_inputs(call, message):
    planner = _point_planner(iterations=1, samples=16, elites=2)
    frame, goal = render_point((0.2, 0.2)), render_point((0.5, 0.5))
    with pytest.raises(PlanInputError, match=message):
        call(planner, frame, np.array([0.2, 0.2]), goal)


def test_planner_needs_bounds():
    with pytest.raises(ValueError, match="give an action_space"):
        Planner(PointModel())


def test_mpc_drives_point_to_goal():
    env = PointEnv(start=(0.2, 0.25))
    goal_pos = np.array([0.7, 0.6])
    planner = _point_planner()
    result = MPC(planner, env, render_point(goal_pos), max_steps=12).run(seed=0)
    assert result.steps == 12 and result.stop_reason == "budget"
    # Success is read only afterwards, from the environment's infos.
    assert np.linalg.norm(result.infos[-1]["position"] - goal_pos) < 0.03
    assert result.actions.shape == (12, 2)
    assert np.all(np.abs(result.actions) <= 0.1 + 1e-6)
    assert result.observed_energy[0] > result.observed_energy[-1]
    assert result.final_energy < 0.1 * result.observed_energy[0]
    assert result.plan_seconds.shape == (12,)
    # An episode is reproducible from its seed (environment and planner noise).
    again = MPC(planner, env, render_point(goal_pos), max_steps=12).run(seed=0)
    np.testing.assert_array_equal(again.actions, result.actions)


def test_mpc_subgoal_schedule_and_stop_rule():
    env = PointEnv(start=(0.2, 0.25))
    planner = _point_planner(horizon=2)
    waypoint, goal = render_point((0.5, 0.25)), render_point((0.5, 0.7))
    result = MPC(planner, env, [(waypoint, 5), (goal, 7)], record_frames=True).run()
    assert result.goal_index.tolist() == [0] * 5 + [1] * 7
    assert np.linalg.norm(result.infos[5]["position"] - [0.5, 0.25]) < 0.03
    assert np.linalg.norm(result.infos[-1]["position"] - [0.5, 0.7]) < 0.03
    assert len(result.frames) == 13
    # With a stop rule the episode ends once the observed frame is close to the goal in latent
    # space, well before the budget.
    stop = MPC(planner, env, goal, max_steps=30, stop_energy=0.05, context_frames=2).run()
    assert stop.stop_reason == "stop_energy" and stop.steps < 30
    assert np.linalg.norm(stop.final_observation["state"] - [0.5, 0.7]) < 0.05


def test_schedule_without_early_advance_spends_intermediate_budgets():
    a, b = np.zeros((4, 4, 3), "uint8"), np.ones((4, 4, 3), "uint8")
    schedule = SubgoalSchedule([a, b], [3, 2], stop_energy=0.1, early_advance=False)
    assert not schedule.observe(0.0) and schedule.index == 0  # intermediate: budget only
    for _ in range(3):
        schedule.step()
    assert schedule.index == 1
    assert schedule.observe(0.05) and schedule.done  # the last goal keeps its stop rule
    early = SubgoalSchedule([a, b], [3, 2], stop_energy=0.1)
    assert early.observe(0.05) and early.index == 1 and not early.done


def test_gripper_latch_switches_only_past_the_threshold():
    latch = GripperLatch(dim=3, threshold=0.6)
    planned = [0.2, -0.5, 0.59, -0.7, 0.1, 0.65, -0.3]
    executed, state = [], None
    for g in planned:
        action, state = latch.apply(np.array([0.1, 0.2, 0.3, g], "float32"), state)
        assert action[:3].tolist() == pytest.approx([0.1, 0.2, 0.3])
        executed.append(float(action[3]))
    # The first plan sets it; afterwards only |g| >= 0.6 switches.
    assert executed == [1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0]
    # Latched open from the start, a weak close is not enough.
    opened = GripperLatch(dim=3, threshold=0.6, initial="high")
    action, state = opened.apply(np.array([0, 0, 0, -0.5], "float32"), opened.start())
    assert action[3] == 1.0 and state == 1.0
    # A plan that may not switch it leaves it; holding on a switch zeroes the other dims once.
    action, state = opened.apply(np.array([0, 0, 0, -0.9], "float32"), 1.0, may_switch=False)
    assert action[3] == 1.0 and state == 1.0
    hold = GripperLatch(dim=3, threshold=0.6, initial="high", hold_on_switch=True)
    moves = [(0.5, 0.2), (0.5, -0.9), (0.5, -0.9), (0.5, 0.8)]
    executed = []
    state = hold.start()
    for xyz, g in moves:
        action, state = hold.apply(np.array([xyz, xyz, xyz, g], "float32"), state)
        executed.append(action.tolist())
    assert executed == [[0.5, 0.5, 0.5, 1.0], [0, 0, 0, -1.0], [0.5, 0.5, 0.5, -1.0],
                        [0, 0, 0, 1.0]]
    first = GripperLatch(dim=3, hold_on_switch=True)  # the first command is not a switch
    assert first.apply(np.array([0.5, 0.5, 0.5, -0.9], "float32"), None)[0][0] == 0.5
    with pytest.raises(ValueError, match="at_subgoal_start needs initial"):
        GripperLatch(at_subgoal_start=True)
    with pytest.raises(ValueError, match="initial must be 'low', 'high' or None"):
        GripperLatch(initial="open")
    with pytest.raises(ValueError, match="threshold must be >= 0; received threshold=-1"):
        GripperLatch(threshold=-1)
    with pytest.raises(ValueError, match="low must be < high"):
        GripperLatch(low=1.0, high=-1.0)


def test_mpc_executes_the_latched_gripper():
    env = PointEnv(start=(0.2, 0.25))
    planner = _point_planner()
    latch = GripperLatch(dim=1, threshold=0.05, low=-0.1, high=0.1)
    result = MPC(planner, env, render_point((0.5, 0.7)), max_steps=6, gripper=latch).run(seed=0)
    np.testing.assert_allclose(np.abs(result.actions[:, 1]), 0.1)
    with pytest.raises(TypeError, match="gripper must be a GripperLatch"):
        MPC(planner, env, render_point((0.5, 0.7)), max_steps=6, gripper=0.5)
    # Switching only at a sub-goal's first plan: up towards the first goal (latched +0.1 from
    # the start), then down towards the second, switched once, with the arm (dim 0) held still
    # on that step.
    gated = GripperLatch(dim=1, threshold=0.05, low=-0.1, high=0.1, initial="high",
                         at_subgoal_start=True, hold_on_switch=True)
    goals = [(render_point((0.5, 0.7)), 3), (render_point((0.5, 0.2)), 3)]
    result = MPC(_point_planner(), PointEnv(start=(0.2, 0.25)), goals,
                 gripper=gated).run(seed=0)
    np.testing.assert_allclose(result.actions[:, 1], [0.1, 0.1, 0.1, -0.1, -0.1, -0.1])
    assert result.actions[3, 0] == 0.0 and result.actions[4, 0] != 0.0


def test_mpc_errors():
    planner = _point_planner(iterations=1, samples=16, elites=2)
    goal = render_point((0.5, 0.5))
    with pytest.raises(ValueError, match="a single goal image needs max_steps"):
        MPC(planner, PointEnv(), goal)
    with pytest.raises(PlanInputError, match="the observation has no key 'pixels'"):
        MPC(planner, PointEnv(), goal, max_steps=2, frame_key="pixels").run()
    with pytest.raises(ValueError, match="budgets must have one entry per goal"):
        SubgoalSchedule([goal, goal], [3])


def test_stop_threshold_is_the_largest_distance_meeting_the_precision():
    from vjepa2.app.calibrate import stop_threshold

    # Latent distances 1..10; pairs 1-6 are physically close except pair 4.
    latent = np.arange(1, 11, dtype=float)
    metric = np.array([0.01, 0.02, 0.01, 0.30, 0.02, 0.01, 0.4, 0.5, 0.6, 0.7])
    # Running precision: 1, 1, 1, .75, .8, .83, .71, ...
    assert stop_threshold(latent, metric, radius=0.05, precision=0.8, min_pairs=1) == 6.0
    assert stop_threshold(latent, metric, radius=0.05, precision=1.0, min_pairs=1) == 3.0
    assert stop_threshold(latent, metric, radius=0.05, precision=1.0, min_pairs=4) is None
    # Order of the pairs does not matter.
    perm = np.random.default_rng(0).permutation(10)
    assert stop_threshold(latent[perm], metric[perm], 0.05, 0.8, min_pairs=1) == 6.0
    with pytest.raises(ValueError, match="equal-length"):
        stop_threshold(latent, metric[:3], 0.05, 0.8)
