"""An evaluation's output folder: its settings, the finished episodes, and resume.

Layout:
- `evaluation.json`: the settings (a re-run must match them; it then continues the evaluation);
- `episodes.jsonl`: one record per finished episode, appended and fsynced as it finishes (a torn
  last line, left by a crash while appending, is dropped on the next run);
- `results.json`: the aggregate, rewritten atomically after each episode;
- `summary.png` and `videos/`: pictures of the finished episodes.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vjepa2.files import append_line, check_output_folder, check_settings, read_jsonl, write_json

SETTINGS_FILE = "evaluation.json"
EPISODES_FILE = "episodes.jsonl"
RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.png"


class ResultsStore:
    """The records of one evaluation folder, continued where a previous run stopped.

    Args:
        out: the output folder (created).
        settings: what makes the evaluation what it is; must equal the recorded settings.

    Raises:
        UsageError: the folder is a file, another command's, or holds other settings.
    """

    def __init__(self, out: str | os.PathLike, settings: dict):
        self.out = check_output_folder(out, SETTINGS_FILE)
        self.out.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        check_settings(self.out / SETTINGS_FILE, settings, what="an evaluation", record=False)
        self.episodes_path = self.out / EPISODES_FILE
        records, dropped = read_jsonl(self.episodes_path)
        if dropped:
            print(f"evaluate: dropped a partly written last line of {self.episodes_path}",
                  file=sys.stderr)
        self.records: dict[int, dict] = {}
        for record in records:
            self.records.setdefault(int(record["seed"]), record)
        self.previous_wall = 0.0
        if (self.out / RESULTS_FILE).exists():
            self.previous_wall = float(json.loads((self.out / RESULTS_FILE).read_text())
                                       .get("wall_seconds_total", 0.0))
        self.started = time.perf_counter()

    def begin(self) -> None:
        """Records the settings (once the run has started: a run that fails to start, e.g. on a
        bad preset, leaves nothing that a corrected re-run would conflict with)."""
        check_settings(self.out / SETTINGS_FILE, self.settings, what="an evaluation")

    def add(self, record: dict) -> None:
        """Stores a finished episode (its line marks it done)."""
        append_line(self.episodes_path, record)
        self.records[int(record["seed"])] = record

    def finished(self, seeds) -> list[dict]:
        """The records of `seeds` that are done, in seed order."""
        return [self.records[s] for s in seeds if s in self.records]

    def wall_seconds(self) -> dict:
        """Wall time of this run and of every run into the folder."""
        wall = time.perf_counter() - self.started
        return {"wall_seconds_this_run": wall, "wall_seconds_total": self.previous_wall + wall}

    def write_results(self, results: dict) -> Path:
        return write_json(self.out / RESULTS_FILE, results)

    def video_path(self, seed: int) -> Path:
        return self.out / "videos" / f"episode-{seed:08d}.mp4"
