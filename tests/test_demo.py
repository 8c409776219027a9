"""End-to-end smoke test at minimum scale: collect -> pretrain -> fine-tune -> plan, resumable."""
import json

from tests.helpers import MICRO_OVERRIDES
from vjepa2.app.demo import DemoScale, format_table, run_demo
from vjepa2.models.world_model import load_world_model

MICRO = DemoScale(
    episodes=2, collect_workers=1, pretrain_steps=2, pretrain_batch=2, finetune_steps=2,
    finetune_batch=2, tasks=("reach",), variations=("heldout",), eval_episodes=1,
    baseline_episodes=1, max_steps=4, samples=16, iterations=1, videos=1,
    encoder_overrides=MICRO_OVERRIDES["encoder"], predictor_overrides=MICRO_OVERRIDES["predictor"],
    ac_overrides=dict(embed_dim=24, depth=1, num_heads=2, mlp_dim=48))


def test_demo_runs_every_stage_and_resumes(tmp_path):
    lines = []
    state = run_demo(tmp_path, MICRO, log=lines.append)
    assert list(state["done"]) == ["logs", "pretrain", "world_model", "stop_rule", "eval"]
    assert state["done"]["logs"]["episodes"] == 2
    assert state["done"]["pretrain"]["step"] == 2 and state["done"]["world_model"]["step"] == 2
    model = load_world_model(tmp_path / "world_model")
    assert model.conventions["frame_stride"] == 2 and model.conventions["image_size"] == 64
    (row,) = state["done"]["eval"]["table"]
    assert row["task"] == "reach" and row["variation"] == "heldout"
    assert row["planner"]["episodes"] == 1 and row["random"]["episodes"] == 1
    planner = json.loads((tmp_path / "eval/reach_heldout/planner/results.json").read_text())
    assert planner["policy"] == "planner" and planner["steps_mean"] == 2  # 4 env steps / stride 2
    assert list((tmp_path / "eval/reach_heldout/planner").rglob("*.mp4"))
    assert "reach" in format_table(state["done"]["eval"]["table"])

    # Run again: every stage is recorded as done and skipped.
    lines.clear()
    again = run_demo(tmp_path, MICRO, log=lines.append)
    assert sum("already done" in line for line in lines) == 5
    assert again["done"]["eval"]["table"] == state["done"]["eval"]["table"]


def test_the_shipped_model_loads_and_plans_offline():
    import numpy as np

    from planning import CEMConfig, Planner
    from vjepa2.models.world_model import shipped_model_dir

    assert sum(p.stat().st_size for p in shipped_model_dir().rglob("*") if p.is_file()) <= 20e6
    planner = Planner.from_run("shipped", config=CEMConfig(samples=16, iterations=1))
    conventions = planner.world_model.conventions
    assert conventions["frame_stride"] == 2 and conventions["stop_energy"] > 0
    frame = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    result = planner.plan(frame, np.zeros(4, np.float32), frame[::-1])
    low, high = np.asarray(conventions["action_low"]), np.asarray(conventions["action_high"])
    assert np.all(result.first_action >= low) and np.all(result.first_action <= high)
    assert planner.env_actions(result.first_action).shape == (2, 4)
