"""The fault campaign: the faults a hostile but fair user causes, and what each must leave.

Kills (`kill -9` at random points and during checkpoint writes, SIGINT) of pretrain,
finetune-ac, collect and evaluate, each followed by a resume; full disks (3 MB and 200 MB
tmpfs, where the machine lets root mount one; skipped with the reason otherwise); corrupt
files; bad command-line arguments; bad Planner inputs; a diverging loss. Every row checks:
no data lost (each step or episode exactly once, final artefacts present, `latest` valid),
no orphan processes, no temp files left, no traceback, and one error line where one is due.

    python scripts/fault_campaign.py            # every row (about 20 minutes on 2 CPU cores)
    python scripts/fault_campaign.py --quick    # the in-process subset (seconds)

Prints a table (fault, expected, observed, data lost, result) and exits 1 if any row fails.
The quick rows also run in the default test run (tests/test_faults.py); the full campaign
under `pytest -m faults`. Results: docs/reliability.md.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fault_commands  # noqa: E402
import fault_inputs  # noqa: E402
import fault_quick  # noqa: E402
from fault_tools import Row  # noqa: E402


class Campaign:
    """Shared inputs of the rows (made once, lazily) and the random choices of the kills."""

    def __init__(self, work: Path, seed: int = 0):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self._videos = self._logs = self.pretrained = self.evaluated = None

    def path(self, name: str) -> Path:
        return self.work / name

    @property
    def videos(self) -> Path:
        """Six small generated videos, plus a corrupt and an empty .mp4 (skipped, counted)."""
        if self._videos is None:
            self._videos = fault_commands.make_videos(self.path("videos"))
        return self._videos

    @property
    def logs(self) -> Path:
        if self._logs is None:
            self._logs = fault_commands.make_logs(self.path("logs"))
        return self._logs


QUICK = fault_quick.ROWS
FULL = fault_commands.ROWS + fault_inputs.ROWS


def run_rows(rows, campaign: Campaign, stream=sys.stdout) -> list[Row]:
    results = []
    for row_fn in rows:
        started = time.monotonic()
        try:
            row = row_fn(campaign)
        except Exception as error:  # noqa: BLE001 - a campaign bug is a failed row, not a stop
            row = Row(row_fn.__name__.replace("_", " "), "(row ran)",
                      f"campaign error: {type(error).__name__}: {error}", "unknown")
        print(f"[{row.result():>7}] {row.fault} ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)
        results.append(row)
    return results


def table(rows: list[Row]) -> str:
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| fault | expected | observed | data lost | result |",
             "|---|---|---|---|---|"]
    lines += [f"| {cell(r.fault)} | {cell(r.expected)} | {cell(r.observed)} | {cell(r.lost)} "
              f"| {r.result()} |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the quick in-process rows")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill points")
    parser.add_argument("--only", default=None, help="run the rows whose name contains this")
    args = parser.parse_args(argv)
    rows = QUICK if args.quick else QUICK + FULL
    if args.only:
        rows = [r for r in rows if args.only in r.__name__]
    with tempfile.TemporaryDirectory(prefix="fault-campaign-") as scratch:
        campaign = Campaign(Path(args.work or scratch), args.seed)
        results = run_rows(rows, campaign)
    print(table(results))
    failed = [r for r in results if not r.ok and not r.skipped]
    print(f"\n{len(results) - len(failed)}/{len(results)} rows pass"
          f" ({sum(bool(r.skipped) for r in results)} skipped)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
