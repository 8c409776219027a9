"""Turns an evaluation episode video (mp4) into a GIF for the README.

    python scripts/episode_gif.py runs/eval/reach/videos/episode-0000.mp4 docs/images/reach.gif

Keeps every `--every`-th frame, scales the width to `--width` pixels and loops forever.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from vjepa2.data.video_io import read_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--fps", type=float, default=None, help="default: the video's own")
    args = parser.parse_args()
    frames, fps = read_video(args.video)
    frames = frames[::args.every]
    height = int(round(frames.shape[1] * args.width / frames.shape[2]))
    images = [Image.fromarray(np.asarray(f)).resize((args.width, height), Image.LANCZOS)
              for f in frames]
    duration = 1000.0 / ((args.fps or fps) / args.every)
    images[0].save(args.out, save_all=True, append_images=images[1:], loop=0,
                   duration=int(duration), optimize=True)
    print(f"wrote {args.out}: {len(images)} frames, {args.width}x{height}")


if __name__ == "__main__":
    main()
