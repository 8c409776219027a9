"""An evaluation spread over worker processes: on this machine, or on the hosts of a Ray cluster.

`evaluate(..., workers=Workers(count=K, engine=...))` splits the episodes still to do into K
shards (every K-th episode). Each shard runs in one worker process that loads the world model
once and runs its episodes exactly as the harness does in one process (with `parallel` envs and
one batched plan per step when asked). Engines:

- `"ray"` (the `ray` extra: `pip install "vjepa2-wm[ray]"`): each shard is a Ray task; `address`
  says where: `"local"` starts a Ray instance on this machine for the evaluation, `"auto"` joins
  the cluster of `ray start` on this machine, `"HOST:PORT"` another head node. Every host must
  have this package installed, and the model folder at the same path (or `"shipped"`); a worker
  checks the weights' SHA-256 against the one the driver recorded.
- `"processes"` (no extra): K child processes of this one (`multiprocessing`, spawn).

Only the driver (the process that called `evaluate`) writes the results folder. A worker sends
each finished episode back as a message as soon as it is done: its record, and the bytes of its
video when it has one (a worker on another host has no access to the folder). The driver writes
the video atomically and then appends the record, whose line marks the episode done, exactly as
the one-process harness does: the folder has the same files, records and `results.json`, and a
re-run continues it whatever the worker count. A worker that crashes loses only the episode it
was in and the ones after it in its shard; the others run to the end, and the evaluation then
stops with one line saying how many episodes are missing (re-run to continue). Ray tasks are
not retried (a retry would run the shard's finished episodes again).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Sequence

from vjepa2.errors import UsageError
from vjepa2.files import atomic_write

ENGINES = ("processes", "ray")
RAY_LOCAL = "local"
_END = object()  # a shard's stream has ended


@dataclasses.dataclass(frozen=True)
class Workers:
    """How an evaluation is spread over worker processes.

    Args:
        count: worker processes (shards); each loads the world model once and runs every
            `count`-th episode still to do.
        engine: `"ray"` (Ray tasks, on this machine or a cluster; needs the `ray` extra) or
            `"processes"` (child processes of this one).
        address: Ray only: `"local"` (default: a Ray instance started on this machine for the
            evaluation and stopped after it), `"auto"` (the cluster `ray start --head` runs
            here), or a head node's `HOST:PORT`. A Ray already initialised in this process is
            used as it is.
    """

    count: int = 2
    engine: str = "processes"
    address: str | None = None

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise UsageError(f"--workers must be a positive integer; received {self.count!r}")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown --engine {self.engine!r}; expected one of "
                             f"{', '.join(ENGINES)}")
        if self.address is not None and self.engine != "ray":
            raise UsageError(f"--ray-address {self.address} applies to --engine ray, not "
                             f"--engine {self.engine}")


def workers_from_flags(count: int | None, engine: str | None,
                       address: str | None) -> Workers | None:
    """`--workers K [--engine E] [--ray-address A]` as `Workers` (`None`: no `--workers`);
    an address alone means Ray."""
    if count is None:
        given = [flag for flag, value in (("--engine", engine), ("--ray-address", address))
                 if value]
        if given:
            raise UsageError(f"{' and '.join(given)} need{'s' * (len(given) == 1)} "
                             "--workers K")
        return None
    return Workers(count, engine or ("ray" if address else "processes"), address)


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """How a worker gets the world model: from its folder (`path`, or `"shipped"`), checked
    against the driver's weights digest, or as the object itself (pickled) when it has none."""

    path: str | None = None
    weights_sha256: str | None = None
    model: object = None

    def load(self):
        if self.path is None:
            return self.model
        from vjepa2.app.models import load_model, weights_digest

        model, folder = load_model(self.path)
        if self.weights_sha256 and weights_digest(folder) != self.weights_sha256:
            raise RuntimeError(f"the world model in {folder} on {socket.gethostname()} is not "
                               "the one the evaluation started with (its weights differ)")
        return model


