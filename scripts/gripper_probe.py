"""Is the gripper's opening readable from the world model's latents? A linear (ridge) probe.

Encodes the frames of play episodes from an array file (`scripts/export_arrays.py`) with the
world model's frozen encoder, fits a ridge regression from the flattened frame latents to the
proprio state on the first episodes and scores it on the remaining ones (whole episodes held
out). Targets: the finger gap (also scored as open / not open, gap > 0.075 m, against the
majority class) and, as a control, the gripper height.

    python scripts/gripper_probe.py --model vjepa2/assets/world_model \
        --arrays .gpu/play_wide_64.npz.xz --episodes 400 --out probe.json

If the opening cannot be read linearly from the latents, the planner's energy (an L1 distance
between latents) cannot see it either, and CEM leaves the gripper to chance.
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OPEN_GAP = 0.075  # metres: fully open is 0.10, holding the object about 0.05, closed 0


def load_arrays(path: str, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `episodes` episodes' frames `(E, F, S, S, 3)` and states `(E, F, D)`."""
    from vjepa2.errors import UsageError

    if not Path(path).is_file():
        raise UsageError(f"--arrays {path} is not a file")
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
        frames, states = data["frames"], data["states"]
    if frames.shape[0] < episodes:
        raise UsageError(f"--episodes {episodes} exceeds the {frames.shape[0]} episodes in "
                         f"{path}")
    return frames[:episodes], states[:episodes]


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float):
    """Closed-form ridge regression with an unpenalized intercept; returns `predict`
    (the solve of `vjepa2.train.state_probe`, primal or dual, the smaller)."""
    from vjepa2.train.state_probe import ridge_solve

    mu, y_mean = x.mean(axis=0), y.mean()
    w = ridge_solve((x - mu).astype("float64"), y - y_mean, lam)
    return lambda q: (q - mu) @ w + y_mean


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1.0 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vjepa2/assets/world_model")
    parser.add_argument("--arrays", required=True, help="array file from export_arrays.py")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--train-fraction", type=float, default=0.75)
    parser.add_argument("--lams", default="10,100,1000", help="ridge penalties to try")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)

    from vjepa2.errors import UsageError

    try:
        if args.episodes < 4:
            raise UsageError(f"--episodes must be >= 4; received {args.episodes}")
        if not 0 < args.train_fraction < 1:
            raise UsageError(f"--train-fraction must be in (0, 1); received "
                             f"{args.train_fraction}")
        lams = [float(v) for v in args.lams.split(",")]
        frames, states = load_arrays(args.arrays, args.episodes)
    except (UsageError, ValueError) as error:
        print(f"gripper_probe: error: {error}", file=sys.stderr)
        return 2

    from vjepa2.app.models import load_model

    world_model, _ = load_model(args.model)
    start = time.perf_counter()
    latents = np.stack([np.asarray(world_model.encode(frames[e][None]))[0].reshape(
        frames.shape[1], -1) for e in range(frames.shape[0])])
    encode_seconds = time.perf_counter() - start
    split = int(round(args.train_fraction * frames.shape[0]))
    x_train = latents[:split].reshape(-1, latents.shape[-1])
    x_test = latents[split:].reshape(-1, latents.shape[-1])
    results = {"model": args.model, "arrays": args.arrays, "episodes": int(frames.shape[0]),
               "train_episodes": split, "test_episodes": int(frames.shape[0] - split),
               "features": int(latents.shape[-1]), "encode_seconds": encode_seconds,
               "open_gap_m": OPEN_GAP, "probes": []}
    for name, dim in (("finger gap", 3), ("gripper height", 2)):
        y_train = states[:split, :, dim].reshape(-1).astype("float64")
        y_test = states[split:, :, dim].reshape(-1).astype("float64")
        for lam in lams:
            predict = ridge_fit(x_train, y_train, lam)
            row = {"target": name, "lam": lam, "train_r2": r2(predict(x_train), y_train),
                   "test_r2": r2(predict(x_test), y_test)}
            if name == "finger gap":
                is_open = y_test > OPEN_GAP
                row["test_open_accuracy"] = float(((predict(x_test) > OPEN_GAP) == is_open).mean())
                row["test_majority_accuracy"] = float(max(is_open.mean(), 1 - is_open.mean()))
            results["probes"].append(row)
            print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
