"""`vjepa2 serve`: the Planner over HTTP, batching concurrent requests into one plan call.

Endpoints (JSON bodies, arrays as base64: `planning.wire`; the schema at `GET /schema`):

- `GET /health`: status, the model (folder, weights digest), action and state sizes, the
  world model's conventions, the CEM and energy settings, open sessions, batch sizes so far;
- `POST /sessions` `{"seed"}` -> `{"session"}`: one robot or episode (its noise generator and
  warm start); `POST /sessions/<id>/reset` `{"seed"}`; `DELETE /sessions/<id>`;
- `POST /encode` `{"frames"}` -> `{"latents"}`;
- `POST /goals` `{"image"}` -> `{"goal", "latent"}`: a goal image stored under an id;
- `POST /plan` `{"session", "latents" | "frames", "states", "goal", "context_actions"?}` ->
  the plan (actions, energy, energy trace, observed energy, timings).

Plan requests from all clients are planned together (`planning.BatchingPlanner`): a round
starts when every open session waits or `window` seconds after its first request. Bad requests
get status 400 and `{"error": one line}`; unknown sessions or goals 404; a session already
planning 409; a plan that does not come back within the request timeout 504. A client that
disconnects mid-request only loses its own answer. SIGINT or SIGTERM stop the service after the
requests in flight. Bound to 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import signal
import sys
import threading
import time
import uuid
from typing import Any

import numpy as np

from planning.api import PlanInputError, Planner
from planning.batching import BatchingPlanner, PlannerClient
from planning.wire import WireError, decode_array, dumps, encode_array, loads, schema

MAX_BODY_BYTES = 256 * 1024 * 1024
MAX_GOALS = 256


class ServiceError(Exception):
    """A request the service refuses, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class _Session:
    client: PlannerClient
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class PlannerService:
    """The service's logic, apart from the network: `handle(method, path, body)`.

    Args:
        planner: the `Planner` every client plans with.
        model: what `GET /health` says of the model (folder, weights digest).
        max_batch: most plan requests in one call.
        window_seconds: how long a round waits for more requests.
        request_timeout: seconds a plan may take before the request gets 504.
        max_sessions: open sessions at most (a client that never closes cannot exhaust memory).
    """

    def __init__(self, planner: Planner, model: dict | None = None, *, max_batch: int = 16,
                 window_seconds: float = 0.005, request_timeout: float = 30.0,
                 max_sessions: int = 256):
        self.planner = planner
        self.model = dict(model or {})
        self.batching = BatchingPlanner(planner, max_batch=max_batch,
                                        window_seconds=window_seconds)
        self.request_timeout = float(request_timeout)
        self.max_sessions = int(max_sessions)
        self.sessions: dict[str, _Session] = {}
        self.goals: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.started = time.time()

    def close(self) -> None:
        with self._lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            session.client.close()
        self.batching.close()

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        """The status and JSON answer of one request; never raises."""
        try:
            parts = [p for p in path.split("?")[0].split("/") if p]
            request = loads(body) if method == "POST" else {}
            return 200, self._route(method, parts, request)
        except ServiceError as error:
            return error.status, {"error": str(error)}
        except (WireError, PlanInputError) as error:
            return 400, {"error": str(error)}
        except TimeoutError:
            return 504, {"error": f"the plan took longer than {self.request_timeout:g} s"}
        except Exception as error:  # reported to the client as one line, the service goes on
            return 500, {"error": f"{type(error).__name__}: {error}"}

    def _route(self, method: str, parts: list[str], request: dict) -> dict:
        routes = {
            ("GET", "health"): self._health, ("GET", "schema"): lambda _: schema(),
            ("POST", "sessions"): self._open, ("POST", "encode"): self._encode,
            ("POST", "goals"): self._goal, ("POST", "plan"): self._plan,
        }
        if len(parts) == 1 and (method, parts[0]) in routes:
            return routes[(method, parts[0])](request)
        if len(parts) >= 2 and parts[0] == "sessions":
            session_id = parts[1]
            if method == "DELETE" and len(parts) == 2:
                return self._close_session(session_id)
            if method == "POST" and parts[2:] == ["reset"]:
                self._session(session_id).client.reset(_seed(request))
                return {"session": session_id}
        raise ServiceError(404, f"no endpoint {method} /{'/'.join(parts)}")

    # -- endpoints -------------------------------------------------------------------------

    def _health(self, _: dict) -> dict:
        planner = self.planner
        return {"status": "ok", "model": self.model, "action_dim": planner.action_dim,
                "state_dim": planner.state_dim, "distance_kind": planner.distance_kind,
                "conventions": _jsonable(getattr(planner.world_model, "conventions", None)),
                "cem": dataclasses.asdict(planner.config),
                "sessions": len(self.sessions), "uptime_seconds": time.time() - self.started,
                "rounds": len(self.batching.rounds),
                "mean_batch": (float(np.mean(self.batching.rounds))
                               if self.batching.rounds else None)}

    def _open(self, request: dict) -> dict:
        with self._lock:
            if len(self.sessions) >= self.max_sessions:
                raise ServiceError(503, f"{self.max_sessions} sessions are open; close one "
                                   "(DELETE /sessions/<id>) first")
            session_id = uuid.uuid4().hex
            self.sessions[session_id] = _Session(self.batching.client(_seed(request)))
        return {"session": session_id}

    def _close_session(self, session_id: str) -> dict:
        with self._lock:
            session = self.sessions.pop(session_id, None)
        if session is None:
            raise ServiceError(404, f"unknown session {session_id!r}")
        session.client.close()
        return {"closed": session_id}

    def _session(self, session_id) -> _Session:
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise ServiceError(404, f"unknown session {session_id!r}")
        return session

    def _encode(self, request: dict) -> dict:
        frames = decode_array(_field(request, "frames"), "frames")
        return {"latents": encode_array(np.asarray(self.planner.encode(frames)))}

    def _goal(self, request: dict) -> dict:
        image = decode_array(_field(request, "image"), "image")
        latent = np.asarray(self.planner.encode_goal(image))
        goal_id = hashlib.sha1(np.ascontiguousarray(image).tobytes()
                               + str(image.shape).encode()).hexdigest()
        with self._lock:
            self.goals.pop(goal_id, None)
            self.goals[goal_id] = image
            while len(self.goals) > MAX_GOALS:
                self.goals.pop(next(iter(self.goals)))
        return {"goal": goal_id, "latent": encode_array(latent)}

    def _plan(self, request: dict) -> dict:
        session = self._session(request.get("session"))
        goal = self.goals.get(request.get("goal")) if isinstance(request.get("goal"), str) \
            else None
        if goal is None:
            raise ServiceError(404, f"unknown goal {request.get('goal')!r}; upload it with "
                               "POST /goals first")
        states = decode_array(_field(request, "states"), "states")
        context = request.get("context_actions")
        context = None if context is None else decode_array(context, "context_actions")
        if "latents" in request:
            z = decode_array(request["latents"], "latents").astype("float32")
            frame_hw = _frame_hw(request)
        else:
            frames = decode_array(_field(request, "frames"), "frames")
            z = self.planner.encode(frames)
            frame_hw = frames.shape[-3:-1]
        if not session.lock.acquire(blocking=False):
            raise ServiceError(409, "this session is already planning; a session's plans are "
                               "sequential (open one session per robot)")
        try:
            plan_request = self.planner.request(z, states, goal, context_actions=context,
                                                frame_hw=frame_hw, session=session.client.session)
            result = self.batching.submit(plan_request, timeout=self.request_timeout)
        finally:
            session.lock.release()
        return {"actions": encode_array(result.actions), "energy": result.energy,
                "energy_trace": {k: np.asarray(v).tolist()
                                 for k, v in result.energy_trace.items()},
                "observed_energy": result.observed_energy, "timings": _jsonable(result.timings)}


