"""Helpers of the fault campaign (scripts/fault_campaign.py): commands run as a user runs them,
process trees, kills, small file systems and the checks every row makes.

Standard library only (plus the project's `vjepa2.files` for reading logs), so the campaign
process stays light while the commands under test run in their own processes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a crash prints; a row fails if any of it reaches stderr.
CRASH_MARKERS = ("Traceback (most recent call last)", "Exception ignored", "Segmentation fault",
                 "Fatal Python error", "core dumped")
TEMP_NAME = re.compile(r"^\..+\.tmp\d*$|^\.ckpt-")


@dataclasses.dataclass
class Row:
    """One fault: what was done, what should happen, what did, and whether data was lost."""

    fault: str
    expected: str
    observed: str = ""
    lost: str = "none"
    ok: bool = False
    skipped: str | None = None

    def result(self) -> str:
        return f"skipped ({self.skipped})" if self.skipped else ("pass" if self.ok else "FAIL")


def command_env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1",
               KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def vjepa2(*args) -> list[str]:
    return [sys.executable, "-m", "vjepa2", *map(str, args)]


@dataclasses.dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    def crashes(self) -> list[str]:
        found = [m for m in CRASH_MARKERS if m in self.stderr or m in self.stdout]
        if self.rc in (-11, 139, -6, 134):
            found.append(f"exit {self.rc}")
        return found

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines()
                if line.startswith("vjepa2 ") and ": error:" in line]

    def one_line(self) -> bool:
        return not self.crashes() and len(self.error_lines()) == 1


def run(argv, cwd, timeout=600) -> Result:
    """Runs a command to its end (killing its whole session on a timeout)."""
    return finish(start(argv, cwd), timeout)


class Command:
    """A running command in its own session (a terminal's job). Output goes to files, not
    pipes: children that inherit a pipe would keep a reader waiting after the parent died."""

    def __init__(self, argv, cwd):
        import tempfile

        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.popen = subprocess.Popen(argv, cwd=cwd, env=command_env(), stdout=self.out,
                                      stderr=self.err, stdin=subprocess.DEVNULL, text=True,
                                      start_new_session=True)
        self.pid = self.popen.pid

    def poll(self):
        return self.popen.poll()

    def result(self) -> Result:
        self.out.seek(0)
        self.err.seek(0)
        result = Result(self.popen.returncode, self.out.read(), self.err.read())
        self.out.close()
        self.err.close()
        return result


def start(argv, cwd) -> Command:
    return Command(argv, cwd)


def finish(command: Command, timeout=600) -> Result:
    try:
        command.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command.pid, signal.SIGKILL)
        command.popen.wait()
        command.err.write(f"\n[campaign: killed after {timeout} s]")
    return command.result()


# ------------------------------------------------------------------------ process trees


def _ppid_map() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # zombies hold no memory and run nothing
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`."""
    parents = _ppid_map()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids) -> set[int]:
    live = set(_ppid_map())
    return {p for p in pids if p in live}


def kill9(command: Command, settle: float = 5.0) -> tuple[set[int], set[int], Result]:
    """`kill -9` of the command's own process (not its children), as a crash or the OOM killer
    does. Returns `(children before, children still alive after `settle` s, its output)`; the
    survivors are then killed so that no row leaves processes behind."""
    command.popen.send_signal(signal.SIGSTOP)  # frozen at this instant, mid-write if it was
    children = descendants(command.pid)  # (scanning /proc takes a while on a busy machine)
    command.popen.kill()
    command.popen.wait()
    deadline = time.monotonic() + settle
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = alive(children)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return children, orphans, command.result()


def wait_for(predicate, process, timeout=300.0, poll=0.05) -> bool:
    """Polls `predicate()` until true; False if the process ended or time ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    return False


# ------------------------------------------------------------------------ folders


def temps(folder) -> list[Path]:
    """Temp files and folders of killed writes under `folder`."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return [p for p in folder.rglob(".*") if TEMP_NAME.match(p.name)]


def size_mb(paths) -> float:
    """MB in files and folders (which may vanish while counted: a rename ends a write)."""
    total = 0
    for path in paths:
        try:
            files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
            total += sum(f.stat().st_size for f in files)
        except OSError:
            continue
    return total / 2**20


def metric_steps(run_dir) -> list[int]:
    from vjepa2.files import read_jsonl

    records, _ = read_jsonl(Path(run_dir) / "metrics.jsonl", repair=False)
    return [int(r["step"]) for r in records]


def line_count(path) -> int:
    path = Path(path)
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@contextlib.contextmanager
def tmpfs(path, size: str):
    """A tmpfs of `size` mounted at `path` (root only); yields None and the reason if the
    machine does not allow mounting one."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        reason = (mounted.stderr.strip().splitlines() or ["mount failed"])[-1]
        yield None, f"cannot mount a tmpfs here: {reason}"
        return
    try:
        yield path, None
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def summary(result: Result, limit: int = 150) -> str:
    """The command's error line (or its last stderr line), shortened for the table."""
    lines = result.error_lines() or [line for line in result.stderr.splitlines() if line.strip()]
    text = lines[-1] if lines else "(no output)"
    return text if len(text) <= limit else text[:limit - 3] + "..."
