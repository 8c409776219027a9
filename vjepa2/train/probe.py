"""`vjepa2 probe`: frozen evaluation of any family member's encoder with an attentive probe.

The labelled items (a `path,label` CSV of videos, images or audio clips) are split once into a
training and a held-out part (a seeded permutation; both lists are written to the output
folder). The frozen encoder encodes every item once (evaluation crops: the middle clip or the
centre square, no flip); an `AttentiveProbe` is trained on the training tokens and scored by
top-1 accuracy on the held-out ones, with a 95% Wilson interval. The same probe on the same
items with a randomly initialised encoder of the same configuration is the baseline: what the
architecture alone gives, so the difference is what pretraining taught.

The output folder holds `results.json`, `train.csv` and `heldout.csv`.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from vjepa2.errors import UsageError
from vjepa2.train.config import check, opt

KINDS = ("video", "image", "audio")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """A frozen-evaluation run; stored in its `results.json`."""

    encoder: str = opt(help="encoder preset folder, or a pretraining run folder (its encoder/)")
    data: str = opt(help="CSV of path,label (videos, images or audio clips)")
    out: str = opt(help="output folder (results.json, the split lists)")
    heldout: float = opt(0.3, "fraction of the items held out for scoring")
    heldout_data: str = opt("", "a path,label CSV of the held-out items (a fixed split): --data "
                                "is then the training list, used whole")
    epochs: int = opt(40, "probe training epochs")
    batch_size: int = opt(64, "probe training batch size")
    lr: float = opt(1e-3, "probe learning rate (AdamW)")
    weight_decay: float = opt(0.01, "probe weight decay")
    num_queries: int = opt(1, "learnable queries of the attentive probe")
    probe_seeds: int = opt(1, "probes trained per encoder, each with its own seed (its "
                              "initialisation and batch order); top-1 is their mean")
    positions: bool = opt(False, "a learned position embedding per token in the probe (the "
                                 "encoder's rotary positions leave none in its outputs)")
    frames: int = opt(8, "videos: frames per clip")
    fps: float = opt(4.0, "videos: clip sampling rate (frames/s)")
    resolution: int = opt(128, "videos and images: frame size in px")
    audio_frames: int = opt(128, "audio: spectrogram frames per clip (10 ms hop)")
    items: str = opt("", "the items' kind: video, image or audio (default: the encoder's); a "
                         "video encoder reads images as one tubelet of the image repeated, as "
                         "images are mixed into video pretraining (MC-JEPA's content is "
                         "evaluated on images)")
    no_baseline: bool = opt(False, "skip the random-init baseline")
    seed: int = opt(0, "seed of the split, the probe and the random-init encoder")

    def __post_init__(self):
        check(0.0 < self.heldout < 1.0, f"heldout must be in (0, 1); received {self.heldout}")
        check(self.epochs > 0 and self.batch_size > 0,
              f"epochs and batch_size must be > 0; received {self.epochs}, {self.batch_size}")
        check(self.lr > 0, f"lr must be > 0; received {self.lr}")
        check(self.num_queries >= 1, f"num_queries must be >= 1; received {self.num_queries}")
        check(self.probe_seeds >= 1, f"probe_seeds must be >= 1; received {self.probe_seeds}")
        check(self.items in ("",) + KINDS,
              f"items must be one of {', '.join(KINDS)}; received {self.items!r}")


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total <= 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def load_encoder(path):
    """The frozen encoder of a preset folder or of a run folder's `encoder/`, and its kind."""
    from vjepa2.models import ImageEncoder, VideoEncoder

    folder = Path(path)
    if (folder / "encoder" / "config.json").is_file():
        folder = folder / "encoder"
    if not (folder / "config.json").is_file():
        raise UsageError(f"no encoder in {path} (expected a preset folder or a run folder "
                         "with encoder/)")
    encoder = VideoEncoder.from_preset(folder)
    encoder.trainable = False
    return encoder, encoder_kind(encoder)


def encoder_kind(encoder) -> str:
    from vjepa2.models import ImageEncoder

    if isinstance(encoder, ImageEncoder):
        return "audio" if encoder.in_channels == 1 else "image"
    return "video"


