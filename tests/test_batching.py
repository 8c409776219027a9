"""Many problems, one planner: batched plans equal the plans each problem gets alone."""
import threading

import numpy as np
import pytest

from planning import MPC
from planning.batching import BatchingPlanner
from tests.test_planning import PointEnv, _point_planner, render_point

STARTS = [(0.2, 0.25), (0.7, 0.3), (0.4, 0.8), (0.15, 0.6)]
GOAL = (0.55, 0.5)


def test_plan_batch_gives_each_problem_the_plan_it_gets_alone():
    planner = _point_planner(samples=64, iterations=3, horizon=2)
    frames = [render_point(s) for s in STARTS]
    goal = render_point(GOAL)
    alone = []
    for i, (frame, start) in enumerate(zip(frames, STARTS)):
        planner.reset(seed=100 + i)
        alone.append(planner.plan(frame, np.asarray(start), goal).actions)
    sessions = [planner.new_session(seed=100 + i) for i in range(len(STARTS))]
    requests = [planner.request(planner.encode(frame), np.asarray(start)[None], goal,
                                frame_hw=frame.shape[:2], session=session)
                for frame, start, session in zip(frames, STARTS, sessions)]
    batched = planner.plan_batch(requests)
    for single, result in zip(alone, batched):
        np.testing.assert_allclose(result.actions, single, atol=1e-5)
    # The sessions keep their own warm start for the next round.
    for session, result in zip(sessions, batched):
        np.testing.assert_array_equal(session.row.previous, result.actions)


def test_threads_running_mpc_through_one_batching_planner_match_sequential_episodes():
    goal = render_point(GOAL)
    sequential = []
    for i, start in enumerate(STARTS):
        result = MPC(_point_planner(), PointEnv(start=start), goal, max_steps=6).run(seed=i)
        sequential.append(result.actions)

    planner = _point_planner()
    outcomes = [None] * len(STARTS)
    with BatchingPlanner(planner, max_batch=len(STARTS), window_seconds=5.0) as batching:
        clients = [batching.client() for _ in STARTS]

        def episode(i):
            with clients[i]:
                mpc = MPC(clients[i], PointEnv(start=STARTS[i]), goal, max_steps=6)
                outcomes[i] = mpc.run(seed=i).actions

        threads = [threading.Thread(target=episode, args=(i,)) for i in range(len(STARTS))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rounds = list(batching.rounds)
    for single, batched in zip(sequential, outcomes):
        np.testing.assert_allclose(batched, single, atol=1e-5)
    # Every open client was waited for: full rounds, never a lone request.
    assert rounds == [len(STARTS)] * 6


def test_a_failing_round_reaches_every_waiting_client_and_the_planner_keeps_serving():
    planner = _point_planner(samples=16, elites=2, iterations=1)
    frame, goal = render_point((0.2, 0.2)), render_point((0.5, 0.5))
    with BatchingPlanner(planner, max_batch=2, window_seconds=0.01) as batching:
        with batching.client() as client:
            with pytest.raises(ValueError):
                # A goal of another size than the frames fails inside the round.
                client.plan_encoded(planner.encode(frame), np.zeros((1, 2)), goal[:16, :16],
                                    frame_hw=(32, 32))
            result = client.plan(frame, np.array([0.2, 0.2]), goal)
    assert result.first_action.shape == (2,)
