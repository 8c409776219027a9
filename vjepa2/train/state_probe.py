"""Frozen-latent state probes: can the world model read the grasp from what it sees?

A planner whose energy is a distance between latents can only steer what the latents encode.
This probe asks the frozen encoder's frame latents (the tokens the planner compares, after the
world model's non-affine LayerNorm) for four things on held-out scenes:

- finger open / closed (finger gap > 0.075 m; the majority class stated beside it),
- object in hand (held between both fingers; its majority class beside it),
- object xyz and gripper xyz (R^2 over the three axes together, and per axis), and the object
  relative to the gripper from the two estimates.

Two probes read the same tokens: the attentive probe of V-JEPA's frozen evaluation
(`AttentiveProbe`: a learnable query cross-attends over the tokens, a linear head; one head of
10 outputs trained with cross-entropy on the two classifications and a squared error on the
standardised positions; with a learned position embedding per token, since the encoder's rotary
positions leave no absolute position in its outputs and xyz is a question of where, unless
`no_positions`) and a ridge regression on the flattened tokens (the earlier linear
probe, `scripts/gripper_probe.py`), its penalty chosen on a fifth of the training episodes.
The same probes on a randomly initialised encoder of the same configuration are the baseline.

The labelled frames come from `envs.probe_data` (`.npz`: frames per view and simulator truth);
a `scene+wrist` view places the scene and wrist frames side by side, as the env renders it.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from vjepa2.errors import UsageError
from vjepa2.train.config import check, opt

OPEN_GAP = 0.075  # metres: fully open is 0.10, holding the object about 0.05, closed 0
VIEWS = ("scene", "close", "wrist", "scene+wrist")


@dataclasses.dataclass(frozen=True)
class StateProbeConfig:
    """A state-probe run; stored in its `results.json`."""

    encoder: str = opt(help="encoder: a preset folder, a pretraining run or a world model folder")
    train: str = opt(help="labelled frames for fitting (.npz from vjepa2 make-probe-data)")
    heldout: str = opt(help="labelled frames for scoring, from other scenes and seeds (.npz)")
    out: str = opt(help="output folder (results.json)")
    view: str = opt("scene", "which frames: scene, close, wrist or scene+wrist")
    resolution: int = opt(0, "frame side in px (area-downsampled from the file's); 0: the "
                             "encoder's trained image size if known, else the file's")
    epochs: int = opt(60, "attentive probe training epochs")
    batch_size: int = opt(64, "attentive probe batch size")
    lr: float = opt(1e-3, "attentive probe learning rate (AdamW)")
    no_positions: bool = opt(False, "attentive probe without its learned position embedding "
                                    "per token (V-JEPA's probe as published; the planner's "
                                    "energy compares tokens position by position)")
    no_baseline: bool = opt(False, "skip the random-init encoder")
    seed: int = opt(0, "seed of the probes and the random-init encoder")
    probe_seeds: int = opt(1, "attentive probes per encoder, seeds seed .. seed + N - 1 "
                              "(their initialisation and batch order); the summary is their "
                              "mean")

    def __post_init__(self):
        check(self.probe_seeds >= 1, f"probe_seeds must be >= 1; received {self.probe_seeds}")
        check(self.view in VIEWS, f"view must be one of {', '.join(VIEWS)}; received "
                                  f"{self.view!r}")
        check(self.resolution >= 0 and self.resolution % 16 == 0,
              f"resolution must be 0 or a multiple of 16; received {self.resolution}")
        check(self.epochs > 0 and self.batch_size > 0 and self.lr > 0,
              f"epochs, batch_size and lr must be > 0; received {self.epochs}, "
              f"{self.batch_size}, {self.lr}")


def load_labelled_frames(path: str, view: str, resolution: int = 0):
    """Frames `(N, H, W, 3)` uint8 of `view` and the labels dict from a probe-data file."""
    if not Path(path).is_file():
        raise UsageError(f"probe data {path} is not a file")
    data = np.load(path)
    names = ["scene", "wrist"] if view == "scene+wrist" else [view]
    missing = [n for n in names if f"frames_{n}" not in data]
    if missing:
        raise UsageError(f"{path} has no {', '.join(missing)} frames (views in the file: "
                         f"{', '.join(k[7:] for k in data if k.startswith('frames_'))})")
    frames = [downsample(data[f"frames_{n}"], resolution) for n in names]
    labels = {k: data[k] for k in ("finger_gap", "in_hand", "object_xyz", "gripper_xyz",
                                   "episode")}
    return np.concatenate(frames, axis=2), labels


def downsample(frames: np.ndarray, resolution: int) -> np.ndarray:
    """Area-averages square frames `(N, S, S, 3)` to `resolution` (a divisor of S); 0 keeps S."""
    size = frames.shape[1]
    if resolution in (0, size):
        return frames
    if size % resolution:
        raise UsageError(f"resolution {resolution} does not divide the frames' {size} px")
    k = size // resolution
    x = frames.reshape(len(frames), resolution, k, resolution, k, 3).astype(np.float32)
    return np.round(x.mean(axis=(2, 4))).astype(np.uint8)


def targets(labels: dict) -> dict:
    """The probe targets: two 0/1 classes and two xyz regressions."""
    return {"finger_open": (labels["finger_gap"] > OPEN_GAP).astype(np.int64),
            "in_hand": labels["in_hand"].astype(np.int64),
            "object_xyz": labels["object_xyz"].astype(np.float64),
            "gripper_xyz": labels["gripper_xyz"].astype(np.float64)}


def frozen_tokens(encoder, frames: np.ndarray, normalization: str = "imagenet",
                  chunk: int = 64) -> np.ndarray:
    """The world model's frame latents `(N, tokens, D)` float32 of uint8 frames."""
    from vjepa2.models.world_model import encode_frames

    parts = [np.asarray(encode_frames(encoder, frames[i:i + chunk, None], None,
                                      normalization))[:, 0]
             for i in range(0, len(frames), chunk)]
    return np.concatenate(parts).astype(np.float32)


