"""The command rows of the fault campaign: real `vjepa2` commands killed, starved of disk,
fed corrupt files and bad arguments, then resumed and checked (minutes in all)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from fault_tools import (Row, alive, descendants, finish, kill9, line_count, metric_steps,
                         run, size_mb, start, summary, temps, tmpfs, vjepa2, wait_for)

STEPS = 8
EPISODES = 6


# ------------------------------------------------------------------------ inputs


def make_videos(folder: Path) -> Path:
    result = run(vjepa2("make-videos", "--out", folder, "--count", 6, "--frames", 24, "--size",
                        64, "--fps", 8), folder.parent)
    assert result.rc == 0, result.stderr
    (folder / "corrupt.mp4").write_bytes(os.urandom(4096))
    (folder / "empty.mp4").write_bytes(b"")
    return folder


def make_logs(folder: Path) -> Path:
    result = run(vjepa2("collect", "--task", "reach", "--episodes", 3, "--workers", 1,
                        "--image-size", 64, "--out", folder), folder.parent)
    assert result.rc == 0, result.stderr
    return folder


def pretrain_argv(c, out, *extra):
    return vjepa2("pretrain", "--videos", c.videos, "--out", out, "--steps", STEPS,
                  "--batch-size", 2, "--frames", 4, "--resolution", 64, "--checkpoint-every", 2,
                  "--workers", 2, *extra)


def finetune_argv(c, out, *extra):
    return vjepa2("finetune-ac", "--encoder", pretrained(c), "--logs", c.logs, "--out", out,
                  "--steps", STEPS, "--batch-size", 2, "--clip-length", 3,
                  "--checkpoint-every", 2, *extra)


def pretrained(c) -> Path:
    """A complete pretraining run (the kill row's, or one made here)."""
    if c.pretrained is None:
        out = c.path("pretrained")
        result = run(pretrain_argv(c, out), c.work)
        assert result.rc == 0, result.stderr
        c.pretrained = out
    return c.pretrained


def latest_ok(run_dir) -> bool | None:
    """True if `latest` names a complete checkpoint, None if there is none yet."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return (folder / "state.json").is_file() and (folder / "model.weights.h5").is_file()


# ------------------------------------------------------------------------ kills


def _kill(c, argv, progress, at, poll=0.05):
    """Starts `argv`, kills it with SIGKILL once `progress()` reaches `at`; returns a dict."""
    command = start(argv, c.work)
    reached = wait_for(lambda: progress() >= at, command, timeout=900, poll=poll)
    if type(at) is int and reached:  # a random moment after that step (not for a write)
        time.sleep(c.rng.uniform(0.0, 0.3))
    if command.poll() is not None:
        return {"ended": True, "result": finish(command)}
    t0 = time.monotonic()
    children, orphans, result = kill9(command)
    return {"ended": False, "children": children, "orphans": orphans, "result": result,
            "gone_after": time.monotonic() - t0}


def _training_kill_row(c, kind, argv_fn, out, artefacts, in_checkpoint):
    where = "during a checkpoint write" if in_checkpoint else "at a random step"
    row = Row(f"{kind}: kill -9 {where}, then --resume",
              f"steps 1-{STEPS} exactly once, {', '.join(artefacts)} present, latest never "
              "partial, temp folders removed, no orphans")
    ckpts = out / "checkpoints"
    if in_checkpoint:  # the second checkpoint's write: `latest` names the first meanwhile
        def writing():  # and some MB of it are written
            entries = list(ckpts.iterdir()) if ckpts.is_dir() else []
            partial = [p for p in entries if p.name.startswith(".ckpt-")]
            return (any(p.name == "latest" for p in entries) and bool(partial)
                    and size_mb(partial) > 4)
        killed = _kill(c, argv_fn(c, out), writing, True, poll=0.002)
    else:
        k = c.rng.randint(1, STEPS - 2)
        killed = _kill(c, argv_fn(c, out), lambda: line_count(out / "metrics.jsonl"), k)
    if killed["ended"]:
        row.observed = f"the run ended before the kill: {summary(killed['result'])}"
        return row, None
    at_kill = len(metric_steps(out)) if (out / "metrics.jsonl").exists() else 0
    left, pointer = temps(out), latest_ok(out)
    left_mb = size_mb(left)  # now: the resume removes them
    with open(out / "metrics.jsonl", "ab") as handle:  # and a torn line, as a kill mid-append
        handle.write(b'{"step": 99, "lo')
    resumed = run(argv_fn(c, out, "--resume", "--lr", "4e-4"), c.work)
    steps = metric_steps(out)
    config = json.loads((out / "config.json").read_text())
    changed = [r["changed"].get("lr") for r in config.get("resumed", [])]
    missing = [a for a in artefacts if not (out / a).exists()]
    recorded = config["lr"] == 4e-4 and (pointer is None or changed and changed[-1][1] == 4e-4)
    row.ok = (resumed.rc == 0 and not resumed.crashes() and steps == list(range(1, STEPS + 1))
              and not missing and pointer is not False and not temps(out)
              and not killed["orphans"] and recorded)
    row.observed = (f"killed after {at_kill} logged steps (latest valid: {pointer}); left "
                    f"{len(left)} temp ({left_mb:.0f} MB); resume exit {resumed.rc}: "
                    f"steps {steps[0] if steps else '-'}..{steps[-1] if steps else '-'} x"
                    f"{len(steps)}, missing {missing or 'nothing'}, {len(temps(out))} temps left, "
                    f"{len(killed['orphans'])} orphans; config.json lr change {changed[-1:]}")
    row.lost = "none" if row.ok else f"steps {steps}, missing {missing}"
    return row, resumed


def pretrain_kill_random(c) -> Row:
    out = c.path("pretrain-kill")
    row, resumed = _training_kill_row(c, "pretrain", pretrain_argv, out,
                                      ["encoder", "predictor"], False)
    bad = "2 bad videos" in resumed.stdout if resumed is not None else False
    row.ok = row.ok and bad
    row.observed += f"; corrupt and empty videos skipped and counted: {bad}"
    if row.ok:
        c.pretrained = out
    return row


def pretrain_kill_in_checkpoint(c) -> Row:
    return _training_kill_row(c, "pretrain", pretrain_argv, c.path("pretrain-ckpt-kill"),
                              ["encoder", "predictor"], True)[0]


def finetune_kill_random(c) -> Row:
    return _training_kill_row(c, "finetune-ac", finetune_argv, c.path("finetune-kill"),
                              ["encoder", "ac_predictor", "conventions.json"], False)[0]


def finetune_kill_in_checkpoint(c) -> Row:
    return _training_kill_row(c, "finetune-ac", finetune_argv, c.path("finetune-ckpt-kill"),
                              ["encoder", "ac_predictor", "conventions.json"], True)[0]


def pretrain_complete_run_gets_its_encoder(c) -> Row:
    row = Row("pretrain: killed after its last checkpoint, before encoder/ was written; "
              "--resume", "encoder/ and predictor/ written, no new steps")
    out = c.path("pretrain-no-encoder")
    shutil.copytree(pretrained(c), out)
    for name in ("encoder", "predictor"):
        shutil.rmtree(out / name)
    result = run(pretrain_argv(c, out, "--resume"), c.work)
    row.ok = (result.rc == 0 and (out / "encoder" / "model.weights.h5").exists()
              and (out / "predictor" / "model.weights.h5").exists()
              and metric_steps(out) == list(range(1, STEPS + 1)))
    row.observed = f"exit {result.rc}; encoder/ {(out / 'encoder').exists()}, predictor/ " \
                   f"{(out / 'predictor').exists()}"
    row.lost = "none" if row.ok else "the encoder"
    return row


def pretrain_sigint(c) -> Row:
    row = Row("pretrain: Ctrl-C (SIGINT to the job) mid-run, then --resume",
              "one line 'interrupted; completed work is kept', exit 130; resume completes")
    out = c.path("pretrain-sigint")
    command = start(pretrain_argv(c, out), c.work)
    wait_for(lambda: line_count(out / "metrics.jsonl") >= 3, command, timeout=900)
    os.killpg(command.pid, signal.SIGINT)
    first = finish(command, timeout=300)
    resumed = run(pretrain_argv(c, out, "--resume"), c.work)
    lines = [line for line in first.stderr.splitlines() if line.startswith("vjepa2 ")]
    row.ok = (first.rc == 130 and not first.crashes() and len(lines) == 1
              and resumed.rc == 0 and metric_steps(out) == list(range(1, STEPS + 1))
              and not temps(out))
    row.observed = (f"exit {first.rc}: '{lines[0] if lines else ''}'; resume exit {resumed.rc},"
                    f" steps x{len(metric_steps(out))}")
    row.lost = "none" if row.ok else "steps"
    return row


def collect_kill(c) -> Row:
    row = Row("collect --workers 2: kill -9 of the parent, then the same command",
              "workers and resource tracker end with it; every episode exactly once")
    out = c.path("collect-kill")
    argv = vjepa2("collect", "--task", "reach", "--episodes", EPISODES, "--workers", 2,
                  "--image-size", 32, "--videos", "--out", out)
    files = lambda: len(list((out / "episodes").glob("episode-*.tfrecord")))
    killed = _kill(c, argv, lambda: files() if (out / "episodes").exists() else 0, 1)
    if killed["ended"]:
        row.observed = f"ended before the kill: {summary(killed['result'])}"
        return row
    at_kill = files()
    resumed = run(argv, c.work)
    names = sorted(p.name for p in (out / "episodes").glob("episode-*.tfrecord"))
    wanted = [f"episode-{i:08d}.tfrecord" for i in range(EPISODES)]
    row.ok = (not killed["orphans"] and resumed.rc == 0 and names == wanted
              and not temps(out) and f"{EPISODES}/{EPISODES} episodes" in resumed.stdout)
    row.observed = (f"{len(killed['children'])} child processes, {len(killed['orphans'])} left "
                    f"after {killed['gone_after']:.1f} s; {at_kill} episodes at the kill; re-run "
                    f"exit {resumed.rc}: {resumed.stdout.strip().splitlines()[-1:]}")
    row.lost = "none" if names == wanted else f"episodes {sorted(set(wanted) - set(names))}"
    return row


def evaluate_kill(c) -> Row:
    from vjepa2.files import read_jsonl

    row = Row("evaluate: kill -9 mid-run, then the same command",
              "the env process ends with it; every episode exactly once; results complete")
    out = c.path("evaluate-kill")
    argv = vjepa2("evaluate", "--task", "reach", "--policy", "random", "--episodes", 10,
                  "--videos", 2, "--image-size", 32, "--out", out)
    killed = _kill(c, argv, lambda: line_count(out / "episodes.jsonl"), 2)
    if killed["ended"]:
        row.observed = f"ended before the kill: {summary(killed['result'])}"
        return row
    resumed = run(argv, c.work)
    seeds = [r["seed"] for r in read_jsonl(out / "episodes.jsonl")[0]]
    results = json.loads((out / "results.json").read_text())
    row.ok = (not killed["orphans"] and resumed.rc == 0 and sorted(seeds) == list(
        range(1000, 1010)) and results.get("complete") and not temps(out))
    row.observed = (f"{len(killed['children'])} child processes, {len(killed['orphans'])} "
                    f"orphans; re-run exit {resumed.rc}: {len(seeds)} records, "
                    f"{len(set(seeds))} seeds, complete {results.get('complete')}")
    row.lost = "none" if row.ok else f"seeds {sorted(seeds)}"
    c.evaluated = out
    return row


# ------------------------------------------------------------------------ full disks


def _disk_full_row(c, fault, size, argv_fn, check=None, watch=False, during=None):
    row = Row(f"full disk ({size} tmpfs): {fault}",
              "one line naming the path and the space needed, exit 1, nothing corrupt, no temp "
              "files, no orphans, no segfault")
    with tmpfs(c.path(f"full-{fault.split()[0]}-{size}"), size) as (mount, reason):
        if mount is None:
            row.skipped = reason
            return row
        out = mount / "out"
        command = start(argv_fn(c, out), c.work)
        seen = set()
        while command.poll() is None:
            if watch:
                seen |= descendants(command.pid)
            if during is not None:
                during(mount, out)
            time.sleep(0.2 if during is None else 0.002)
        result = finish(command)
        time.sleep(1.0 if seen else 0.0)
        orphans = alive(seen)
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        left = temps(out)
        extra_ok, extra = check(out) if check else (True, "")
    line = (result.error_lines() or [""])[0]
    row.ok = (result.rc == 1 and result.one_line() and "no space left on device" in line
              and not left and not orphans and extra_ok)
    row.observed = (f"exit {result.rc}: '{line}'; {len(left)} temps, {len(orphans)} orphans"
                    f"{'; ' + extra if extra else ''}"
                    + (f"; crash: {result.crashes()}" if result.crashes() else ""))
    row.lost = "none" if extra_ok else extra
    return row


def _checkpoint_intact(out):
    pointer = latest_ok(out)
    steps = metric_steps(out) if (out / "metrics.jsonl").exists() else []
    return pointer is not False, f"latest valid: {pointer}, metrics lines {len(steps)}"


def disk_full_pretrain_3mb(c) -> Row:
    return _disk_full_row(c, "pretrain", "3m", pretrain_argv, _checkpoint_intact)


def disk_full_pretrain_200mb(c) -> Row:
    return _disk_full_row(c, "pretrain (third checkpoint)", "200m", pretrain_argv,
                          _checkpoint_intact)


def disk_full_finetune(c) -> Row:
    return _disk_full_row(c, "finetune-ac", "3m", finetune_argv, _checkpoint_intact)


def _fill_when_writing(mount, out):
    """Another process fills the disk once a checkpoint write has begun (after the up-front
    space check), so that HDF5 itself meets the full disk."""
    ckpts = out / "checkpoints"
    filler = mount / "filler"
    if filler.exists() or not ckpts.is_dir():
        return
    if any(p.name.startswith(".ckpt-") for p in ckpts.iterdir()):
        with open(filler, "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * (1 << 20))
                    handle.flush()
            except OSError:
                pass


def disk_full_pretrain_mid_write(c) -> Row:
    return _disk_full_row(c, "pretrain (another process fills the disk during the first "
                          "checkpoint's HDF5 write)", "200m", pretrain_argv, _checkpoint_intact,
                          during=_fill_when_writing)


def _episodes_intact(out):
    names = list((out / "episodes").glob("episode-*.tfrecord")) if out.exists() else []
    return True, f"{len(names)} whole episodes kept"


def disk_full_collect(c) -> Row:
    return _disk_full_row(
        c, "collect --workers 2 --videos", "3m",
        lambda c, out: vjepa2("collect", "--task", "reach", "--episodes", 40, "--workers", 2,
                              "--image-size", 64, "--videos", "--out", out),
        _episodes_intact, watch=True)


def _records_intact(out):
    from vjepa2.files import read_jsonl

    records, torn = read_jsonl(out / "episodes.jsonl", repair=False)
    return not torn, f"{len(records)} episode records, torn line: {torn}"


def disk_full_evaluate(c) -> Row:
    return _disk_full_row(
        c, "evaluate --videos 20", "512k",
        lambda c, out: vjepa2("evaluate", "--task", "reach", "--policy", "random", "--episodes",
                              20, "--videos", 20, "--image-size", 64, "--out", out),
        _records_intact, watch=True)


ROWS = [pretrain_kill_random, pretrain_kill_in_checkpoint, pretrain_complete_run_gets_its_encoder,
        pretrain_sigint, finetune_kill_random, finetune_kill_in_checkpoint, collect_kill,
        evaluate_kill, disk_full_pretrain_3mb, disk_full_pretrain_200mb,
        disk_full_pretrain_mid_write, disk_full_finetune, disk_full_collect,
        disk_full_evaluate]
