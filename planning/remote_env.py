"""`RemoteEnv`: a gymnasium environment that lives in its own process.

MuJoCo's EGL renderer and TensorFlow crash when loaded in one process (both bring LLVM). A
planner needs TensorFlow (or JAX) for its world model and the tasks need the renderer, so the
environment runs in a child process that never imports either, and `RemoteEnv` forwards
`reset`, `step`, `render` and `close` to it over a socket pair.

How the child is started, and why:

- It is a fresh interpreter (`subprocess`, not `multiprocessing`): `multiprocessing`'s spawn
  re-imports the parent's `__main__` in the child, and a script that imports Keras at the top
  would bring TensorFlow into the env process with it.
- This file is loaded in the child by its path, not as `planning.remote_env`: importing the
  `planning` package runs `planning/__init__.py`, which imports Keras. Hence this module uses
  only the standard library, numpy and gymnasium at import time.
- After building the env the child checks that none of `forbid_modules` (TensorFlow, Keras,
  JAX by default) was imported on the way, and fails with a clear error if one was.
- The child ignores Ctrl-C (the terminal sends SIGINT to the whole process group); the parent
  handles the interrupt and closes the child. If the parent dies, the child reads end-of-file
  on its socket and exits; a child busy in a long call is ended by `vjepa2.processes`'
  watchdog (and, for a RemoteEnv made on the main thread, the kernel's parent-death signal).

A child that crashes (segfault, `os._exit`, killed) makes the pending call raise
`RemoteEnvError` naming its exit code or signal, within `poll_interval` seconds; a call that
takes longer than `timeout` seconds kills the child and raises. Exceptions raised by the env
inside the child are re-raised in the parent with their type (when it can be unpickled) and the
child's traceback attached as a note.

A *child policy* runs next to the env, for scripted experts that read privileged simulator
state through `env.unwrapped` (which cannot cross the process boundary): `child_policy` names a
factory `"module:function"` called in the child as `factory(env=env, **child_policy_kwargs)`
(e.g. `"envs.policies:make_policy"` with `{"name": "reach"}`); it
returns an object with `reset(seed)` and `__call__(obs) -> action`. `step_policy()` then asks it
for an action at the current observation and steps the env with it, in one round trip.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from multiprocessing.connection import Connection
from typing import Any, Callable

import gymnasium
import numpy as np

DEFAULT_FORBIDDEN_MODULES = ("tensorflow", "keras", "jax")

# The child loads this file by path (see the module docstring) and calls `_serve`.
_BOOTSTRAP = (
    "import importlib.util, json, sys\n"
    "sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]\n"
    "spec = importlib.util.spec_from_file_location('_vjepa2_remote_env_child', sys.argv[2])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module._serve(int(sys.argv[3]))\n"
)


class RemoteEnvError(RuntimeError):
    """The env process failed to start, died, timed out, or could not be reached."""


# ---------------------------------------------------------------------------- child side


def _resolve(reference: str) -> Callable:
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:attribute'; received {reference!r}")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _check_forbidden(spec: dict) -> None:
    bad = sorted(m for m in spec["forbid_modules"] if m in sys.modules)
    if bad:
        raise RuntimeError(
            f"the env process imported {', '.join(bad)} while building {spec['env_id']!r}; "
            "MuJoCo's EGL renderer crashes next to TensorFlow/JAX, so the env's modules must "
            "not import them")


class _Server:
    """Holds the env (and an optional child policy) in the child and answers requests."""

    def __init__(self, spec: dict):
        for name in spec["modules"]:
            importlib.import_module(name)
        _check_forbidden(spec)
        self.env = gymnasium.make(spec["env_id"], **spec["kwargs"])
        try:
            _check_forbidden(spec)
        except RuntimeError:
            self.env.close()
            raise
        self.policy = None
        if spec["policy"] is not None:
            self.policy = _resolve(spec["policy"])(env=self.env, **spec["policy_kwargs"])
        self.obs = None

    def describe(self) -> dict:
        env = self.env
        return {
            "observation_space": env.observation_space,
            "action_space": env.action_space,
            "metadata": dict(env.metadata),
            "render_mode": env.render_mode,
            "spec": env.spec,
            "pid": os.getpid(),
        }

    def reset(self, seed=None, options=None):
        self.obs, info = self.env.reset(seed=seed, options=options)
        if self.policy is not None:
            self.policy.reset(seed)
        return self.obs, info

    def step(self, action):
        result = self.env.step(action)
        self.obs = result[0]
        return result

    def step_policy(self):
        if self.policy is None:
            raise RuntimeError("step_policy needs a child policy (RemoteEnv(child_policy=...))")
        if self.obs is None:
            raise RuntimeError("call reset() before step_policy()")
        t0 = time.perf_counter()
        action = np.asarray(self.policy(self.obs))
        seconds = time.perf_counter() - t0
        return (action, seconds), self.step(action)

    def render(self):
        return self.env.render()

    def call(self, name, args, kwargs):
        attr = getattr(self.env.unwrapped, name)
        return attr(*args, **kwargs) if callable(attr) else attr


def _error_payload(error: BaseException) -> tuple:
    text = "".join(traceback.format_exception(error))
    try:
        blob = pickle.dumps(error)
        pickle.loads(blob)  # some exceptions pickle but cannot be rebuilt
    except Exception:  # noqa: BLE001 - any failure means: send the text only
        blob = None
    return ("error", type(error).__name__, str(error), text, blob)


def _serve(fd: int) -> None:
    """The child's main loop: one request in, one reply out, until `close` or end-of-file."""
    # Ctrl-C reaches the whole process group; the parent decides when the env closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    server = None
    try:
        try:
            spec = conn.recv()
            from vjepa2.processes import die_with_parent  # standard library only

            die_with_parent(spec["parent_pid"], pdeathsig=spec["pdeathsig"])
            server = _Server(spec)
            conn.send(("ok", server.describe()))
        except Exception as error:  # noqa: BLE001 - reported to the parent, then exit
            conn.send(_error_payload(error))
            return
        while True:
            try:
                command, payload = conn.recv()
            except EOFError:  # the parent went away
                return
            if command == "close":
                server.env.close()
                server = None
                conn.send(("ok", None))
                return
            try:
                result = getattr(server, command)(*payload)
                reply = ("ok", result)
            except Exception as error:  # noqa: BLE001 - reported to the parent, which raises
                reply = _error_payload(error)
            conn.send(reply)
    finally:
        if server is not None:
            server.env.close()
        conn.close()