def r2(y: np.ndarray, predicted: np.ndarray) -> dict:
    """R^2 over all axes together (`all`) and per axis (`x`, `y`, `z`)."""
    resid = ((y - predicted) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    out = {"all": float(1.0 - resid.sum() / total.sum())}
    out.update({axis: float(1.0 - r / t) for axis, r, t in zip("xyz", resid, total)})
    return out


def score(predictions: dict, truth: dict) -> dict:
    """Accuracies (with the majority class) and R^2 of one probe's held-out predictions."""
    out = {}
    for name in ("finger_open", "in_hand"):
        y = truth[name]
        majority = max(float(y.mean()), 1.0 - float(y.mean()))
        out[name] = {"accuracy": float(np.mean(predictions[name] == y)),
                     "majority_class": majority, "items": int(len(y))}
    for name in ("object_xyz", "gripper_xyz"):
        out[name] = {"r2": r2(truth[name], predictions[name])}
    # Where the object is relative to the gripper (what a grasp needs), from the two estimates:
    # an error both share (a scene camera placed differently) cancels here.
    out["object_minus_gripper"] = {"r2": r2(truth["object_xyz"] - truth["gripper_xyz"],
                                            predictions["object_xyz"] -
                                            predictions["gripper_xyz"])}
    return out


# ---------------------------------------------------------------------------- the ridge probe


def ridge_solve(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Weights of a ridge regression on centred `x`, `y`: the smaller of the two equivalent
    systems, features x features (primal) or samples x samples (dual, `w = X^T (X X^T + lam
    I)^-1 y`), so many-token latents stay cheap."""
    if x.shape[1] <= x.shape[0]:
        return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    return x.T @ np.linalg.solve(x @ x.T + lam * np.eye(x.shape[0]), y)


def ridge_probe(train_x, train_t: dict, test_x, episodes: np.ndarray,
                lams=(1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6)) -> tuple[dict, float]:
    """Fits one ridge regression to all targets (classes as 0/1, positions standardised),
    its penalty chosen on the last fifth of the training episodes; returns the held-out
    predictions and the penalty."""
    y, mean, std = _stack_targets(train_t)
    mu, sd = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    xs = ((train_x - mu) / sd).astype(np.float64)
    ids = np.unique(episodes)
    val = np.isin(episodes, ids[int(0.8 * len(ids)):])
    best = None
    for lam in lams:
        lam_scaled = lam * xs.shape[1] / 1000.0
        w = ridge_solve(xs[~val] - xs[~val].mean(0), y[~val] - y[~val].mean(0), lam_scaled)
        err = float(np.mean(((xs[val] - xs[~val].mean(0)) @ w + y[~val].mean(0) - y[val]) ** 2))
        if best is None or err < best[0]:
            best = (err, lam_scaled)
    lam = best[1]
    w = ridge_solve(xs - xs.mean(0), y - y.mean(0), lam)
    out = ((test_x - mu) / sd - xs.mean(0)) @ w + y.mean(0)
    return _unstack(out, mean, std, classes_as="threshold"), float(lam)


def _stack_targets(t: dict):
    """(N, 8): finger_open, in_hand, object xyz and gripper xyz standardised; mean, std."""
    xyz = np.concatenate([t["object_xyz"], t["gripper_xyz"]], axis=1)
    mean, std = xyz.mean(axis=0), xyz.std(axis=0) + 1e-9
    y = np.concatenate([t["finger_open"][:, None], t["in_hand"][:, None],
                        (xyz - mean) / std], axis=1)
    return y.astype(np.float64), mean, std


def _unstack(out: np.ndarray, mean, std, classes_as: str) -> dict:
    if classes_as == "threshold":  # ridge: one 0/1 column per class
        finger, hand, xyz = out[:, 0] > 0.5, out[:, 1] > 0.5, out[:, 2:8]
    else:  # attentive: two logits per class
        finger = np.argmax(out[:, 0:2], axis=1)
        hand, xyz = np.argmax(out[:, 2:4], axis=1), out[:, 4:10]
    xyz = xyz * std + mean
    return {"finger_open": np.asarray(finger, np.int64), "in_hand": np.asarray(hand, np.int64),
            "object_xyz": xyz[:, :3], "gripper_xyz": xyz[:, 3:]}


# ------------------------------------------------------------------------ the attentive probe


def attentive_probe(train_x, train_t: dict, test_x, config: StateProbeConfig,
                    seed=None) -> dict:
    """Fits an `AttentiveProbe` with 10 outputs (2 + 2 logits, 6 standardised positions) and
    returns its held-out predictions; `seed` (default `config.seed`) sets the probe's
    initialisation and batch order."""
    import keras
    from keras import ops

    from vjepa2.models import AttentiveProbe

    y, mean, std = _stack_targets(train_t)

    def loss(target, out):
        ce = keras.losses.sparse_categorical_crossentropy
        return (ce(ops.cast(target[:, 0], "int32"), out[:, 0:2], from_logits=True)
                + ce(ops.cast(target[:, 1], "int32"), out[:, 2:4], from_logits=True)
                + ops.mean(ops.square(out[:, 4:10] - target[:, 2:8]), axis=-1))

    keras.utils.set_random_seed(config.seed if seed is None else seed)
    dim = train_x.shape[-1]
    probe = AttentiveProbe(10, dim, num_heads=next(h for h in (4, 3, 2, 1) if dim % h == 0),
                           num_tokens=None if config.no_positions else train_x.shape[1])
    probe.compile(optimizer=keras.optimizers.AdamW(config.lr, weight_decay=0.01), loss=loss,
                  jit_compile=False)
    probe.fit(train_x, y.astype(np.float32), batch_size=config.batch_size,
              epochs=config.epochs, shuffle=True, verbose=0)
    out = np.concatenate([np.asarray(probe(test_x[i:i + 256]))
                          for i in range(0, len(test_x), 256)])
    return _unstack(out.astype(np.float64), mean, std, classes_as="logits")


# -------------------------------------------------------------------------------- the command


def load_probe_encoder(path: str):
    """The frozen encoder of a preset folder, a pretraining run or a world model folder, its
    trained image size (None if unknown) and frame normalization."""
    from vjepa2.train.probe import load_encoder

    size, normalization = None, "imagenet"
    conventions = Path(path) / "conventions.json"
    if conventions.is_file():
        c = json.loads(conventions.read_text())
        size, normalization = c.get("image_size"), c.get("frame_normalization", "imagenet")
    return load_encoder(path)[0], size, normalization


def state_probe(config: StateProbeConfig, verbose: int = 1) -> dict:
    """Runs both probes on the pretrained and (unless `no_baseline`) a random-init encoder;
    writes and returns the results dict."""
    import keras

    from vjepa2.files import check_output_folder, write_json

    out = check_output_folder(config.out, "results.json")
    encoder, trained_size, normalization = load_probe_encoder(config.encoder)
    resolution = config.resolution or trained_size or 0
    train_frames, train_labels = load_labelled_frames(config.train, config.view, resolution)
    test_frames, test_labels = load_labelled_frames(config.heldout, config.view, resolution)
    keras.utils.set_random_seed(config.seed)
    encoders = {"pretrained": encoder}
    if not config.no_baseline:
        encoders["random_init"] = type(encoder).from_config(encoder.get_config())
    train_t, test_t = targets(train_labels), targets(test_labels)
    results = {"config": dataclasses.asdict(config), "resolution": int(train_frames.shape[1]),
               "frame_shape": list(train_frames.shape[1:]), "train_frames": len(train_frames),
               "heldout_frames": len(test_frames)}
    for name, enc in encoders.items():
        started = time.time()
        train_x = frozen_tokens(enc, train_frames, normalization)
        test_x = frozen_tokens(enc, test_frames, normalization)
        ridge, lam = ridge_probe(train_x.reshape(len(train_x), -1), train_t,
                                 test_x.reshape(len(test_x), -1), train_labels["episode"])
        seeds = [score(attentive_probe(train_x, train_t, test_x, config, seed=config.seed + i),
                       test_t) for i in range(config.probe_seeds)]
        results[name] = {"tokens": list(train_x.shape[1:]), "attentive": seeds[0],
                         "ridge": score(ridge, test_t) | {"penalty": lam},
                         "seconds": time.time() - started}
        if config.probe_seeds > 1:
            results[name]["attentive_seeds"] = seeds
            results[name]["attentive_mean"] = mean_scores(seeds)
        if verbose:
            print(summary_line(name, results[name]), flush=True)
    write_json(out / "results.json", results)
    return results


def mean_scores(scores: list) -> dict:
    """The mean of each number over several `score` dicts of the same layout."""
    first = scores[0]
    if isinstance(first, dict):
        return {key: mean_scores([s[key] for s in scores]) for key in first}
    return float(np.mean(scores)) if isinstance(first, float) else first


def summary_line(name: str, r: dict) -> str:
    a, g = r.get("attentive_mean", r["attentive"]), r["ridge"]
    seeds = f" (attentive: mean of {len(r['attentive_seeds'])} probe seeds)" \
        if "attentive_seeds" in r else ""
    return (f"{name}{seeds}: attentive / ridge: finger open {a['finger_open']['accuracy']:.3f} / "
            f"{g['finger_open']['accuracy']:.3f} (majority "
            f"{a['finger_open']['majority_class']:.3f}), in hand {a['in_hand']['accuracy']:.3f}"
            f" / {g['in_hand']['accuracy']:.3f} (majority {a['in_hand']['majority_class']:.3f})"
            f", object xyz R^2 {a['object_xyz']['r2']['all']:.3f} / "
            f"{g['object_xyz']['r2']['all']:.3f}, gripper xyz R^2 "
            f"{a['gripper_xyz']['r2']['all']:.3f} / {g['gripper_xyz']['r2']['all']:.3f}, "
            f"object - gripper R^2 {a['object_minus_gripper']['r2']['all']:.3f} / "
            f"{g['object_minus_gripper']['r2']['all']:.3f}")
