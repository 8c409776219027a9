"""Planner service throughput: plans per second for 1 and for N concurrent clients, and a load
test with malformed requests and dropped connections.

Starts `vjepa2 serve`'s service in this process on a free localhost port (the shipped model by
default, CEM of the reach preset), then:

1. one client plans `--plans` times in a row (frames in, first action out: one HTTP round trip
   per plan, the server encodes the frame);
2. `--clients` clients do the same at once, each in its own thread and session; the service
   plans their concurrent requests in one batched call;
3. the load test: the same clients again while a saboteur thread sends `--bad` malformed
   bodies, wrong shapes, NaN frames, unknown goals and connections dropped mid-request; every
   good plan must still come back well formed and `GET /health` must answer afterwards.

Prints one JSON object (and writes it with `--out`): plans/s, p50/p95 latency, the mean batch
size, the throughput ratio, and the load test's counts.

Usage:
    python scripts/bench_serve.py --out docs/results/bench_serve.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import threading
import time

import numpy as np


def _percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else None


def run_clients(url, clients, plans, frame, state, goal, seed0=0):
    from planning import RemotePlanner

    latencies, errors, spans = [], [], []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client(i):
        try:
            with RemotePlanner(url, seed=seed0 + i) as remote:
                remote.plan(frame, state, goal)  # warm: uploads the goal, traces the shape
                ready.wait()
                for _ in range(plans):
                    t0 = time.perf_counter()
                    result = remote.plan(frame, state, goal)
                    took = time.perf_counter() - t0
                    assert result.first_action.shape == (remote.action_dim,)
                    assert np.all(np.isfinite(result.first_action))
                    with lock:
                        latencies.append(took)
                with lock:
                    spans.append(time.perf_counter())
        except Exception as error:  # counted and reported, never hidden
            ready.abort()
            with lock:
                errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()  # every client warmed up: the timed part starts together
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = (max(spans) if spans else time.perf_counter()) - t0
    return {"clients": clients, "plans": len(latencies), "wall_s": wall,
            "plans_per_s": len(latencies) / wall if wall > 0 else None,
            "latency_p50_s": _percentile(latencies, 50),
            "latency_p95_s": _percentile(latencies, 95), "errors": errors}


def saboteur(url, count, stop, counts):
    """Sends malformed requests and drops connections until `count` are sent or `stop`."""
    import http.client

    host, port = url[len("http://"):].split(":")
    bodies = [b"{not json", b'{"session": "nope", "goal": "x", "states": 1}',
              json.dumps({"frames": {"dtype": "uint8", "shape": [9, 9, 9], "data": ""}}).encode(),
              json.dumps({"image": {"dtype": "float64", "shape": [2, 2, 3],
                                    "data": "AAAA"}}).encode()]
    paths = ["/plan", "/plan", "/encode", "/goals"]
    sent = 0
    while sent < count and not stop.is_set():
        kind = sent % 3
        try:
            if kind == 0:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request("POST", paths[sent % 4], body=bodies[sent % 4])
                status = conn.getresponse().status
                conn.close()
                counts["answered_4xx"] += int(400 <= status < 500)
            elif kind == 1:
                with socket.create_connection((host, int(port)), timeout=5) as sock:
                    sock.sendall(b"POST /plan HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{\"ses")
                counts["dropped_mid_body"] += 1
            else:
                with socket.create_connection((host, int(port)), timeout=5) as sock:
                    sock.sendall(b"GET /hea")
                counts["dropped_mid_line"] += 1
        except OSError:
            counts["client_side_errors"] += 1
        sent += 1
    counts["sent"] = sent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--plans", type=int, default=10, help="timed plans per client")
    parser.add_argument("--bad", type=int, default=60, help="bad requests in the load test")
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from planning import Planner
    from vjepa2.app.models import load_model
    from vjepa2.app.serve import PlannerService, make_server

    model, folder = load_model(args.model)
    conv = model.conventions
    planner = Planner(model, action_low=conv["action_low"], action_high=conv["action_high"])
    service = PlannerService(planner, {"path": str(folder)}, max_batch=args.clients,
                             window_seconds=args.window_ms / 1000.0)
    server = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    size = int(conv.get("image_size", 64)) * 2
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    goal = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    state = np.zeros(model.state_dim, "float32")
    try:
        one = run_clients(url, 1, args.plans, frame, state, goal)
        rounds_before = len(service.batching.rounds)
        many = run_clients(url, args.clients, args.plans, frame, state, goal, seed0=100)
        batches = list(service.batching.rounds)[rounds_before:]
        counts = dict(answered_4xx=0, dropped_mid_body=0, dropped_mid_line=0,
                      client_side_errors=0, sent=0)
        stop = threading.Event()
        bad = threading.Thread(target=saboteur, args=(url, args.bad, stop, counts))
        bad.start()
        loaded = run_clients(url, args.clients, max(2, args.plans // 2), frame, state, goal,
                             seed0=200)
        stop.set()
        bad.join()
        from planning import RemotePlanner
        with RemotePlanner(url) as check:
            healthy = check.health["status"] == "ok" and \
                check.plan(frame, state, goal).first_action.shape == (model.action_dim,)
    finally:
        server.shutdown()
        server.server_close()
        service.close()
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1min": os.getloadavg()[0]},
        "model": str(folder), "cem": "reach default preset (64 x 2 x H1)",
        "one_client": one, "concurrent": many,
        "mean_batch_concurrent": statistics.mean(batches) if batches else None,
        "throughput_ratio": (many["plans_per_s"] / one["plans_per_s"]
                             if one["plans_per_s"] else None),
        "load_test": {"good_plans": loaded["plans"], "good_errors": loaded["errors"],
                      "bad": counts, "answers_correctly_after": bool(healthy)},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        from vjepa2.files import atomic_write

        atomic_write(args.out, text + "\n")


if __name__ == "__main__":
    main()
