"""Child processes that end with their parent: no orphaned workers after a `kill -9`.

A worker process (the collector's MuJoCo workers, `planning.RemoteEnv`'s env process) blocks in
a read from its parent most of the time, but a parent killed with SIGKILL runs no cleanup, and a
worker busy rendering an episode, or holding a pipe that another child also holds open, would
run on, re-parented to init. `die_with_parent` arms two independent guards in the child:

- Linux `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills the child when the thread that
  started it exits. Arm it only when that thread lives as long as the process that owns the
  child (the main thread, or the thread that waits on the child), since a short-lived starting
  thread would fire it early.
- A watchdog thread polling `os.getppid()`: once the parent is gone the child is re-parented and
  the watchdog ends the process (`os._exit(1)`) within `poll` seconds. Works on every POSIX
  system and for any starting thread.

Standard library only: env processes load this without TensorFlow, Keras or JAX.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Asks the Linux kernel to send `sig` to this process when its parent thread exits.

    Returns:
        True if armed; False on other systems or if `prctl` is unavailable.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int, *, pdeathsig: bool = True, poll: float = 1.0) -> None:
    """Ends this process when process `parent_pid` (its parent) is gone.

    Call it first thing in the child (a worker initializer, a server loop).

    Args:
        parent_pid: the parent's pid, taken by the parent before starting the child (so that a
            parent that died before this call is noticed).
        pdeathsig: also arm `PR_SET_PDEATHSIG` (see the module docstring for when not to).
        poll: seconds between the watchdog's checks.
    """
    if pdeathsig:
        set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the guards were armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