# ---------------------------------------------------------------------------- parent side


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _kill(process: subprocess.Popen, conn: Connection) -> None:
    """Finalizer for a `RemoteEnv` that was never closed: no process is left behind."""
    if process.poll() is None:
        process.kill()
        process.wait()
    conn.close()


class RemoteEnv(gymnasium.Env):
    """A gymnasium environment running in a child process that never imports TensorFlow.

    Behaves like the env: `reset(seed=, options=)`, `step(action)`, `render()`, `close()`, the
    `observation_space`, `action_space`, `metadata`, `render_mode` and `spec` of the child's
    env, and use as a context manager. Observations and infos are sent back whole (pickled), so
    image observations and info dicts holding goal images pass through unchanged.

    Args:
        env_id: a registered gymnasium id; gymnasium's `"module:Env-v0"` form also works.
        modules: modules the child imports before `gymnasium.make` (registration), e.g.
            `("envs",)`. They must not import TensorFlow, Keras or JAX.
        child_policy: optional `"module:function"` (or a module-level function) called in the
            child as `function(env=env, **child_policy_kwargs)` to build a policy that runs next
            to the env (see `step_policy`); its module must not import TensorFlow either.
        child_policy_kwargs: keyword arguments of `child_policy`.
        timeout: seconds any single call may take before the child is killed and
            `RemoteEnvError` raised (start-up included).
        poll_interval: seconds between checks that the child is still alive while waiting.
        forbid_modules: modules that must not be loaded in the child after building the env.
        **kwargs: passed to `gymnasium.make(env_id, **kwargs)` in the child.

    Example:

    >>> with RemoteEnv("VJEPA/Reach-v0", modules=("envs",), variation="heldout") as env:
    ...     obs, info = env.reset(seed=0)
    ...     obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    """

    def __init__(self, env_id: str, *, modules: tuple[str, ...] | list[str] = (),
                 child_policy: str | Callable | None = None,
                 child_policy_kwargs: dict | None = None, timeout: float = 300.0,
                 poll_interval: float = 0.2,
                 forbid_modules: tuple[str, ...] = DEFAULT_FORBIDDEN_MODULES, **kwargs):
        if timeout <= 0 or poll_interval <= 0:
            raise ValueError("timeout and poll_interval must be > 0; received "
                             f"timeout={timeout}, poll_interval={poll_interval}")
        if callable(child_policy):
            child_policy = f"{child_policy.__module__}:{child_policy.__qualname__}"
        if child_policy is None and child_policy_kwargs:
            raise ValueError("child_policy_kwargs given without child_policy")
        self.env_id = env_id
        self.child_policy = child_policy
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self._closed = False
        spec = {
            "env_id": env_id,
            "kwargs": dict(kwargs),
            "modules": tuple(modules),
            "policy": child_policy,
            "policy_kwargs": dict(child_policy_kwargs or {}),
            "forbid_modules": tuple(forbid_modules),
            "parent_pid": os.getpid(),
            # The kernel signal follows the starting thread: safe only from the main thread.
            "pdeathsig": threading.current_thread() is threading.main_thread(),
        }
        parent_sock, child_sock = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, json.dumps([p for p in sys.path if p]),
                 os.path.abspath(__file__), str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                # The child's prints (library notices) go to stderr: stdout is the caller's.
                stdout=2,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self._conn = Connection(parent_sock.detach())
        self._finalizer = weakref.finalize(self, _kill, self._process, self._conn)
        try:
            self._conn.send(spec)
            info = self._receive("start")
        except BaseException:
            self._shutdown(graceful=False)
            raise
        self.observation_space = info["observation_space"]
        self.action_space = info["action_space"]
        self.metadata = info["metadata"]
        self.render_mode = info["render_mode"]
        self.spec = info["spec"]
        self.pid = info["pid"]

    # -- transport -------------------------------------------------------------------------

    def _receive(self, what: str):
        deadline = time.monotonic() + self.timeout
        while not self._conn.poll(self.poll_interval):
            code = self._process.poll()
            if code is not None:
                self._shutdown(graceful=False)
                raise RemoteEnvError(f"the env process for {self.env_id!r} {_describe_exit(code)} "
                                     f"during {what}() (its stderr is above)")
            if time.monotonic() > deadline:
                self._shutdown(graceful=False)
                raise RemoteEnvError(f"the env process for {self.env_id!r} did not answer "
                                     f"{what}() within {self.timeout:g} s; it was killed")
        try:
            reply = self._conn.recv()
        except (EOFError, OSError) as error:
            code = self._process.wait(timeout=self.timeout)
            self._shutdown(graceful=False)
            raise RemoteEnvError(f"the env process for {self.env_id!r} {_describe_exit(code)} "
                                 f"during {what}()") from error
        if reply[0] == "ok":
            return reply[1]
        _, type_name, message, text, blob = reply
        error = pickle.loads(blob) if blob is not None else None
        if what == "start":
            self._shutdown(graceful=False)
            raise RemoteEnvError(f"the env process for {self.env_id!r} failed to start: "
                                 f"{type_name}: {message}") from error
        if error is None:
            error = RemoteEnvError(f"{type_name} in the env process: {message}")
        error.add_note(f"raised in the env process (pid {self.pid}):\n{text}")
        raise error

    def _request(self, command: str, *payload):
        if self._closed:
            raise RemoteEnvError(f"{command}() on a closed RemoteEnv({self.env_id!r})")
        try:
            self._conn.send((command, payload))
        except (BrokenPipeError, ConnectionResetError, OSError) as error:
            code = self._process.wait(timeout=self.timeout)
            self._shutdown(graceful=False)
            raise RemoteEnvError(f"the env process for {self.env_id!r} {_describe_exit(code)} "
                                 f"before {command}()") from error
        return self._receive(command)

    def _shutdown(self, graceful: bool, wait: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if graceful and self._process.poll() is None:
                self._conn.send(("close", ()))
                if self._conn.poll(wait):
                    self._conn.recv()
                self._process.wait(timeout=wait)
        except (OSError, EOFError, subprocess.TimeoutExpired):
            # A child that cannot close cleanly is killed below; nothing else to do about it.
            pass
        finally:
            self._finalizer()  # kills the child if still alive, closes the socket

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Resets the child's env (and its child policy, with the same seed)."""
        return self._request("reset", seed, options)

    def step(self, action):
        """Steps the child's env; returns `(obs, reward, terminated, truncated, info)`."""
        return self._request("step", np.asarray(action))

    def step_policy(self):
        """Steps the env with the child policy's action for the current observation.

        Returns:
            `(action, policy_seconds, (obs, reward, terminated, truncated, info))`, where
            `policy_seconds` is the time the policy took to choose the action.
        """
        if self.child_policy is None:
            raise RuntimeError("step_policy needs a child policy (RemoteEnv(child_policy=...))")
        (action, seconds), result = self._request("step_policy")
        return action, seconds, result

    def render(self):
        """The child env's `render()`."""
        return self._request("render")

    def call(self, name: str, *args, **kwargs) -> Any:
        """Calls method `name` of the child's `env.unwrapped` (or reads the attribute)."""
        return self._request("call", name, args, kwargs)

    def close(self) -> None:
        """Closes the env and ends the child (killing it if it does not exit in 10 s).

        Safe to call more than once, and after the child died.
        """
        self._shutdown(graceful=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "RemoteEnv":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid {self.pid}"
        return f"RemoteEnv({self.env_id!r}, {state})"
