"""The README's Python example runs as printed and shows the planner succeeding."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _python_block(section: str) -> str:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_the_planner_example_runs_as_printed_and_succeeds(tmp_path):
    code = _python_block("The planner in your code")
    expected = re.search(r"# (True \S+ \d+)\s*$", code.strip()).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == expected


def test_recipe_runs_every_step_in_order(tmp_path):
    """scripts/recipe.sh with stand-ins for `vjepa2` and `python` that log their arguments: the
    whole lineage (logs, arrays, training, stop rule, evaluation, table) in order."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("vjepa2", "python"):
        stub = bin_dir / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{log}"\n')
        stub.chmod(0o755)
    out = tmp_path / "recipe"
    (out / "train").mkdir(parents=True)
    (out / "train" / "summary.json").write_text("{}")  # trained (on a GPU) already
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TASKS": "grasp", "EVAL_EPISODES": "3",
           "VIEW": "scene+wrist"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "recipe.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    steps = [c.split()[1] if c.startswith("vjepa2") else c.split()[1].split("/")[-1]
             for c in calls]
    assert steps == ["collect", "export_arrays.py", "calibrate-stop", "evaluate", "evaluate",
                     "evaluate", "evaluate", "results_table.py"]
    assert "--view scene+wrist" in calls[0] and "play_wide_scene_wrist" in calls[0]
    assert f"{out}/play_wide_scene_wrist_64.npz.xz" in calls[1]
    assert "--preset reference_method" in calls[4]
