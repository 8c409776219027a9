"""The evaluation harness: zero-shot goal-image episodes, their records, results and reports.

- `harness.evaluate`: runs (or continues) an evaluation into a results folder;
- `presets`: the named planner presets per task (`PRESETS`, `resolve_preset`);
- `episodes`: one episode (planner or baseline) and its record;
- `store`: the results folder and resume;
- `report`: statistics, `results.json`'s content, plots, videos, console lines.
"""
from vjepa2.app.evaluation.harness import POLICIES, VARIATIONS, evaluate
from vjepa2.app.evaluation.presets import PRESETS, resolve_preset, subgoal_budgets
from vjepa2.app.evaluation.report import print_summary, summarize, wilson_interval

__all__ = ["POLICIES", "PRESETS", "VARIATIONS", "evaluate", "print_summary", "resolve_preset",
           "subgoal_budgets", "summarize", "wilson_interval"]
