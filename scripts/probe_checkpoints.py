"""Probe the teacher and the student of saved pretraining checkpoints: a learning curve.

A pretraining run keeps only its newest checkpoints, so copy them aside while it runs; this
loads each (the run's `config.json` rebuilds the trainer) and scores both encoders with the
attentive probe of `vjepa2 probe` (one seed) on a fixed train / validation split of labelled
items of the run's kind (images, audio clips or videos, read as the run read them). Use a
validation split, not the held-out one the result will be reported on.

    python scripts/probe_checkpoints.py --run RUN --train train.csv --validation val.csv \
        CKPT_DIR [CKPT_DIR ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="pretraining run folder (its config.json)")
    parser.add_argument("--train", required=True, help="path,label CSV the probe trains on")
    parser.add_argument("--validation", required=True, help="path,label CSV it is scored on")
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders (ckpt-NNNNNNNN)")
    args = parser.parse_args(argv)

    from vjepa2.train.pretrain import PretrainConfig, build_trainer
    from vjepa2.train.probe import ProbeConfig, _dataset, encode_items, encoder_kind, score_seeds

    saved = json.loads((Path(args.run) / "config.json").read_text())
    fields = PretrainConfig.__dataclass_fields__
    config = PretrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in saved.items() if k in fields})
    trainer = build_trainer(config, saved.get("preset_overrides"))
    kind = encoder_kind(trainer.encoder)
    probe_config = ProbeConfig(encoder="-", data=args.train, out="-", frames=config.frames,
                               fps=config.fps, resolution=config.resolution,
                               audio_frames=config.audio_frames)
    splits = [list(_dataset(kind, csv, probe_config)) for csv in (args.train, args.validation)]
    for folder in args.checkpoints:
        trainer.load_weights(str(Path(folder) / "model.weights.h5"))
        row = {"checkpoint": Path(folder).name}
        for name, encoder in (("teacher", trainer.teacher), ("student", trainer.encoder)):
            ((train_x,), train_y), ((val_x,), val_y) = (encode_items([encoder], s) for s in splits)
            classes = int(max(train_y.max(), val_y.max())) + 1
            row[name] = score_seeds(train_x, train_y, val_x, val_y, classes, probe_config)["top1"]
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
