"""Latent-space planning with a world model: CEM, energies, MPC and the Planner API.

`planning` depends only on the small `WorldModel` protocol (`encode` / `rollout`): never on
training code or an environment package (`tests/test_architecture.py` checks it). Typical use:

>>> from planning import CEMConfig, MPC, Planner
>>> planner = Planner(world_model, env.action_space, config=CEMConfig())
>>> result = planner.plan(frame, state, goal_image)      # result.first_action
>>> episode = MPC(planner, env, goal_image, max_steps=20).run(seed=0)
"""
from planning.api import PlanInputError, Planner, PlanSession
from planning.batching import BatchingPlanner
from planning.cem import CEMConfig, CEMPlanner, PlanResult, project_l1_ball, sample_candidates
from planning.energy import EnergyConfig, l1_energy, l2_energy, make_energy, step_distances
from planning.mpc import MPC, GripperLatch, MPCResult
from planning.preset import PlannerPreset, PresetError
from planning.protocol import WorldModel
from planning.remote_env import RemoteEnv, RemoteEnvError
from planning.remote_planner import RemotePlanner, RemotePlannerError
from planning.schedule import SubgoalSchedule

__all__ = [
    "BatchingPlanner",
    "CEMConfig",
    "CEMPlanner",
    "EnergyConfig",
    "GripperLatch",
    "MPC",
    "MPCResult",
    "PlanInputError",
    "PlanResult",
    "PlanSession",
    "PlannerPreset",
    "PresetError",
    "Planner",
    "RemoteEnv",
    "RemoteEnvError",
    "RemotePlanner",
    "RemotePlannerError",
    "SubgoalSchedule",
    "WorldModel",
    "l1_energy",
    "l2_energy",
    "make_energy",
    "project_l1_ball",
    "sample_candidates",
    "step_distances",
]
