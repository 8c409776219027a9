"""The input rows of the fault campaign: corrupt run files, damaged logs, `--out` mix-ups and
bad arguments through the real command, a 4K video among small ones, and provenance."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from fault_commands import pretrain_argv, pretrained
from fault_tools import Row, run, vjepa2


def _one_line_rows(c, cases, code) -> tuple[list[str], list[str]]:
    """Runs each `(label, argv)`; returns the good error lines and the failures."""
    good, bad = [], []
    for label, argv in cases:
        result = run(argv, c.work, timeout=300)
        if result.rc == code and result.one_line():
            good.append(result.error_lines()[0])
        else:
            bad.append(f"{label}: exit {result.rc}, {len(result.error_lines())} error lines, "
                       f"crash {result.crashes()}")
    return good, bad


def corrupt_run_files(c) -> Row:
    row = Row("pretrain --resume on a run with a corrupt config.json, or a `latest` naming a "
              "missing checkpoint", "one line naming the file, exit 2 (config) / 1 (checkpoint)")
    base = pretrained(c)
    cases = []
    for name in ("bad-config", "bad-latest"):
        out = c.path(f"corrupt-{name}")
        shutil.copytree(base, out, ignore=shutil.ignore_patterns("logs"))
        if name == "bad-config":
            (out / "config.json").write_text('{"preset": "tiny", ')
        else:
            (out / "checkpoints" / "latest").write_text("ckpt-00000999\n")
        cases.append((name, pretrain_argv(c, out, "--resume")))
    good_config, bad_config = _one_line_rows(c, cases[:1], 2)
    good_latest, bad_latest = _one_line_rows(c, cases[1:], 1)
    row.ok = not bad_config and not bad_latest
    row.observed = " / ".join(good_config + good_latest + bad_config + bad_latest)
    row.lost = "none (files left as found)"
    return row


def damaged_episode_log(c) -> Row:
    row = Row("evaluate continuing a folder whose episodes.jsonl is damaged mid-file",
              "one line naming the file and line, exit 2")
    source = c.evaluated
    out = c.path("damaged-eval")
    if source is None:
        result = run(vjepa2("evaluate", "--task", "reach", "--policy", "random", "--episodes", 3,
                            "--videos", 0, "--image-size", 32, "--out", out), c.work)
        assert result.rc == 0, result.stderr
    else:
        shutil.copytree(source, out)
    lines = (out / "episodes.jsonl").read_text().splitlines()
    lines.insert(1, '{"seed": 10')
    (out / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    argv = vjepa2("evaluate", "--task", "reach", "--policy", "random", "--episodes", 12,
                  "--videos", 0 if source is None else 2, "--image-size", 32, "--out", out)
    good, bad = _one_line_rows(c, [("damaged", argv)], 2)
    row.ok = not bad and "line 2" in good[0]
    row.observed = (good or bad)[0]
    row.lost = "none (the file is left for the user to repair)"
    return row


def out_checks_commands(c) -> Row:
    row = Row("--out an existing file (collect, evaluate, pretrain, finetune-ac, make-videos); "
              "one command into another's folder", "one line, exit 2, nothing written")
    afile = c.path("an-existing-file")
    afile.write_text("x")
    encoder = pretrained(c)
    collected, evaluated = c.logs, c.evaluated or c.path("no-eval")
    cases = [
        ("collect file", vjepa2("collect", "--task", "reach", "--episodes", 1, "--out", afile)),
        ("evaluate file", vjepa2("evaluate", "--task", "reach", "--episodes", 1, "--policy",
                                 "random", "--out", afile)),
        ("pretrain file", pretrain_argv(c, afile)),
        ("finetune file", vjepa2("finetune-ac", "--encoder", encoder, "--logs", collected,
                                 "--steps", 2, "--out", afile)),
        ("make-videos file", vjepa2("make-videos", "--out", afile, "--count", 1)),
        ("evaluate into collect", vjepa2("evaluate", "--task", "reach", "--episodes", 1,
                                         "--policy", "random", "--out", collected)),
        ("pretrain into evaluate", pretrain_argv(c, evaluated)),
        ("collect into pretrain", vjepa2("collect", "--task", "reach", "--episodes", 1,
                                         "--out", encoder)),
        ("make-videos into collect", vjepa2("make-videos", "--out", collected, "--count", 1)),
        ("finetune into videos", vjepa2("finetune-ac", "--encoder", encoder, "--logs",
                                        collected, "--steps", 2, "--out", c.videos)),
    ]
    if c.evaluated is None:
        cases = [case for case in cases if case[0] != "pretrain into evaluate"]
    good, bad = _one_line_rows(c, cases, 2)
    row.ok = not bad
    row.observed = f"{len(good)}/{len(cases)} one line, exit 2, e.g. '{good[-1] if good else ''}'"
    if bad:
        row.observed += f"; failed: {bad}"
    row.lost = "none"
    return row


def bad_arguments(c) -> Row:
    row = Row("bad values: --steps 0, --task fly, --episodes 0, a missing --encoder, "
              "--divergence-factor 0.5, --image-size 8", "one error line, exit 2, no traceback")
    out = c.path("bad-args")
    cases = [("steps 0", pretrain_argv(c, out) + ["--steps", "0"]),
             ("task fly", vjepa2("collect", "--task", "fly", "--episodes", 1, "--out", out)),
             ("episodes 0", vjepa2("evaluate", "--task", "reach", "--episodes", 0, "--out",
                                   out)),
             ("missing encoder", vjepa2("finetune-ac", "--encoder", c.path("nowhere"), "--logs",
                                        c.path("nowhere"), "--steps", 2, "--out", out)),
             ("divergence factor", pretrain_argv(c, out) + ["--divergence-factor", "0.5"]),
             ("image size", vjepa2("collect", "--task", "reach", "--episodes", 1,
                                   "--image-size", 8, "--out", out))]
    good, bad = _one_line_rows(c, cases, 2)
    row.ok = not bad and not out.exists()
    row.observed = f"{len(good)}/{len(cases)} one line, e.g. '{good[-1] if good else ''}'"
    if bad:
        row.observed += f"; failed: {bad}"
    row.lost = "n/a"
    return row


def large_video(c) -> Row:
    import numpy as np

    from vjepa2.data import video_clips
    from vjepa2.data.video_clips import ClipConfig, ClipSampler
    from vjepa2.data.video_io import write_video
    from vjepa2.data.video_sources import VideoStats

    row = Row("a 3840x2160 video among 64 px ones (pretraining clips at 128 px)",
              "converted to RGB at a reduced size in the decoder thread")
    rng = np.random.default_rng(0)
    tile = (rng.random((270, 480, 3)) * 255).astype(np.uint8)
    big = np.repeat(np.repeat(tile, 8, 0), 8, 1)
    path = write_video(c.path("big") / "uhd.mp4", np.stack([np.roll(big, 24 * i, 1)
                                                            for i in range(16)]), fps=8)
    sampler = ClipSampler([(str(path), None)], ClipConfig(frames=8, fps=4.0, resolution=128),
                          VideoStats())
    timings = {}
    original = video_clips.decode_size
    try:
        for name, size_fn in (("reduced", original), ("full size", lambda *a: None)):
            video_clips.decode_size = size_fn
            t0 = time.perf_counter()
            clips = [sampler.clip(i)[0] for i in range(3)]
            timings[name] = ((time.perf_counter() - t0) / 3, max(c_.shape[1] for c_ in clips))
    finally:
        video_clips.decode_size = original
    row.ok = timings["reduced"][1] <= 512 and timings["reduced"][0] < timings["full size"][0]
    row.observed = "; ".join(f"{k}: {t:.2f} s per clip, crops up to {h} px high"
                             for k, (t, h) in timings.items())
    row.lost = "n/a"
    return row


def provenance(c) -> Row:
    from vjepa2.app.models import load_model, model_record

    row = Row("results name the model they came from",
              "the loaded folder and a SHA-256 of its weights in the evaluation settings")
    world_model, folder = load_model("shipped")
    folder = Path(folder)
    record = model_record(world_model, folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.weights.h5")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    row.ok = record["weights_sha256"] == digest.hexdigest() and record["path"]
    row.observed = f"{record['path']} sha256 {record['weights_sha256'][:12]}..."
    row.lost = "n/a"
    return row


ROWS = [corrupt_run_files, damaged_episode_log, out_checks_commands, bad_arguments,
        large_video, provenance]
