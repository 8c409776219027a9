"""A markdown table of `vjepa2 probe-states` results (one row per encoder and probe).

    python scripts/probe_table.py /work/probe/results2/*/ > table.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(folder: Path):
    r = json.loads((folder / "results.json").read_text())
    c = r["config"]
    for encoder in ("pretrained", "random_init"):
        if encoder not in r:
            continue
        for probe in ("attentive", "ridge"):
            s = r[encoder][probe]
            yield (f"| {c['view']} | {r['resolution']} | {r[encoder]['tokens'][0]} | "
                   f"{Path(c['encoder']).name if encoder == 'pretrained' else 'random init'} | "
                   f"{probe} | {s['finger_open']['accuracy']:.3f} "
                   f"({s['finger_open']['majority_class']:.3f}) | "
                   f"{s['in_hand']['accuracy']:.3f} ({s['in_hand']['majority_class']:.3f}) | "
                   f"{s['object_xyz']['r2']['all']:.3f} | {s['gripper_xyz']['r2']['all']:.3f} | "
                   f"{_relative(s)} |")


def _relative(s: dict) -> str:
    """Object minus gripper R^2 (results written before it was scored: '-')."""
    return f"{s['object_minus_gripper']['r2']['all']:.3f}" if "object_minus_gripper" in s else "-"


def main(argv=None) -> int:
    folders = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    missing = [str(f) for f in folders if not (f / "results.json").is_file()]
    if not folders or missing:
        print(f"probe_table: error: no results.json in {', '.join(missing) or 'no folder given'}",
              file=sys.stderr)
        return 2
    print("| view | px | tokens/frame | encoder | probe | finger open (majority) | "
          "in hand (majority) | object xyz R^2 | gripper xyz R^2 | object - gripper R^2 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for folder in folders:
        for row in rows(folder):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
