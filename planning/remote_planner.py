"""`RemotePlanner`: the `Planner` interface, planned by a `vjepa2 serve` service.

A robot process (or an evaluation) that should not hold the world model uses it in place of a
`Planner`: `plan`, `plan_encoded`, `encode`, `encode_goal`, `reset`, `env_actions`, so
`planning.MPC` runs with it unchanged. Each `RemotePlanner` is one session of the service (its
own noise and warm start); sub-goal schedules advance here, the CEM search runs there, batched
with every other client's. Goal images are uploaded once and referred to by id.
"""
from __future__ import annotations

import http.client
import time
import urllib.parse
from typing import Sequence

import numpy as np

from planning.api import (PlanInputError, _image_key, check_context_actions, check_frames,
                          check_goal, check_state, current_goal, split_env_actions)
from planning.cem import PlanResult
from planning.wire import WireError, decode_array, dumps, encode_array, loads


class RemotePlannerError(RuntimeError):
    """The service is unreachable, or answered a request with an error."""


class _RemoteModel:
    """What a client knows of the served world model."""

    def __init__(self, health: dict):
        self.conventions = health.get("conventions") or {}
        self.action_dim = health["action_dim"]
        self.state_dim = health["state_dim"]


class _ListState:
    list_schedule = None
    list_key = None


class RemotePlanner:
    """A session of a planner service, with the `Planner` interface.

    Args:
        url: the service (`vjepa2 serve` prints it), e.g. `"http://127.0.0.1:8765"`.
        seed: the session's noise seed (`None`: the service's CEM seed).
        timeout: seconds to wait for one answer.

    Raises:
        RemotePlannerError: the service cannot be reached or refuses the session.

    Example:

    >>> planner = RemotePlanner("http://127.0.0.1:8765")
    >>> result = planner.plan(frame, state, goal_image)      # result.first_action
    >>> planner.close()
    """

    def __init__(self, url: str = "http://127.0.0.1:8765", seed: int | None = None,
                 timeout: float = 60.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"url must be http://HOST:PORT; received {url!r}")
        self.url = url
        self._address = (parsed.hostname, parsed.port or 80)
        self._timeout = float(timeout)
        self._conn: http.client.HTTPConnection | None = None
        self.health = self._call("GET", "/health")
        self.world_model = _RemoteModel(self.health)
        self.action_dim = self.world_model.action_dim
        self.state_dim = self.world_model.state_dim
        self.distance_kind = self.health["distance_kind"]
        self.session = self._call("POST", "/sessions", {"seed": seed})["session"]
        self._goals: dict = {}
        self._list = _ListState()
        self._closed = False

    # -- transport -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        payload = None if body is None else dumps(body)
        for attempt in (0, 1):  # one reconnect: a kept-alive connection may have been closed
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(*self._address,
                                                            timeout=self._timeout)
                headers = {"Content-Type": "application/json"} if payload is not None else {}
                self._conn.request(method, path, body=payload, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if attempt or isinstance(error, TimeoutError):
                    raise RemotePlannerError(f"planner service at {self.url}: {method} {path} "
                                             f"failed: {error}") from None
        try:
            answer = loads(raw, "answer")
        except WireError as error:
            raise RemotePlannerError(f"planner service at {self.url}: {error}") from None
        if response.status == 400:
            raise PlanInputError(answer.get("error", "bad request"))
        if response.status != 200:
            raise RemotePlannerError(f"planner service at {self.url}: {method} {path}: "
                                     f"{response.status} {answer.get('error', '')}")
        return answer

    def close(self) -> None:
        """Ends the session (the service frees its state)."""
        if not self._closed:
            self._closed = True
            try:
                self._call("DELETE", f"/sessions/{self.session}")
            finally:
                if self._conn is not None:
                    self._conn.close()

    def __enter__(self) -> "RemotePlanner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the Planner interface -------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Starts a new episode: forgets the warm start and any sub-goal progress."""
        self._call("POST", f"/sessions/{self.session}/reset", {"seed": seed})
        self._list = _ListState()

    def encode(self, frames) -> np.ndarray:
        """Frames `(T, H, W, 3)` or `(H, W, 3)` -> latents `(T, N, D)`, encoded by the service."""
        frames = check_frames(frames)
        answer = self._call("POST", "/encode", {"frames": encode_array(frames)})
        return decode_array(answer["latents"], "latents")

    def encode_goal(self, goal, frame_hw=None) -> np.ndarray:
        """Uploads a goal image once (then refers to it by id); returns its latent `(N, D)`."""
        goal = check_goal(goal, frame_hw)
        return self._goal(goal)[1]

    def _goal(self, goal: np.ndarray) -> tuple[str, np.ndarray]:
        key = _image_key(goal)
        if key not in self._goals:
            answer = self._call("POST", "/goals", {"image": encode_array(goal)})
            self._goals[key] = (answer["goal"], decode_array(answer["latent"], "latent"))
        return self._goals[key]

    def env_actions(self, action) -> np.ndarray:
        return split_env_actions(action, self.world_model.conventions, self.action_dim)

    def plan(self, frames, state, goal, *, context_actions=None,
             budgets: Sequence[int] | None = None) -> PlanResult:
        """As `Planner.plan`."""
        frames = check_frames(frames)
        return self.plan_encoded(self.encode(frames), state, goal,
                                 context_actions=context_actions, budgets=budgets,
                                 frame_hw=frames.shape[1:3])

    def plan_encoded(self, z_context, states, goal, *, context_actions=None,
                     budgets: Sequence[int] | None = None,
                     frame_hw: tuple[int, int] | None = None) -> PlanResult:
        """As `Planner.plan_encoded`: the schedule advances here, the search runs remotely."""
        start = time.perf_counter()
        z = np.asarray(z_context, "float32")
        if z.ndim != 3:
            raise PlanInputError(f"z_context must be (T, N, D); received shape {z.shape}")
        states = check_state(states, z.shape[0], self.state_dim)
        context = check_context_actions(context_actions, z.shape[0], self.action_dim)
        goal_image, _, index, schedule, observed = current_goal(
            goal, budgets, self._list, self.encode_goal, z[-1], self.distance_kind, frame_hw)
        body = {"session": self.session, "latents": encode_array(z),
                "states": encode_array(states), "goal": self._goal(np.asarray(goal_image))[0]}
        if context is not None:
            body["context_actions"] = encode_array(context)
        answer = self._call("POST", "/plan", body)
        if schedule is not None:
            schedule.step()
        actions = decode_array(answer["actions"], "actions").astype("float32")
        timings = dict(answer["timings"], total=time.perf_counter() - start)
        return PlanResult(actions=actions, first_action=actions[0].copy(),
                          energy=float(answer["energy"]),
                          energy_trace={k: np.asarray(v, "float32")
                                        for k, v in answer["energy_trace"].items()},
                          timings=timings, goal_index=index, observed_energy=observed)