def check_labelled(items, source="probe data"):
    """Raises UsageError unless every `(path, label)` has a label and there are two classes."""
    if not items:
        raise UsageError(f"{source} lists no items")
    if any(label is None for _, label in items):
        raise UsageError(f"{source} needs a label on every row (path,label)")
    if len({label for _, label in items}) < 2:
        raise UsageError(f"{source} needs at least two classes")


def split_items(items, heldout: float, seed: int):
    """(train, held-out) lists of `(path, label)`: a seeded permutation, the held-out part
    `round(heldout * n)` items (at least one each)."""
    check_labelled(items)
    order = np.random.default_rng([seed, 7]).permutation(len(items))
    count = min(max(int(round(heldout * len(items))), 1), len(items) - 1)
    return [items[i] for i in order[count:]], [items[i] for i in order[:count]]


def items_kind(config: ProbeConfig, encoder_kind: str) -> str:
    """The kind of the probe's items: `config.items`, default the encoder's. Raises
    UsageError where the encoder cannot read them (only a video encoder reads another kind:
    images, as one tubelet)."""
    kind = config.items or encoder_kind
    if kind != encoder_kind and (encoder_kind, kind) != ("video", "image"):
        raise UsageError(f"a {encoder_kind} encoder cannot read items of kind {kind!r}; a "
                         "video encoder reads images, no other encoder reads another kind")
    return kind


def _dataset(kind, csv_path, config: ProbeConfig, tubelet=0):
    """Batches of 16 (inputs, label); with `tubelet` > 0, images come repeated to that many
    frames (a video encoder's one-tubelet clip)."""
    common = dict(batch_size=1, training=False, seed=config.seed, repeat=False,
                  with_labels=True)
    if kind == "image":
        from vjepa2.data.images import as_one_tubelet, make_image_dataset

        dataset, _ = make_image_dataset(csv_path, resolution=config.resolution, **common)
        if tubelet:
            dataset = dataset.map(lambda x, y: (as_one_tubelet(x, tubelet), y))
    elif kind == "audio":
        from vjepa2.data.audio import make_audio_dataset

        dataset, _ = make_audio_dataset(csv_path, frames=config.audio_frames, **common)
    else:
        from vjepa2.data.video import make_clip_dataset

        dataset, _ = make_clip_dataset(csv_path, frames=config.frames, fps=config.fps,
                                       resolution=config.resolution, **common)
    return dataset.unbatch().batch(16)


def encode_items(encoders, dataset):
    """Tokens of every item for each encoder: ([(N, tokens, D) float32, ...], labels (N,))."""
    features, labels = [[] for _ in encoders], []
    for inputs, label in dataset:
        for out, encoder in zip(features, encoders):
            out.append(np.asarray(encoder(inputs, training=False), np.float32))
        labels.append(np.asarray(label))
    return [np.concatenate(f) for f in features], np.concatenate(labels)


def train_probe(train_tokens, train_labels, num_classes, config: ProbeConfig, seed=None):
    """An `AttentiveProbe` fitted on frozen tokens (AdamW, cross-entropy); `seed` (default
    `config.seed`) sets its initialisation and batch order."""
    import keras

    from vjepa2.models import AttentiveProbe

    keras.utils.set_random_seed(config.seed if seed is None else seed)
    dim = train_tokens.shape[-1]
    heads = next(h for h in (4, 3, 2, 1) if dim % h == 0)
    probe = AttentiveProbe(num_classes, dim, num_heads=heads, num_queries=config.num_queries,
                           num_tokens=train_tokens.shape[1] if config.positions else None)
    probe.compile(optimizer=keras.optimizers.AdamW(config.lr, weight_decay=config.weight_decay),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)  # XLA compiles longer than this small model trains
    probe.fit(train_tokens, train_labels, batch_size=config.batch_size, epochs=config.epochs,
              shuffle=True, verbose=0)
    return probe


def score(probe, tokens, labels) -> dict:
    """Top-1 accuracy with its 95% Wilson interval."""
    logits = [np.asarray(probe(tokens[i:i + 256])) for i in range(0, len(tokens), 256)]
    predicted = np.argmax(np.concatenate(logits), axis=-1)
    correct = int(np.sum(predicted == labels))
    return {"top1": correct / len(labels), "correct": correct, "items": int(len(labels)),
            "ci95": list(wilson_interval(correct, len(labels)))}


