"""Training on many devices and hosts with an existing engine (`--distribute`).

- `none`: one device.
- `mirrored`: `tf.distribute.MirroredStrategy` over every GPU of one host, or without one
  every logical CPU device (TensorFlow).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` over hosts, each running the
  same command; the hosts and this worker's index come from the `TF_CONFIG` environment
  variable (TensorFlow).
- `data_parallel`: `keras.distribution.DataParallel` over every device of every process (JAX);
  several processes (hosts) first join through `initialize_processes` (the command line's
  `--coordinator HOST:PORT --num-processes N --process-id I`).

Under several workers (processes) every worker runs the whole program, and:

- each reads only its share of the data: in pretraining its rows of every global batch (the
  data modules take `shard=(workers, index)`; `vjepa2.data.shards`), in fine-tuning its own
  episode files (`--data-shards`). Either way the global batches are those of one process
  with the same `--batch-size` (and `--data-shards`), and no clip is decoded twice;
- only the chief (worker 0) writes into the run folder (`Distribution.output_folder`): the
  other workers take part in every save, as `tf.distribute` expects of them, but write into a
  private temp folder outside it, removed when they finish. Every worker reads the run folder
  (a resumed run restores its checkpoint on each worker), so on several hosts `--out` must be
  one shared folder for `--resume`.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from vjepa2.errors import UsageError

DISTRIBUTE_CHOICES = ("none", "mirrored", "multi_worker", "data_parallel")
DISTRIBUTE_HELP = ("multi-device training: tf.distribute.MirroredStrategy (TensorFlow, one "
                   "host), MultiWorkerMirroredStrategy (TensorFlow, hosts from TF_CONFIG) or "
                   "keras.distribution.DataParallel (JAX, all devices of all processes; see "
                   "--coordinator)")
COORDINATOR_HELP = ("JAX multi-process (--distribute data_parallel): HOST:PORT of process 0, "
                    "with --num-processes and --process-id")
NUM_PROCESSES_HELP = "JAX multi-process: processes in the run"
PROCESS_ID_HELP = "JAX multi-process: this process's index (0 writes the run files)"


def check_distribution_fields(config) -> None:
    """The distribution fields of a training config (`distribute`, `coordinator`,
    `num_processes`, `process_id`), checked in its `__post_init__`."""
    if config.distribute not in DISTRIBUTE_CHOICES:
        raise UsageError(f"distribute must be one of {', '.join(DISTRIBUTE_CHOICES)}; received "
                         f"{config.distribute!r}")
    if _check_processes(config.coordinator, config.num_processes, config.process_id) and \
            config.distribute != "data_parallel":
        raise UsageError(f"--coordinator, --num-processes and --process-id start JAX processes "
                         f"for --distribute data_parallel; received --distribute "
                         f"{config.distribute} (TensorFlow workers read TF_CONFIG)")


def _check_processes(coordinator, num_processes, process_id) -> bool:
    """Whether a multi-process run is named; raises `UsageError` for an incomplete or
    inconsistent set of values."""
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if not any(given):
        return False
    if not all(given):
        raise UsageError("--coordinator, --num-processes and --process-id go together; "
                         f"received {coordinator!r}, {num_processes!r}, {process_id!r}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UsageError(f"--process-id must be in [0, --num-processes); received "
                         f"{process_id} of {num_processes}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--coordinator must be HOST:PORT; received {coordinator!r}")
    return True


def start_distribution(config) -> "Distribution":
    """Joins the processes of a multi-process run (if the config names them), then makes the
    config's `Distribution`. Call first, before anything runs on the backend."""
    initialize_processes(config.coordinator, config.num_processes, config.process_id)
    return Distribution(config.distribute)


def initialize_processes(coordinator: str | None, num_processes: int | None,
                         process_id: int | None) -> None:
    """Joins this process to a multi-process JAX run (`keras.distribution.initialize`, which
    calls `jax.distributed.initialize`). Call before anything runs on JAX.

    Args:
        coordinator: `HOST:PORT` of process 0, reachable from every process.
        num_processes: processes in the run (one per host, typically).
        process_id: this process's index, 0 to `num_processes - 1` (0 is the chief).

    Raises:
        UsageError: an incomplete or inconsistent set of values, or another backend.
    """
    if not _check_processes(coordinator, num_processes, process_id):
        return
    import keras

    if keras.backend.backend() != "jax":
        raise UsageError(f"--coordinator starts JAX processes; the active backend is "
                         f"{keras.backend.backend()} (TensorFlow workers read TF_CONFIG)")
    import jax

    if jax.distributed.is_initialized():  # a second run in the same process
        return
    keras.distribution.initialize(job_addresses=coordinator, num_processes=num_processes,
                                  process_id=process_id)


