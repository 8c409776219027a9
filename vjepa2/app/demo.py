"""`vjepa2 demo`: the whole recipe at small scale, from nothing to a planned episode.

Stages, each written into its own sub-folder of `--out` and each resumable:

1. `logs/`       play episodes of the Fetch tasks' `train` scenes (`vjepa2 collect`), with videos;
2. `pretrain/`   the V-JEPA 2 encoder pretrained on those videos (`vjepa2 pretrain`);
3. `world_model/` the action-conditioned predictor fine-tuned on the logs (`vjepa2 finetune-ac`),
                 with its stop rule calibrated on the same logs (`vjepa2 calibrate-stop`);
4. `eval/`       zero-shot goal-image episodes with the CEM planner, beside the random-action
                 baseline (`vjepa2 evaluate`), in the `heldout` scenes (and the `train` scenes).

`demo.json` records the finished stages; an interrupted demo continues where it stopped when run
again with the same `--out` (collection skips finished episodes, training resumes from its last
checkpoint, evaluation skips finished episodes). The scale is small enough for 2 CPU cores in
under 20 minutes; the success table it prints says what such a short run achieves next to the
shipped model's measured numbers.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from vjepa2.errors import UsageError
from vjepa2.files import atomic_write, check_output_folder

STATE_FILE = "demo.json"
STAGES = ("logs", "pretrain", "world_model", "stop_rule", "eval")


@dataclasses.dataclass(frozen=True)
class DemoScale:
    """Sizes of every stage (the defaults fit 20 minutes on 2 CPU cores)."""

    episodes: int = 100
    collect_workers: int = 2
    image_size: int = 64
    pretrain_steps: int = 400
    pretrain_batch: int = 8
    finetune_steps: int = 500
    finetune_batch: int = 16
    frame_stride: int = 2
    tasks: tuple[str, ...] = ("reach",)
    variations: tuple[str, ...] = ("heldout", "train")
    eval_episodes: int = 4
    baseline_episodes: int = 4
    max_steps: int | None = None
    samples: int | None = None
    iterations: int | None = None
    videos: int = 2
    # Model size overrides (tests shrink the models; the demo uses the `tiny` presets).
    encoder_overrides: dict | None = None
    predictor_overrides: dict | None = None
    ac_overrides: dict | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _load_state(out: Path, scale: DemoScale) -> dict:
    path = out / STATE_FILE
    if not path.exists():
        return {"scale": scale.to_json(), "done": {}}
    state = json.loads(path.read_text())
    saved = json.loads(json.dumps(scale.to_json()))  # tuples -> lists, as stored
    if state.get("scale") != saved:
        raise UsageError(f"{out} holds a demo of another scale; use another --out or delete "
                         f"{path} to start over")
    return state


def _save_state(out: Path, state: dict) -> None:
    atomic_write(out / STATE_FILE, json.dumps(state, indent=2))


def _stage(out: Path, state: dict, name: str, run, log):
    """Runs `run()` unless the stage is recorded as done; records its summary."""
    if name in state["done"]:
        log(f"[demo] {name}: already done ({state['done'][name].get('seconds', 0):.0f} s); "
            "skipping")
        return state["done"][name]
    log(f"[demo] {name}: starting")
    t0 = time.perf_counter()
    summary = dict(run() or {})
    summary["seconds"] = time.perf_counter() - t0
    state["done"][name] = summary
    _save_state(out, state)
    log(f"[demo] {name}: done in {summary['seconds']:.0f} s")
    return summary


def run_demo(out: str | Path, scale: DemoScale = DemoScale(), log=print) -> dict:
    """Runs (or continues) the demo in `out`; returns the state dict with the results table."""
    from envs.collect import CollectConfig, collect
    from envs.tasks import get_task
    from vjepa2.train.finetune_ac import FinetuneACConfig, finetune_ac
    from vjepa2.train.pretrain import PretrainConfig, pretrain

    for task in scale.tasks:
        get_task(task)
    out = check_output_folder(out, STATE_FILE)
    out.mkdir(parents=True, exist_ok=True)
    state = _load_state(out, scale)
    _save_state(out, state)
    t_start = time.perf_counter()

    def logs():
        summary = collect(CollectConfig(task="play", variation="train", image_size=128, seed=0),
                          scale.episodes, out / "logs", workers=scale.collect_workers,
                          videos=True, progress=False)
        if summary["present"] < scale.episodes:
            raise RuntimeError(f"collection finished {summary['present']} of {scale.episodes} "
                               "episodes; run the demo again to collect the rest")
        return {"episodes": summary["present"]}

    def pretrain_stage():
        config = PretrainConfig(
            videos=str(out / "logs" / "videos"), out=str(out / "pretrain"),
            steps=scale.pretrain_steps, preset="tiny", batch_size=scale.pretrain_batch,
            frames=8, resolution=scale.image_size, fps=8.0,
            checkpoint_every=max(1, scale.pretrain_steps // 4), precision="float32")
        overrides = None
        if scale.encoder_overrides or scale.predictor_overrides:
            overrides = {"encoder": dict(scale.encoder_overrides or {}),
                         "predictor": dict(scale.predictor_overrides or {})}
        return pretrain(config, resume=True, verbose=1, preset_overrides=overrides)

    def finetune_stage():
        config = FinetuneACConfig(
            encoder=str(out / "pretrain"), logs=str(out / "logs"),
            out=str(out / "world_model"), steps=scale.finetune_steps, preset="tiny",
            batch_size=scale.finetune_batch, clip_length=4, frame_stride=scale.frame_stride,
            image_size=scale.image_size, augment=True,
            checkpoint_every=max(1, scale.finetune_steps // 4), precision="float32")
        return finetune_ac(config, resume=True, verbose=1,
                           predictor_overrides=dict(scale.ac_overrides or {}) or None)

    def stop_rule_stage():
        from vjepa2.app.calibrate import calibrate_stop_energy, write_stop_energy
        from vjepa2.app.models import load_model

        world_model, _ = load_model(out / "world_model")
        result = calibrate_stop_energy(world_model, out / "logs",
                                       episodes=min(40, scale.episodes))
        if result["stop_energy"] is not None:
            write_stop_energy(out / "world_model", result)
        return {"stop_energy": result["stop_energy"], "pairs": result["pairs"]}

    def eval_stage():
        return {"table": evaluate_demo(out, scale, log)}

    _stage(out, state, "logs", logs, log)
    _stage(out, state, "pretrain", pretrain_stage, log)
    _stage(out, state, "world_model", finetune_stage, log)
    _stage(out, state, "stop_rule", stop_rule_stage, log)
    _stage(out, state, "eval", eval_stage, log)
    state["wall_seconds_this_run"] = time.perf_counter() - t_start
    _save_state(out, state)
    log(format_table(state["done"]["eval"]["table"]))
    log(f"[demo] outputs in {out}: videos under eval/*/*/videos, the world model in "
        f"{out / 'world_model'} (use it with --model in vjepa2 evaluate or Planner.from_run)")
    return state


def evaluate_demo(out: Path, scale: DemoScale, log) -> list[dict]:
    """Planner and random baseline episodes per task and variation; returns the table rows."""
    from vjepa2.app.evaluation import evaluate
    from vjepa2.app.models import load_model

    world_model, folder = load_model(out / "world_model")
    overrides = [f"cem.{name}={value}" for name, value in (
        ("samples", scale.samples), ("iterations", scale.iterations)) if value is not None]
    rows = []
    for task in scale.tasks:
        for variation in scale.variations:
            row = {"task": task, "variation": variation}
            for policy, episodes in (("planner", scale.eval_episodes),
                                     ("random", scale.baseline_episodes)):
                if episodes < 1:
                    continue
                folder = out / "eval" / f"{task}_{variation}" / policy
                planner_args = dict(world_model=world_model, model_path=folder,
                                    preset="default", overrides=overrides
                                    ) if policy == "planner" else {}
                results = evaluate(task, episodes, folder, variation=variation, policy=policy,
                                   max_steps=scale.max_steps, progress=False,
                                   videos=scale.videos if policy == "planner" else 0,
                                   **planner_args)
                row[policy] = {"successes": results["successes"],
                               "episodes": results["episodes"],
                               "final_distance_median": results["final_distance"]["median"]}
                if policy == "planner":
                    row["seconds_per_action"] = results["plan_seconds_per_action"]["median"]
                log(f"[demo] {task}/{variation}/{policy}: {results['successes']}/"
                    f"{results['episodes']} successful")
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["", "task            scenes    planner      random       planner final dist  s/action",
             "--------------  --------  -----------  -----------  ------------------  --------"]
    for row in rows:
        def cell(policy):
            r = row.get(policy)
            return f"{r['successes']}/{r['episodes']}" if r else "-"

        dist = (row.get("planner") or {}).get("final_distance_median")
        sec = row.get("seconds_per_action")
        lines.append(f"{row['task']:<14}  {row['variation']:<8}  {cell('planner'):<11}  "
                     f"{cell('random'):<11}  {'-' if dist is None else f'{dist:.3f} m':<18}  "
                     f"{'-' if sec is None else f'{sec:.2f}'}")
    lines.append("")
    lines.append("(a 20-minute CPU run; the README's results table gives the shipped model's "
                 "numbers over >= 50 episodes)")
    return "\n".join(lines)
