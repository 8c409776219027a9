"""The quick rows of the fault campaign: in-process checks and small commands (seconds each).

They also run in the default test run (tests/test_faults.py).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time

from fault_tools import Row, alive, run, temps, tmpfs, vjepa2


def _main(argv) -> tuple[int, list[str]]:
    """`vjepa2 ARGV` in this process; returns the exit code and its stderr lines."""
    from vjepa2.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


class _Model:
    """A world model of the Planner protocol whose latents ignore the frames."""

    action_dim = state_dim = 4
    conventions = {"frame_stride": 1}

    def encode(self, frames):
        import numpy as np

        return np.zeros((1, np.shape(frames)[1], 2, 3), "float32")

    def rollout(self, z_context, states, actions, context_actions=None):
        from keras import ops

        return ops.zeros((actions.shape[0], actions.shape[1], 2, 3))


def planner_inputs(c) -> Row:
    import numpy as np

    from planning.api import PlanInputError, Planner, check_frames, check_goal

    row = Row("Planner: float frames/goals in 0..255 or -5..5, NaN actions/states",
              "PlanInputError naming the accepted range; uint8 and float [0, 1] accepted")
    planner = Planner(_Model(), action_low=[-1] * 4, action_high=[1] * 4)
    rng = np.random.default_rng(0)
    ok_frame = rng.random((16, 16, 3)).astype("float32")
    bad = {"frames 0..255": lambda: planner.plan(ok_frame * 255, np.zeros(4), ok_frame),
           "frames -5..5": lambda: planner.plan(ok_frame * 10 - 5, np.zeros(4), ok_frame),
           "goal 0..255": lambda: planner.plan(ok_frame, np.zeros(4), ok_frame * 255),
           "env_actions NaN": lambda: planner.env_actions([np.nan] * 4),
           "state inf": lambda: planner.plan(ok_frame, [0, 0, np.inf, 0], ok_frame)}
    refused = {}
    for name, call in bad.items():
        try:
            call()
        except PlanInputError as error:
            refused[name] = str(error)
    check_frames((ok_frame * 255).astype("uint8"))
    check_goal(np.minimum(ok_frame + 1e-7, 1.0 + 1e-7))
    row.ok = len(refused) == len(bad)
    row.observed = (f"{len(refused)}/{len(bad)} refused, e.g. '{refused.get('frames 0..255')}'; "
                    "uint8 and [0, 1] floats planned")
    row.lost = "n/a"
    return row


def divergence_guard(c) -> Row:
    import numpy as np

    from vjepa2.train.callbacks import DivergenceGuard, PeriodicCheckpoint
    from vjepa2.train.run_folder import record_settings

    row = Row("loss finite but diverged (0.5 for 30 steps, then 4e10); resume with another --lr",
              "stops after 5 steps far above the running median; keeps the checkpoint before; "
              "config.json records the resumed run's settings")

    class Stub:
        stop_training = False

    def train(losses):
        stub, saved = Stub(), []
        guard = DivergenceGuard(0)
        callbacks = [guard, PeriodicCheckpoint(lambda m, s: saved.append(s), 1, 0, guard)]
        for cb in callbacks:
            cb.set_model(stub)
        for i, loss in enumerate(losses):
            for cb in callbacks:
                cb.on_train_batch_end(i, {"loss": loss})
            if stub.stop_training:
                break
        callbacks[1].on_train_end()
        return guard, saved

    guard, saved = train([0.5] * 30 + [4e10] * 10)
    noisy = np.random.default_rng(0).lognormal(np.log(0.5), 0.5, 300)
    noisy[::50] *= 4  # spikes of one step are not a divergence
    healthy, _ = train(noisy)
    folder = c.path("settings")
    record_settings(folder, {"lr": 5e-4, "steps": 10}, None)
    after = record_settings(folder, {"lr": 1e-4, "steps": 10}, 6)
    row.ok = (guard.bad_step == 35 and saved[-1] == 30 and healthy.bad_step is None
              and after["lr"] == 1e-4 and after["resumed"] == [{"step": 6,
                                                                "changed": {"lr": [5e-4, 1e-4]}}])
    row.observed = (f"stopped at step {guard.bad_step}, last checkpoint step {saved[-1]}; "
                    f"300 noisy healthy steps: {'not stopped' if healthy.bad_step is None else 'stopped'}; "
                    f"config.json lr {after['lr']}, resumed {after.get('resumed')}")
    row.lost = "none (steps 31-35 redone from step 30)" if row.ok else "a diverged checkpoint kept"
    return row


def out_checks_in_process(c) -> Row:
    row = Row("--out is a file, or another command's folder (make-videos, collect, pretrain, "
              "finetune-ac, evaluate)", "one line naming the path and what it holds, exit 2")
    folders = {}
    for name, marker in (("collected", "collect.json"), ("evaluated", "evaluation.json"),
                         ("trained", "checkpoints")):
        folders[name] = c.path(f"out-{name}")
        (folders[name] / marker).mkdir(parents=True, exist_ok=True)
    afile = c.path("out-file")
    afile.write_text("x")
    encoder = c.path("fake-encoder")
    encoder.mkdir(exist_ok=True)
    (encoder / "config.json").write_text("{}")
    (encoder / "model.weights.h5").write_text("")
    videos = c.path("out-videos")
    from vjepa2.data.synthetic import generate_videos

    generate_videos(videos, 1, frames=8, size=32)
    cases = [["make-videos", "--out", afile, "--count", 1],
             ["make-videos", "--out", folders["collected"], "--count", 1],
             ["collect", "--task", "reach", "--episodes", 1, "--out", folders["evaluated"]],
             ["pretrain", "--videos", videos, "--steps", 2, "--out", folders["evaluated"]],
             ["finetune-ac", "--encoder", encoder, "--logs", videos, "--steps", 2, "--out",
              folders["collected"]],
             ["evaluate", "--task", "reach", "--episodes", 1, "--policy", "random", "--out",
              folders["collected"]],
             ["evaluate", "--task", "reach", "--episodes", 1, "--policy", "random", "--out",
              folders["trained"]]]
    good = []
    for argv in cases:
        code, lines = _main(argv)
        if code == 2 and len(lines) == 1 and str(argv[argv.index("--out") + 1]) in lines[0]:
            good.append(lines[0])
    row.ok = len(good) == len(cases)
    row.observed = f"{len(good)}/{len(cases)} one line, exit 2, e.g. '{good[-1] if good else ''}'"
    row.lost = "none (nothing written)"
    return row


def killed_write_temps_removed(c) -> Row:
    from vjepa2.files import check_output_folder
    from vjepa2.train.checkpoint import CheckpointManager

    row = Row("temp files and folders of killed writes (checkpoint, atomic_write, episode, "
              "preset swap)", "removed when the folder is next opened; a swapped-out preset "
              "folder restored; other hidden files untouched")
    run_dir = c.path("leftovers")
    ckpts = run_dir / "checkpoints"
    partial = ckpts / ".ckpt-00000004.abcd1234.tmp"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "model.weights.h5").write_bytes(os.urandom(1 << 20))
    (ckpts / ".ckpt-00000006.old_name").mkdir(exist_ok=True)
    (run_dir / ".config.json.x1y2z3.tmp").write_text("{")
    (run_dir / ".encoder.old.tmp").mkdir(exist_ok=True)
    (run_dir / ".encoder.old.tmp" / "config.json").write_text("{}")
    (run_dir / "episodes").mkdir(exist_ok=True)
    (run_dir / "episodes" / ".episode-00000003.tfrecord.tmp1234").write_text("partial")
    (run_dir / ".git").mkdir(exist_ok=True)
    (run_dir / ".git" / ".keep.tmp").write_text("not ours")
    before = len(temps(run_dir))
    check_output_folder(run_dir, "checkpoints")
    CheckpointManager(ckpts).remove_partial()
    left = [p for p in temps(run_dir) if ".git" not in p.parts]
    row.ok = (not left and (run_dir / "encoder" / "config.json").exists()
              and (run_dir / ".git" / ".keep.tmp").exists())
    row.observed = (f"{before} leftovers -> {len(left)}; encoder/ restored: "
                    f"{(run_dir / 'encoder').exists()}; .git untouched")
    row.lost = "none" if row.ok else "a swapped-out folder"
    return row


def torn_metrics_line(c) -> Row:
    from vjepa2.errors import UsageError
    from vjepa2.files import read_jsonl
    from vjepa2.train.callbacks import MetricsLogger

    row = Row("metrics.jsonl with a half-written last line, then --resume",
              "the torn line dropped, steps up to the checkpoint kept; a damaged line in the "
              "middle is one error line")
    path = c.path("torn") / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 7))
                    + '{"step": 7, "lo')
    MetricsLogger(path, start_step=4).on_train_begin()
    steps = [r["step"] for r in read_jsonl(path)[0]]
    damaged = c.path("torn") / "damaged.jsonl"
    damaged.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    try:
        read_jsonl(damaged)
        message = None
    except UsageError as error:
        message = str(error)
    row.ok = steps == [1, 2, 3, 4] and message is not None and "line 2" in message
    row.observed = f"steps kept {steps}; damaged file: '{message}'"
    row.lost = "none (steps 5-6 are redone from the checkpoint at 4)"
    return row


_CHILD = ("import sys, time\nfrom vjepa2.processes import die_with_parent\n"
          "die_with_parent(int(sys.argv[1]), pdeathsig=sys.argv[2] == '1', poll=0.2)\n"
          "time.sleep(120)\n")
_PARENT = ("import os, subprocess, sys, time\n"
           "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid()), "
           "sys.argv[2]])\nprint(child.pid, flush=True)\ntime.sleep(120)\n")


def worker_dies_with_parent(c) -> Row:
    row = Row("kill -9 of a process whose worker is busy (parent-death signal; watchdog alone)",
              "the worker ends within 2 s either way")
    seen = []
    for pdeathsig in ("1", "0"):
        parent = subprocess.Popen([sys.executable, "-c", _PARENT, _CHILD, pdeathsig],
                                  stdout=subprocess.PIPE, text=True)
        child = int(parent.stdout.readline())
        time.sleep(1.0)  # the child has armed its guards
        parent.kill()
        parent.wait()
        parent.stdout.close()
        start = time.monotonic()
        while alive({child}) and time.monotonic() - start < 5:
            time.sleep(0.05)
        seen.append(None if alive({child}) else time.monotonic() - start)
        if alive({child}):
            os.kill(child, 9)
    row.ok = all(s is not None and s < 2 for s in seen)
    row.observed = ", ".join(f"{name}: " + ("still running (orphan)" if s is None else
                                            f"gone after {s:.2f} s")
                             for name, s in zip(("signal + watchdog", "watchdog only"), seen))
    row.lost = "n/a"
    return row


def disk_full_make_videos(c) -> Row:
    row = Row("full disk (256 KB tmpfs): vjepa2 make-videos",
              "one line naming the path and the space needed, exit 1, no temp files")
    with tmpfs(c.path("full-videos"), "256k") as (mount, reason):
        if mount is None:
            row.skipped = reason
            return row
        result = run(vjepa2("make-videos", "--out", mount / "v", "--count", 8, "--frames", 48,
                            "--size", 128), c.work, timeout=300)
        left = temps(mount)
    line = (result.error_lines() or [""])[0]
    row.ok = (result.rc == 1 and result.one_line() and "no space left on device" in line
              and "needed" in line and not left)
    row.observed = f"exit {result.rc}: '{line}'; {len(left)} temp files" + (
        f"; crash: {result.crashes()}" if result.crashes() else "")
    row.lost = "none (finished videos are whole)"
    return row


def disk_full_in_process(c) -> Row:
    from vjepa2 import cli

    row = Row("full disk met by h5py / TensorFlow (their own exception types)",
              "recognised as a full disk: one line, exit 1")

    class ResourceExhaustedError(Exception):
        pass

    errors = [OSError("[Errno 28] Unable to synchronously create dataset (file write failed: "
                      "errno = 28, error message = 'No space left on device')"),
              ResourceExhaustedError("run/episodes/.x.tmp1; No space left on device")]
    outcomes = []
    for error in errors:
        def fail(args, error=error):
            raise error
        outcomes.append(_main_with(cli, fail))
    row.ok = all(code == 1 and len(lines) == 1 and "no space left" in lines[0]
                 for code, lines in outcomes)
    row.observed = "; ".join(f"exit {code}: '{lines[0] if lines else ''}'"
                             for code, lines in outcomes)
    row.lost = "n/a"
    return row


def _main_with(cli, func):
    """`vjepa2 make-videos` with its command function replaced by `func`."""
    parser = cli.build_parser()
    args = parser.parse_args(["make-videos", "--out", "full-disk-out"])
    args.func = func
    err = io.StringIO()
    original = cli.build_parser
    try:
        cli.build_parser = lambda: _Fixed(args)
        with contextlib.redirect_stderr(err):
            code = cli.main([])
    finally:
        cli.build_parser = original
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


class _Fixed:
    def __init__(self, args):
        self.args = args

    def parse_args(self, argv):
        return self.args


ROWS = [planner_inputs, divergence_guard, out_checks_in_process, killed_write_temps_removed,
        torn_metrics_line, worker_dies_with_parent, disk_full_make_videos, disk_full_in_process]