def mirrored_strategy(devices=None):
    """`tf.distribute.MirroredStrategy` over `devices` (default: every GPU; without one, every
    logical CPU device, where MirroredStrategy's own default would take one CPU).

    On CPU devices the gradients are summed on one device (`ReductionToOneDevice`) instead of
    by collective ops: a second strategy in the same process restarts the collective instance
    keys, and its all-reduce then aborts with "Shape mismatch in the collective instance 100"
    (tensorflow/tensorflow#62790). GPUs keep the default (NCCL).
    """
    import tensorflow as tf

    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
            [d.name for d in tf.config.list_logical_devices("CPU")]
    on_cpu = all("GPU" not in name.upper() for name in devices)
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice() if on_cpu else None)


class Distribution:
    """The engine a run trains under, and this worker's place in it.

    Make it before anything runs on TensorFlow: `MultiWorkerMirroredStrategy` configures the
    runtime's collective ops, which must happen first.

    Args:
        name: one of `DISTRIBUTE_CHOICES`.

    Attributes:
        strategy: the `tf.distribute` strategy, or None.
        workers: processes that feed data (1 unless multi-worker or multi-process).
        index: this worker's index; 0 is the chief.
        replicas: model replicas in each worker (its local devices).
    """

    def __init__(self, name: str):
        import keras

        if name not in DISTRIBUTE_CHOICES:
            raise UsageError(f"distribute must be one of {', '.join(DISTRIBUTE_CHOICES)}; received "
                             f"{name!r}")
        self.name = name
        self.strategy = None
        self.workers, self.index, self.replicas = 1, 0, 1
        backend = keras.backend.backend()
        if name in ("mirrored", "multi_worker"):
            if backend != "tensorflow":
                raise UsageError(f"--distribute {name} needs the tensorflow backend; the "
                                 f"active backend is {backend} (use data_parallel with jax)")
            self._start_tensorflow(name)
        elif name == "data_parallel":
            if backend != "jax":
                raise UsageError(f"--distribute data_parallel needs the jax backend; the "
                                 f"active backend is {backend} (use mirrored with tensorflow)")
            self._start_jax()

    def _start_tensorflow(self, name):
        import tensorflow as tf

        if name == "mirrored":
            self.strategy = mirrored_strategy()
            self.replicas = self.strategy.num_replicas_in_sync
            return
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = self.strategy.cluster_resolver
        spec = resolver.cluster_spec()
        chiefs = spec.num_tasks("chief") if "chief" in spec.jobs else 0
        workers = spec.num_tasks("worker") if "worker" in spec.jobs else 0
        self.workers = max(chiefs + workers, 1)
        task_id = resolver.task_id or 0
        self.index = task_id + chiefs if resolver.task_type == "worker" else 0
        self.replicas = self.strategy.num_replicas_in_sync // self.workers

    def _start_jax(self):
        import jax
        import keras

        self.workers, self.index = jax.process_count(), jax.process_index()
        self.replicas = jax.local_device_count()
        # Each process feeds its own rows of the global batch (`dataset`): no re-sharding.
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=keras.distribution.list_devices(), auto_shard_dataset=False))

    @property
    def chief(self) -> bool:
        """Whether this worker writes the run files."""
        return self.index == 0

    @property
    def shard(self) -> tuple[int, int]:
        """`(workers, index)`: which rows of every global batch this worker reads."""
        return self.workers, self.index

    def scope(self):
        """The context to build the model and optimizer in."""
        if self.strategy is not None:
            return self.strategy.scope()
        return contextlib.nullcontext()

    def check_batch(self, batch_size: int) -> int:
        """This worker's rows of a global batch of `batch_size`.

        Raises:
            UsageError: the batch does not split evenly over workers and their devices.
        """
        parts = self.workers * self.replicas
        if batch_size % parts:
            raise UsageError(f"batch size {batch_size} must split evenly over "
                             f"{self.workers} worker(s) x {self.replicas} device(s)")
        return batch_size // self.workers

    def dataset(self, stream, batch_size: int):
        """What `fit` takes: `stream` is this worker's tf.data stream of its rows of global
        batches of `batch_size`.

        Under `multi_worker` it goes to `distribute_datasets_from_function` as it is (no
        auto-sharding: the stream is this worker's already), split into one batch per local
        device; elsewhere `fit` splits each batch over the local devices itself.
        """
        if self.strategy is None or self.workers == 1:
            return stream

        def worker_stream(context):
            if context.num_input_pipelines != self.workers:
                raise RuntimeError(f"tf.distribute runs {context.num_input_pipelines} input "
                                   f"pipelines for {self.workers} workers")
            if self.replicas > 1:  # one batch per local device, in order
                return stream.rebatch(batch_size // (self.workers * self.replicas))
            return stream

        return self.strategy.distribute_datasets_from_function(worker_stream)

    @contextlib.contextmanager
    def output_folder(self, out):
        """Where this worker writes its run files: `out` for the chief, else a private temp
        folder outside it (removed at the end)."""
        if self.chief:
            yield Path(out)
            return
        folder = Path(tempfile.mkdtemp(prefix=f"vjepa2-worker{self.index}-"))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def describe(self) -> str:
        """One line for the progress output."""
        if self.name == "none":
            return "one device"
        return (f"{self.name}: worker {self.index} of {self.workers}, {self.replicas} "
                f"device(s) each")
