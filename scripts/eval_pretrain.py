"""Evidence that pretraining learns: held-out masked-token L1 of a trained run against the
same run's initial weights and a predict-the-mean-token baseline.

    python scripts/eval_pretrain.py --run RUN --videos HELDOUT_DIR [--json out.json]

The initial model is rebuilt from the run's config and seed (the same initialisation the run
started from). Each model is scored against its own EMA teacher's normalized tokens, next to
the mean-token baseline for those same targets, on the same held-out clips and masks.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="pretraining run folder")
    parser.add_argument("--videos", required=True, help="held-out video folder or CSV")
    parser.add_argument("--batches", type=int, default=5, help="held-out batches to score")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import keras

    from vjepa2.data.video import make_clip_dataset
    from vjepa2.train.checkpoint import CheckpointManager
    from vjepa2.train.pretrain import (CONFIG_FILE, PretrainConfig, build_trainer,
                                       make_mask_sampler)
    from vjepa2.train.pretrain_eval import masked_prediction_l1

    run = Path(args.run)
    saved = json.loads((run / CONFIG_FILE).read_text())
    overrides = saved.pop("preset_overrides", None) or None
    saved["ema"] = tuple(saved["ema"])
    config = PretrainConfig(**saved)
    dataset, _ = make_clip_dataset(args.videos, frames=config.frames, fps=config.fps,
                                   resolution=config.resolution, batch_size=config.batch_size,
                                   training=False, repeat=False)
    batches = [batch for batch, _ in zip(dataset, range(args.batches))]
    sampler = make_mask_sampler(config)
    sampler.seed = 777  # held-out masks, the same for every model

    keras.utils.set_random_seed(config.seed)
    initial = build_trainer(config, overrides)
    trained = build_trainer(config, overrides)
    state = CheckpointManager(run / "checkpoints").restore(trained, trained.optimizer)
    results = {
        "run": str(run), "step": state["step"], "heldout": args.videos,
        "initial": masked_prediction_l1(initial, batches, sampler),
        "trained": masked_prediction_l1(trained, batches, sampler),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