def _field(request: dict, name: str) -> Any:
    if name not in request:
        raise WireError(f"the request has no {name!r}")
    return request[name]


def _seed(request: dict) -> int | None:
    seed = request.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise WireError(f"seed must be an integer or null; received {seed!r}")
    return seed


def _frame_hw(request: dict):
    hw = request.get("frame_hw")
    if hw is None:
        return None
    if (not isinstance(hw, list) or len(hw) != 2
            or not all(isinstance(v, int) and v > 0 for v in hw)):
        raise WireError(f"frame_hw must be [height, width]; received {hw!r}")
    return tuple(hw)


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))


# ---------------------------------------------------------------------------------- network


def make_server(service: PlannerService, host: str = "127.0.0.1", port: int = 8765,
                read_timeout: float = 30.0) -> http.server.ThreadingHTTPServer:
    """An HTTP server (one thread per connection) answering with `service`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = read_timeout  # a client that stops sending mid-request is dropped

        def _answer(self, method: str) -> None:
            length = self.headers.get("Content-Length")
            body = b""
            try:
                if length is not None:
                    size = int(length)
                    if not 0 <= size <= MAX_BODY_BYTES:
                        raise ValueError
                    body = self.rfile.read(size)
                    if len(body) != size:
                        return  # the client went away mid-body
            except ValueError:
                status, answer = 400, {"error": "bad Content-Length"}
            else:
                status, answer = service.handle(method, self.path, body)
            payload = dumps(answer)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client disconnected; nobody else is affected

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._answer("GET")

        def do_POST(self):  # noqa: N802
            self._answer("POST")

        def do_DELETE(self):  # noqa: N802
            self._answer("DELETE")

        def log_message(self, *args):  # requests are not logged line by line
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(service: PlannerService, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serves until SIGINT or SIGTERM, then finishes the requests in flight and returns."""
    server = make_server(service, host, port)
    stop = threading.Event()

    def shutdown(signum, frame):
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"vjepa2 serve: planning on http://{host}:{server.server_address[1]} "
          "(GET /health; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        service.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("vjepa2 serve: stopped", file=sys.stderr, flush=True)


