"""Exports RLDS robot logs as one compressed array file for training without TensorFlow.

`scripts/train_arrays.py` reads the file on any Keras backend (JAX on a GPU machine, where
TensorFlow is absent). Each episode becomes one clip at the world model's frame stride:

    frames   (E, F, S, S, 3) uint8    F frames, one every `--frame-stride` env steps
    states   (E, F, D) float32
    actions  (E, F, A) float32        action t leads from frame t to frame t + 1 (summed over the
                                      stride on the delta dims, averaged on the others)
    conventions                       the WorldModelConventions JSON the world model will carry

exactly as `vjepa2 finetune-ac --frame-stride K --image-size S` would cut them (the clips of
length F starting at env step 0), so a model trained from the arrays follows the same
conventions. The file is written atomically (a crash leaves no partial file).

    python scripts/export_arrays.py --logs runs/logs/play_wide --image-size 64 \
        --frame-stride 2 --out runs/play_wide_64.npz.xz

An `--out` ending in `.xz` is LZMA-compressed (smaller, for carrying to another machine).
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def episode_steps(logs: str) -> int:
    """RLDS steps of the shortest episode (observations per episode)."""
    import tensorflow_datasets as tfds

    from vjepa2.errors import UsageError

    if not (Path(logs) / "dataset_info.json").is_file():
        raise UsageError(f"no RLDS dataset (dataset_info.json) in {logs}")
    builder = tfds.builder_from_directory(logs)
    lengths = [int(episode["steps"].cardinality())
               for episode in builder.as_dataset(split="train")]
    if not lengths:
        raise UsageError(f"no episodes in {logs}")
    return min(lengths)


def export(logs: list[str], out: str, image_size: int, frame_stride: int,
           episodes_per_log: int | None = None) -> dict:
    from vjepa2.data.rlds import make_clip_dataset
    from vjepa2.errors import UsageError
    from vjepa2.train.finetune_ac import FinetuneACConfig, make_conventions, resolve_keymap

    keymap, overrides = resolve_keymap("default")
    arrays = {"frames": [], "states": [], "actions": []}
    conventions = None
    for log in logs:
        steps = episode_steps(log)
        # A clip of T frames needs T * stride + 1 steps: its last frame has actions after it.
        clip_length = (steps - 1) // frame_stride
        if clip_length < 3:
            raise UsageError(f"episodes in {log} are too short ({steps} steps) for stride "
                             f"{frame_stride}")
        clips = make_clip_dataset(log, keymap, clip_length=clip_length,
                                  frame_stride=frame_stride, batch_size=1, shuffle=False,
                                  image_size=image_size, clip_shift=steps)
        taken = 0
        for batch in clips:
            for key in arrays:
                arrays[key].append(batch[key].numpy()[0])
            taken += 1
            if episodes_per_log and taken >= episodes_per_log:
                break
        config = FinetuneACConfig(encoder="-", logs=log, out="-", steps=1,
                                  frame_stride=frame_stride, image_size=image_size)
        a, s = arrays["actions"][-1].shape[-1], arrays["states"][-1].shape[-1]
        made = make_conventions(config, keymap, overrides, a, s, image_size).to_json()
        if conventions is not None and made != conventions:
            raise UsageError(f"{log} has other conventions than {logs[0]}")
        conventions = made
        print(f"{log}: {taken} episodes of {clip_length} frames")
    lengths = {x.shape[0] for x in arrays["frames"]}
    if len(lengths) != 1:
        raise UsageError(f"episodes differ in length ({sorted(lengths)} frames); export them "
                         "separately")
    stacked = {k: np.stack(v) for k, v in arrays.items()}
    buffer = io.BytesIO()
    if out.endswith(".xz"):  # LZMA over the raw arrays: about 20% smaller than zlib here
        np.savez(buffer, **stacked, conventions=np.array(json.dumps(conventions)))
        payload = lzma.compress(buffer.getvalue(), preset=6)
    else:
        np.savez_compressed(buffer, **stacked, conventions=np.array(json.dumps(conventions)))
        payload = buffer.getvalue()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return {"episodes": int(stacked["frames"].shape[0]),
            "frames": int(stacked["frames"].shape[1]), "bytes": path.stat().st_size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", nargs="+", required=True, help="RLDS dataset folder(s)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--frame-stride", type=int, required=True)
    p.add_argument("--episodes-per-log", type=int, default=None)
    args = p.parse_args(argv)
    from vjepa2.errors import UsageError

    try:
        summary = export(args.logs, args.out, args.image_size, args.frame_stride,
                         args.episodes_per_log)
    except UsageError as error:
        print(f"export_arrays: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