def model_source(world_model, model_path, record: dict | None) -> ModelSource | None:
    """The `ModelSource` of the driver's model (`None` for the baselines)."""
    if world_model is None:
        return None
    if model_path is None:
        return ModelSource(model=world_model)
    from vjepa2.models.world_model import SHIPPED, shipped_model_dir

    folder = Path(model_path).resolve()
    path = SHIPPED if folder == shipped_model_dir().resolve() else str(folder)
    return ModelSource(path=path, weights_sha256=(record or {}).get("weights_sha256"))


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """What every worker of one evaluation shares (sent to each once).

    Args:
        settings: the evaluation's settings (`harness._settings`).
        setting: the planner episodes' `EpisodeSetting` (`None` for the baselines).
        videos: episodes with index below this are saved as video.
        parallel: envs per worker, planned for in one batched call per step.
        todo: `(index, seed)` of every episode still to do.
        model: the world model's `ModelSource` (`None` for the baselines).
    """

    settings: dict
    setting: object
    videos: int
    parallel: int
    todo: Sequence[tuple[int, int]]
    model: ModelSource | None


class _Outbox:
    """A worker's sink for `harness._Run`: finished episodes become messages (thread-safe)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.messages: queue.Queue = queue.Queue()

    def begin(self) -> None:
        self.messages.put({"kind": "started", "host": socket.gethostname(), "pid": os.getpid()})

    def video_path(self, seed: int) -> Path:
        return self.folder / f"episode-{seed:08d}.mp4"

    def add(self, record: dict) -> None:
        path, video = self.video_path(record["seed"]), None
        if path.exists():
            video = path.read_bytes()
            path.unlink()
        self.messages.put({"kind": "episode", "record": record, "video": video})


def run_shard(plan: ShardPlan, episodes: Sequence[tuple[int, int]]) -> Iterator[dict]:
    """Runs `episodes` (`(index, seed)` pairs) in this worker; yields each finished episode as
    a message as soon as it is done (`{"kind": "episode", "record": ..., "video": bytes|None}`),
    after a `{"kind": "started", ...}` once its envs and planner are up."""
    from envs.tasks import get_task
    from vjepa2.app.evaluation.harness import _Run  # the harness imports this module

    spec = get_task(plan.settings["task"])
    world_model = None if plan.model is None else plan.model.load()
    with tempfile.TemporaryDirectory(prefix="vjepa2-shard-") as folder:
        outbox = _Outbox(Path(folder))
        run = _Run(plan.settings, plan.setting, plan.videos, outbox)
        errors: list[BaseException] = []

        def work():
            try:
                if plan.parallel > 1:
                    run.parallel(spec, world_model, list(episodes), plan.parallel)
                else:
                    run.sequential(spec, world_model, list(episodes))
            except BaseException as error:  # re-raised below, in the worker's own thread
                errors.append(error)
            finally:
                outbox.messages.put(_END)

        thread = threading.Thread(target=work, name="shard", daemon=True)
        thread.start()
        while (message := outbox.messages.get()) is not _END:
            yield message
        thread.join()
        if errors:
            raise errors[0]


def spread(workers: Workers, recorder, plan: ShardPlan) -> None:
    """Runs `plan.todo` over the workers; `recorder` (the harness's) stores each episode.

    Raises:
        RuntimeError: a worker failed; the other workers' episodes are stored (one line).
    """
    shards = [list(plan.todo[k::workers.count]) for k in range(workers.count)]
    shards = [shard for shard in shards if shard]
    engine = _ray_streams if workers.engine == "ray" else _process_streams
    done = [0] * len(shards)
    failures: dict[int, BaseException] = {}
    with engine(workers, plan, shards) as streams:
        for shard, message in _merge(streams):
            if isinstance(message, BaseException):
                failures[shard] = message
            elif message["kind"] == "started":
                recorder.begin()
            else:
                if message["video"] is not None:  # before the record, which marks it done
                    path = recorder.video_path(message["record"]["seed"])
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(path, message["video"])
                recorder.add(message["record"])
                done[shard] += 1
    if failures:
        missing = sum(len(shards[k]) - done[k] for k in failures)
        first = failures[min(failures)]
        raise RuntimeError(
            f"{len(failures)} of {len(shards)} workers failed ({_one_line(first)}); "
            f"{missing} episodes are not done: re-run the same command to continue")


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None)  # a Ray task error wraps the worker's exception
    error = cause if isinstance(cause, BaseException) else error
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _merge(streams: Sequence[Iterator[dict]]) -> Iterator[tuple[int, object]]:
    """`(shard, message)` from every stream as it arrives; a stream's error arrives as the
    exception itself, after which that stream is over."""
    inbox: queue.Queue = queue.Queue()

    def pump(shard: int, stream: Iterator[dict]) -> None:
        try:
            for message in stream:
                inbox.put((shard, message))
        except Exception as error:  # the worker's failure, reported by the driver
            inbox.put((shard, error))
        finally:
            inbox.put((shard, _END))

    for shard, stream in enumerate(streams):
        threading.Thread(target=pump, args=(shard, stream), name=f"shard-{shard}",
                         daemon=True).start()
    open_streams = len(streams)
    while open_streams:
        shard, message = inbox.get()
        if message is _END:
            open_streams -= 1
        else:
            yield shard, message


# -- engines: each gives one stream of messages per shard, and ends its workers on exit ---------

@contextlib.contextmanager
def _ray_streams(workers: Workers, plan: ShardPlan, shards):
    ray = _import_ray()
    started = _ray_init(ray, workers)
    generators = []
    try:
        task = ray.remote(run_shard).options(num_cpus=1, max_retries=0)
        shared = ray.put(plan)
        generators = [task.remote(shared, shard) for shard in shards]
        yield [(ray.get(ref) for ref in generator) for generator in generators]
    finally:
        for generator in generators:  # an interrupted driver leaves no shard running
            ray.cancel(generator, force=True)
        if started:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install \"vjepa2-wm[ray]\"") from None
    return ray


def _ray_init(ray, workers: Workers) -> bool:
    """Connects to (or starts) Ray; True if this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    address = workers.address or RAY_LOCAL
    env = {k: os.environ[k] for k in ("KERAS_BACKEND",) if k in os.environ}
    kwargs = dict(address=address, logging_level=logging.WARNING, log_to_driver=False,
                  runtime_env={"env_vars": env} if env else None)
    if address == RAY_LOCAL:  # every shard at once, whatever the core count
        kwargs.update(include_dashboard=False, num_cpus=max(os.cpu_count() or 1, workers.count))
    elif address != "auto":
        _check_reachable(address)
    try:
        ray.init(**kwargs)
    except ConnectionError as error:
        raise UsageError(f"--ray-address {address}: {error}") from None
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A head node's `HOST:PORT` must answer (Ray itself retries an unreachable one for
    minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address must be local, auto or HOST:PORT; received {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise UsageError(f"--ray-address {address}: no Ray head node answers there "
                         f"({error.strerror or error}); start one with `ray start --head`") \
            from None


@contextlib.contextmanager
def _process_streams(workers: Workers, plan: ShardPlan, shards):
    context = multiprocessing.get_context("spawn")  # no TensorFlow state forked
    processes = []
    try:
        for shard in shards:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_process_main, name="vjepa2-evaluate-worker",
                                      args=(plan, shard, send, os.getpid()))
            process.start()
            send.close()
            processes.append((process, receive))
        yield [_receive(process, receive) for process, receive in processes]
    finally:
        for process, receive in processes:
            if process.is_alive():
                process.kill()
            process.join()
            receive.close()


def _receive(process, connection) -> Iterator[dict]:
    while True:
        try:
            kind, payload = connection.recv()
        except EOFError:
            process.join(5)
            raise RuntimeError(f"worker process {process.pid} ended with exit code "
                               f"{process.exitcode}") from None
        if kind == "error":
            raise RuntimeError(payload)
        if kind == "done":
            process.join()
            return
        yield payload


def _process_main(plan: ShardPlan, shard, connection, parent: int) -> None:
    """A `"processes"` worker: runs its shard and sends each message up the pipe."""
    from vjepa2.processes import die_with_parent

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and ends us
    try:
        for message in run_shard(plan, shard):
            connection.send(("message", message))
        connection.send(("done", None))
    except Exception as error:  # sent to the driver, which reports it
        connection.send(("error", _one_line(error)))
    finally:
        connection.close()