def serve_model(model: str = "shipped", task: str = "reach", preset: str | None = None,
                overrides: tuple[str, ...] | list[str] = (), *, host: str = "127.0.0.1",
                port: int = 8765, max_batch: int = 16, window_ms: float = 5.0,
                timeout: float = 30.0) -> None:
    """Loads a world model and serves its planner (the CEM and energy of a task's preset)."""
    from vjepa2.app.evaluation import resolve_preset
    from vjepa2.app.models import load_model, model_record
    from vjepa2.errors import UsageError

    name, planner_preset = resolve_preset(task, preset, list(overrides))
    if not (0 <= window_ms <= 10_000) or timeout <= 0 or max_batch < 1:
        raise UsageError(f"--window-ms must be in [0, 10000], --timeout > 0 and --max-batch "
                         f">= 1; received {window_ms}, {timeout}, {max_batch}")
    world_model, folder = load_model(model)
    conventions = dict(getattr(world_model, "conventions", None) or {})
    if "action_low" not in conventions or "action_high" not in conventions:
        raise UsageError(f"--model {model}: its conventions.json states no action bounds "
                         "(action_low, action_high); the service plans within them")
    planner = Planner(world_model, action_low=conventions["action_low"],
                      action_high=conventions["action_high"], config=planner_preset.cem,
                      energy=planner_preset.energy)
    record = model_record(world_model, folder)
    info = {k: record[k] for k in ("path", "weights_sha256", "class")}
    info.update(task=task, preset=name)
    service = PlannerService(planner, info, max_batch=max_batch,
                             window_seconds=window_ms / 1000.0, request_timeout=timeout)
    try:
        serve(service, host, port)
    except OSError as error:
        service.close()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