def score_seeds(train_tokens, train_labels, tokens, labels, num_classes,
                config: ProbeConfig) -> dict:
    """`score` of the probe trained with `config.seed`, and with `config.probe_seeds` > 1 the
    top-1 of a probe per seed (`config.seed + i`), their mean (`top1_mean`) and sample
    standard deviation (`top1_std`)."""
    scores = [score(train_probe(train_tokens, train_labels, num_classes, config,
                                seed=config.seed + i), tokens, labels)
              for i in range(config.probe_seeds)]
    result = dict(scores[0])
    if config.probe_seeds > 1:
        top1 = [r["top1"] for r in scores]
        result.update(seeds=top1, top1_mean=float(np.mean(top1)),
                      top1_std=float(np.std(top1, ddof=1)))
    return result


def difference(pretrained: dict, random_init: dict) -> dict:
    """Pretrained minus random-init top-1 (the means over probe seeds when there are several)
    and its 95% interval: the held-out sampling of each accuracy (normal approximation,
    treated as independent, conservative for positively correlated errors) plus, with several
    probe seeds, the spread of each mean over the seeds."""
    means, variance = [], 0.0
    for r in (pretrained, random_init):
        p = r.get("top1_mean", r["top1"])
        means.append(p)
        variance += p * (1 - p) / r["items"]
        if "seeds" in r:
            variance += r["top1_std"] ** 2 / len(r["seeds"])
    delta, half = means[0] - means[1], 1.96 * math.sqrt(variance)
    return {"top1": delta, "ci95": [delta - half, delta + half],
            "margin_exceeds_interval": bool(delta > half)}


def probe(config: ProbeConfig, verbose: int = 1) -> dict:
    """Runs the frozen evaluation; writes and returns the results dict.

    Raises:
        UsageError: a missing encoder or data, unlabelled rows, a single class.
    """
    import keras

    from vjepa2.data.video import list_videos, write_video_csv
    from vjepa2.files import check_output_folder, write_json

    out = check_output_folder(config.out, "results.json")
    encoder, own_kind = load_encoder(config.encoder)
    kind = items_kind(config, own_kind)
    tubelet = encoder.tubelet_size if kind != own_kind else 0
    if config.heldout_data:
        train, heldout = list_videos(config.data), list_videos(config.heldout_data)
        check_labelled(train, config.data)
        check_labelled(heldout, config.heldout_data)
    else:
        train, heldout = split_items(list_videos(config.data), config.heldout, config.seed)
    for name, rows in (("train", train), ("heldout", heldout)):
        write_video_csv(out / f"{name}.csv", [p for p, _ in rows], [lab for _, lab in rows])
    keras.utils.set_random_seed(config.seed)
    encoders = {"pretrained": encoder}
    if not config.no_baseline:
        encoders["random_init"] = type(encoder).from_config(encoder.get_config())
    started = time.time()
    train_x, test_x, labels = {}, {}, {}
    for split in ("train", "heldout"):
        feats, labels[split] = encode_items(list(encoders.values()),
                                            _dataset(kind, str(out / f"{split}.csv"), config,
                                                     tubelet))
        (train_x if split == "train" else test_x).update(zip(encoders, feats))
    num_classes = int(max(labels["train"].max(), labels["heldout"].max())) + 1
    results = {"config": dataclasses.asdict(config), "kind": kind,
               "encoder_kind": own_kind, "classes": num_classes,
               "train_items": int(len(labels["train"])), "encode_seconds": time.time() - started}
    for name in encoders:
        results[name] = score_seeds(train_x[name], labels["train"], test_x[name],
                                    labels["heldout"], num_classes, config)
        if verbose:
            r = results[name]
            seeds = (f"; mean of {config.probe_seeds} probe seeds {r['top1_mean']:.3f} "
                     f"(sd {r['top1_std']:.3f})" if "seeds" in r else "")
            print(f"probe {kind} {name}: top-1 {r['top1']:.3f} (95% CI {r['ci95'][0]:.3f}-"
                  f"{r['ci95'][1]:.3f}) on {r['items']} held-out items{seeds}", flush=True)
    results["chance"] = float(np.bincount(labels["heldout"]).max() / len(labels["heldout"]))
    if "random_init" in results:
        results["difference"] = difference(results["pretrained"], results["random_init"])
        if verbose:
            d = results["difference"]
            print(f"probe {kind} pretrained - random_init: {d['top1']:+.3f} (95% CI "
                  f"{d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})", flush=True)
    write_json(out / "results.json", results)
    return results
