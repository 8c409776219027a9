"""The planner service: remote plans equal local ones, batching, and bad requests are contained."""
import http.client
import json
import socket
import threading

import numpy as np
import pytest

from planning import MPC, PlanInputError, RemotePlanner
from planning.wire import encode_array
from tests.test_planning import PointEnv, _point_planner, render_point
from vjepa2.app.serve import PlannerService, make_server

GOAL = (0.55, 0.5)


@pytest.fixture
def service():
    planner = _point_planner(samples=32, elites=4, iterations=2)
    service = PlannerService(planner, {"path": "point-world"}, max_batch=4,
                             window_seconds=0.02, request_timeout=20)
    server = make_server(service, "127.0.0.1", 0, read_timeout=2.0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield service, url
    server.shutdown()
    server.server_close()
    service.close()


def _request(url, method, path, body=None, raw=None):
    host, port = url[len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=payload)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    return response.status, answer


def test_an_mpc_episode_through_the_service_equals_the_local_one(service):
    _, url = service
    goal = render_point(GOAL)
    local = MPC(_point_planner(samples=32, elites=4, iterations=2), PointEnv(), goal,
                max_steps=5).run(seed=3)
    with RemotePlanner(url) as remote:
        assert remote.health["model"] == {"path": "point-world"}
        episode = MPC(remote, PointEnv(), goal, max_steps=5).run(seed=3)
    np.testing.assert_allclose(episode.actions, local.actions, atol=1e-5)
    np.testing.assert_allclose(episode.observed_energy, local.observed_energy, atol=1e-5)


def test_concurrent_clients_are_planned_in_shared_rounds(service):
    svc, url = service
    goal = render_point(GOAL)
    outcomes = {}

    def client(i):
        with RemotePlanner(url, seed=i) as remote:
            outcomes[i] = MPC(remote, PointEnv(start=(0.1 + 0.1 * i, 0.3)), goal,
                              max_steps=4).run(seed=i).actions

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 4 and all(a.shape == (4, 2) for a in outcomes.values())
    assert max(svc.batching.rounds) > 1  # requests of different clients shared a call


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/plan", {"session": "nope", "goal": "x"}, 404, "unknown session"),
    ("POST", "/goals", {"image": {"dtype": "int8", "shape": [2], "data": ""}}, 400,
     "image.dtype must be one of"),
    ("POST", "/goals", {"image": {"dtype": "uint8", "shape": [4], "data": "AAA="}}, 400,
     "image.data holds 2 bytes"),
    ("POST", "/encode", {"frames": encode_array(np.full((32, 32, 3), np.nan, "float32"))}, 400,
     "frames contains NaN or inf"),
    ("POST", "/encode", {}, 400, "the request has no 'frames'"),
    ("GET", "/nowhere", None, 404, "no endpoint GET /nowhere"),
    ("DELETE", "/sessions/nope", None, 404, "unknown session 'nope'"),
])
def test_bad_requests_get_one_line_errors(service, method, path, body, status, message):
    _, url = service
    code, answer = _request(url, method, path, body)
    assert code == status and message in answer["error"] and "\n" not in answer["error"]


def test_malformed_and_dropped_requests_leave_the_service_answering(service):
    svc, url = service
    assert _request(url, "POST", "/plan", raw=b"{not json")[0] == 400
    host, port = url[len("http://"):].split(":")
    for _ in range(5):  # connections dropped mid-body and mid-request
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /plan HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"sess")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /heal")
    with RemotePlanner(url) as remote:
        with pytest.raises(PlanInputError, match="goal image is 16x16"):
            remote.plan(render_point((0.2, 0.2)), np.array([0.2, 0.2]),
                        render_point(GOAL)[:16, :16])
        result = remote.plan(render_point((0.2, 0.2)), np.array([0.2, 0.2]), render_point(GOAL))
    assert result.first_action.shape == (2,)
    status, health = _request(url, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["sessions"] == 0
