"""Many robots or episodes, one planner: concurrent plan requests batched into one call.

`BatchingPlanner` owns a `Planner` and a thread that plans: client threads (one per robot,
episode or network connection) submit requests and block; the planning thread gathers what
has arrived and plans it in one `Planner.plan_batch` call. A round starts when every open
client is waiting (no one is left to wait for) or when `window_seconds` have passed since the
first request of the round, whichever comes first, and takes at most `max_batch` requests.

`BatchingPlanner.client(seed)` gives each caller an object with the `Planner` interface that
`MPC` uses (`reset`, `encode`, `encode_goal`, `plan`, `plan_encoded`, `env_actions`, ...), with
its own `PlanSession`: its own noise generator and warm start, so its plans do not depend on
who it was batched with (up to float rounding).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Sequence

import numpy as np

from planning.api import Planner, PlanRequest, PlanSession, check_frames, check_state
from planning.cem import PlanResult


class _Pending:
    __slots__ = ("request", "result", "error", "done")

    def __init__(self, request: PlanRequest):
        self.request = request
        self.result = self.error = None
        self.done = threading.Event()


class BatchingPlanner:
    """Plans for many concurrent clients with one batched call per round.

    Args:
        planner: the `Planner` (its world model and CEM settings serve every client).
        max_batch: most requests in one call.
        window_seconds: how long a round waits for more requests after its first one (the
            service's batching window); a round also starts as soon as every open client waits.

    Example:

    >>> batching = BatchingPlanner(planner, max_batch=8)
    >>> clients = [batching.client(seed=s) for s in range(8)]   # one per thread
    >>> result = clients[0].plan(frame, state, goal)            # blocks until its round ran
    >>> batching.close()
    """

    def __init__(self, planner: Planner, max_batch: int = 8, window_seconds: float = 0.05):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1; received {max_batch}")
        if not window_seconds >= 0:
            raise ValueError(f"window_seconds must be >= 0; received {window_seconds}")
        self.planner = planner
        self.max_batch = int(max_batch)
        self.window_seconds = float(window_seconds)
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._open = 0
        self._closed = False
        # Batch size of the latest rounds, for reports (bounded: a service runs for days).
        self.rounds: collections.deque[int] = collections.deque(maxlen=10_000)
        self._thread = threading.Thread(target=self._serve, name="batching-planner", daemon=True)
        self._thread.start()

    # -- clients -------------------------------------------------------------------------

    def client(self, seed: int | None = None) -> "PlannerClient":
        """A new client with its own session; close it (or use `with`) when done."""
        with self._cv:
            if self._closed:
                raise RuntimeError("the batching planner is closed")
            self._open += 1
        return PlannerClient(self, self.planner.new_session(seed))

    def _release(self) -> None:
        with self._cv:
            self._open -= 1
            self._cv.notify_all()

    def submit(self, request: PlanRequest, timeout: float | None = None) -> PlanResult:
        """Queues `request` and blocks until its round has planned it.

        Raises:
            TimeoutError: no result within `timeout` seconds (a request still queued is
                withdrawn; one already being planned finishes unseen).
        """
        pending = _Pending(request)
        with self._cv:
            if self._closed:
                raise RuntimeError("the batching planner is closed")
            self._queue.append(pending)
            self._cv.notify_all()
        if not pending.done.wait(timeout):
            with self._cv:
                if pending in self._queue:
                    self._queue.remove(pending)
            raise TimeoutError(f"no plan within {timeout} s")
        if pending.error is not None:
            raise pending.error
        return pending.result

    def close(self) -> None:
        """Stops the planning thread after the requests already queued."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def __enter__(self) -> "BatchingPlanner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the planning thread ---------------------------------------------------------------

    def _take_round(self) -> list[_Pending] | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + self.window_seconds
            while (len(self._queue) < min(self.max_batch, max(self._open, 1))
                   and not self._closed):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            # One round plans requests of one context length together.
            steps = int(self._queue[0].request.z.shape[0])
            batch = [p for p in self._queue if int(p.request.z.shape[0]) == steps]
            batch = batch[:self.max_batch]
            for pending in batch:
                self._queue.remove(pending)
            return batch

    def _serve(self) -> None:
        while True:
            batch = self._take_round()
            if batch is None:
                return
            self.rounds.append(len(batch))
            try:
                results = self.planner.plan_batch([p.request for p in batch])
                for pending, result in zip(batch, results):
                    pending.result = result
            except Exception as error:  # handed to every waiting client, never swallowed
                for pending in batch:
                    pending.error = error
            for pending in batch:
                pending.done.set()


class PlannerClient:
    """One client of a `BatchingPlanner`, with the `Planner` interface MPC uses."""

    def __init__(self, batching: BatchingPlanner, session: PlanSession):
        self._batching = batching
        self.session = session
        planner = batching.planner
        self.planner = planner
        self.world_model = planner.world_model
        self.config = planner.config
        self.action_dim = planner.action_dim
        self.state_dim = planner.state_dim
        self.distance_kind = planner.distance_kind
        self._closed = False

    def reset(self, seed: int | None = None) -> None:
        self.session.reset(seed)

    def encode(self, frames):
        return self.planner.encode(frames)

    def encode_goal(self, goal, frame_hw=None):
        return self.planner.encode_goal(goal, frame_hw)

    def env_actions(self, action) -> np.ndarray:
        return self.planner.env_actions(action)

    def plan(self, frames, state, goal, *, context_actions=None,
             budgets: Sequence[int] | None = None) -> PlanResult:
        frames = check_frames(frames)
        check_state(state, frames.shape[0], self.state_dim)
        return self.plan_encoded(self.planner.encode(frames), state, goal,
                                 context_actions=context_actions, budgets=budgets,
                                 frame_hw=frames.shape[1:3])

    def plan_encoded(self, z_context, states, goal, *, context_actions=None,
                     budgets: Sequence[int] | None = None,
                     frame_hw: tuple[int, int] | None = None) -> PlanResult:
        request = self.planner.request(z_context, states, goal, context_actions=context_actions,
                                       budgets=budgets, frame_hw=frame_hw, session=self.session)
        return self._batching.submit(request)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._batching._release()

    def __enter__(self) -> "PlannerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
