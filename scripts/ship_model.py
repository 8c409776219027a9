"""Copies a trained world model into the package (`vjepa2/assets/world_model`, "shipped").

    python scripts/ship_model.py runs/recipe/world_model [--max-mb 20]

Copies the run's `encoder/`, `ac_predictor/` and `conventions.json`, and writes `training.json`
with the fine-tuning config, the pretraining config of its encoder (when the encoder came from a
pretraining run folder) and the last logged losses, so the installed model says how it was made.
Refuses models above `--max-mb` megabytes. The target folder is replaced atomically.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from vjepa2.models.world_model import (CONVENTIONS_FILE, ENCODER_DIR, PREDICTOR_DIR,
                                       load_world_model, shipped_model_dir)


def last_metrics(run: Path) -> dict | None:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = path.read_text().strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finetune-ac run folder")
    parser.add_argument("--max-mb", type=float, default=20.0)
    parser.add_argument("--note", default="", help="free text stored in training.json")
    args = parser.parse_args()
    run = Path(args.run)
    load_world_model(run)  # fails with a one-line error on a folder that is not a world model
    finetune = json.loads((run / "config.json").read_text())
    encoder_run = Path(finetune["encoder"])
    pretrain = None
    if (encoder_run / "config.json").is_file() and (encoder_run / "encoder").is_dir():
        pretrain = json.loads((encoder_run / "config.json").read_text())
    record = {
        "note": args.note,
        "finetune_ac": finetune,
        "finetune_ac_last_metrics": last_metrics(run),
        "pretrain": pretrain,
        "pretrain_last_metrics": last_metrics(encoder_run) if pretrain else None,
    }
    target = shipped_model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".world_model.", dir=target.parent))
    for name in (ENCODER_DIR, PREDICTOR_DIR):
        shutil.copytree(run / name, staging / name)
    shutil.copy2(run / CONVENTIONS_FILE, staging / CONVENTIONS_FILE)
    (staging / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) / 1e6
    if size > args.max_mb:
        shutil.rmtree(staging)
        print(f"ship_model: the model is {size:.1f} MB, above --max-mb {args.max_mb}",
              file=sys.stderr)
        return 1
    old = target.with_name(".world_model.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)
    print(f"shipped {run} -> {target} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
