"""One validation record for docs/results/family: a pretraining run and its frozen probe.

Gathers what a validation run's figures come from into one JSON file: the run's settings
(`RUN/config.json`), its step count and time and the mean training losses over its first and
last `--window` steps (`RUN/metrics.jsonl`), the probe's results (`PROBE/results.json`), and the
commands given with `--command`, in order.

    python scripts/validation_record.py --run RUN --probe PROBE --what "MC-JEPA on ..." \\
        --command "vjepa2 pretrain ..." --command "vjepa2 probe ..." \\
        --machine "2 CPU cores, TensorFlow CPU" --out docs/results/family/NAME_validation.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# Training metrics summarised at the start and the end of the run.
SUMMARISED = ("loss", "jepa", "motion", "flow_photometric", "flow_cycle", "teacher_std")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"validation_record: {path} not found")
    return json.loads(path.read_text())


def training_summary(run: Path, window: int) -> dict:
    """Steps, seconds and the means of `SUMMARISED` over the first and last `window` steps."""
    from vjepa2.files import read_jsonl

    rows, _ = read_jsonl(run / "metrics.jsonl", repair=False)
    if not rows:
        raise SystemExit(f"validation_record: {run / 'metrics.jsonl'} holds no steps")
    summary = {"step": rows[-1]["step"], "seconds": rows[-1].get("time")}
    for name, part in (("first", rows[:window]), ("last", rows[-window:])):
        summary[f"{name}_{window}_steps"] = {
            key: statistics.fmean(values) for key in SUMMARISED
            if (values := [row[key] for row in part if key in row])}
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="the pretraining run folder")
    parser.add_argument("--probe", required=True, type=Path, help="the `vjepa2 probe` --out")
    parser.add_argument("--what", required=True, help="one paragraph: what was tried and why")
    parser.add_argument("--command", action="append", default=[], help="a command, in order")
    parser.add_argument("--machine", default="2 CPU cores, TensorFlow CPU")
    parser.add_argument("--window", type=int, default=20, help="steps averaged at each end")
    parser.add_argument("--out", required=True, type=Path, help="the record's JSON file")
    args = parser.parse_args(argv)
    if args.window < 1:
        raise SystemExit(f"validation_record: --window must be >= 1; received {args.window}")

    from vjepa2.files import write_json

    record = {"what": args.what, "commands": args.command, "machine": args.machine,
              "pretrain": {**read_json(args.run / "config.json"),
                           **training_summary(args.run, args.window)},
              "probe": read_json(args.probe / "results.json")}
    write_json(args.out, record)
    print(json.dumps(record["probe"].get("difference"), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
