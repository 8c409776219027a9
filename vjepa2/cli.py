"""The `vjepa2` command: parse arguments, build a config, call the library that does the work.

No algorithms live here, and no library function receives the parsed arguments: each command
turns them into a config object or keyword arguments first. Training flags are generated from
the config dataclasses (`vjepa2.app.flags`), so each default is written once, in the config.
Heavy imports (TensorFlow, MuJoCo) happen inside each command so that `vjepa2 --help` is
instant.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vjepa2.errors import UsageError

TASK_HELP = "reach, push, grasp, reach_with_object or pick_and_place"
VARIATIONS = ("train", "wide", "heldout")
VIDEOS_MARKER = "videos.json"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {value}")
    return value


# ------------------------------------------------------------------------------------ commands


def _cmd_collect(args: argparse.Namespace) -> int:
    from envs.collect import CollectConfig, collect

    config = CollectConfig(task=args.task, variation=args.variation, image_size=args.image_size,
                           noise=args.noise, seed=args.seed, view=args.view)
    summary = collect(config, args.episodes, args.out, workers=args.workers, videos=args.videos)
    n = summary["collected"]
    rate = f"{summary['successes']}/{n} successful" if n else "nothing new to collect"
    print(f"collect: {summary['present']}/{summary['requested']} episodes in {args.out} "
          f"({n} new, {rate}, {summary['seconds']:.1f} s)")
    if summary["failed"] or summary["present"] < summary["requested"]:
        print(f"collect: {len(summary['failed'])} episodes failed; re-run the same command to "
              "collect the missing ones", file=sys.stderr)
        return 1
    return 0


def _cmd_make_videos(args: argparse.Namespace) -> int:
    from vjepa2.data.synthetic import generate_videos
    from vjepa2.files import check_output_folder, write_json

    out = check_output_folder(args.out, VIDEOS_MARKER)
    settings = {"count": args.count, "frames": args.frames, "size": args.size, "fps": args.fps,
                "seed": args.seed}
    paths = generate_videos(out, args.count, frames=args.frames, size=args.size,
                            fps=args.fps, seed=args.seed)
    write_json(out / VIDEOS_MARKER, settings)  # marks the folder as make-videos' own
    print(f"wrote {len(paths)} videos to {args.out}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from vjepa2.app.flags import config_from_args
    from vjepa2.train.pretrain import PretrainConfig, pretrain

    config = config_from_args(PretrainConfig, args)
    summary = pretrain(config, resume=args.resume)
    print(f"done: step {summary['step']}; encoder saved to {Path(config.out) / 'encoder'}")
    return 0


def _cmd_finetune_ac(args: argparse.Namespace) -> int:
    from vjepa2.app.flags import config_from_args
    from vjepa2.train.finetune_ac import FinetuneACConfig, finetune_ac

    config = config_from_args(FinetuneACConfig, args)
    summary = finetune_ac(config, resume=args.resume)
    print(f"done: step {summary['step']}; world model saved in {config.out} "
          "(load with planning.Planner.from_run or vjepa2.models.world_model.load_world_model)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from vjepa2.app.evaluation import evaluate, resolve_preset
    from vjepa2.app.evaluation.workers import workers_from_flags
    from vjepa2.files import check_output_folder

    check_output_folder(args.out, "evaluation.json")  # before the model loads: fail fast
    workers = workers_from_flags(args.workers, args.engine, args.ray_address)
    if args.policy == "planner":
        resolve_preset(args.task, args.preset, args.set or ())
    world_model = folder = None
    if args.policy == "planner" and args.remote is None:
        from vjepa2.app.models import load_model

        world_model, folder = load_model(args.model or "shipped")
    elif args.model is not None:
        raise UsageError("--model and --remote exclude each other" if args.remote
                         else f"--policy {args.policy} takes no --model")
    results = evaluate(args.task, args.episodes, args.out, preset=args.preset,
                       overrides=args.set or (), policy=args.policy, world_model=world_model,
                       model_path=folder, variation=args.variation, max_steps=args.max_steps,
                       videos=args.videos, seed=args.seed, image_size=args.image_size,
                       noise=args.noise, parallel=args.parallel, remote=args.remote,
                       workers=workers)
    return 0 if results["complete"] else 1


def _cmd_presets(args: argparse.Namespace) -> int:
    import json

    from vjepa2.app.evaluation import resolve_preset
    from vjepa2.app.evaluation.presets import PRESETS

    if args.task not in PRESETS:
        resolve_preset(args.task)  # UsageError naming the tasks
    for name, preset in PRESETS[args.task].items():
        if args.name is None or args.name == name:
            print(f"{args.task} {name}: {preset.description}")
            if args.name is not None or args.full:
                print(json.dumps(preset.to_dict(), indent=1))
    return 0


def _cmd_calibrate_stop(args: argparse.Namespace) -> int:
    from vjepa2.app.calibrate import calibrate_stop_energy, write_stop_energy
    from vjepa2.app.models import load_model

    world_model, _ = load_model(args.model)
    result = calibrate_stop_energy(world_model, args.logs, radius=args.radius,
                                   precision=args.precision, episodes=args.episodes)
    if result["stop_energy"] is None:
        print(f"vjepa2 calibrate-stop: no latent distance reaches precision {args.precision} "
              f"within {args.radius} m on {result['pairs']} frame pairs; nothing written",
              file=sys.stderr)
        return 1
    path = write_stop_energy(args.model, result)
    print(f"stop_energy {result['stop_energy']:.4f} (precision {args.precision} within "
          f"{args.radius} m, recall {result['recall']:.2f}, {result['pairs']} pairs from "
          f"{result['episodes']} episodes) written to {path}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from vjepa2.app.flags import config_from_args
    from vjepa2.train.probe import ProbeConfig, probe

    results = probe(config_from_args(ProbeConfig, args))
    print(f"results written to {Path(args.out) / 'results.json'} ({results['kind']}, "
          f"{results['classes']} classes, chance {results['chance']:.3f})")
    return 0


def _cmd_make_family_data(args: argparse.Namespace) -> int:
    from vjepa2.data.family_data import generate

    paths = generate(args.kind, args.out, args.count, seed=args.seed)
    print(f"wrote {len(paths)} {args.kind} files and their path,label CSVs to {args.out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from vjepa2.app.serve import serve_model

    serve_model(args.model, args.task, args.preset, args.set or (), host=args.host,
                port=args.port, max_batch=args.max_batch, window_ms=args.window_ms,
                timeout=args.timeout)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from vjepa2.convert import convert_checkpoint

    summary = convert_checkpoint(args.checkpoint, args.out, args.preset,
                                 encoder_heads=args.encoder_heads,
                                 predictor_heads=args.predictor_heads,
                                 image_size=args.image_size, overwrite=args.overwrite)
    for folder, model in summary["models"].items():
        skipped = ", ".join(model["ignored_keys"]) or "none"
        print(f"{Path(args.out) / folder}: {model['params']:,} parameters (skipped keys: "
              f"{skipped})")
    print(f"converted {args.checkpoint} ({summary['preset'] or 'custom size'}); summary in "
          f"{Path(args.out) / 'conversion.json'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from vjepa2.app.demo import DemoScale, run_demo

    scale = DemoScale(episodes=args.episodes, pretrain_steps=args.pretrain_steps,
                      finetune_steps=args.finetune_steps, eval_episodes=args.eval_episodes,
                      baseline_episodes=args.eval_episodes)
    run_demo(args.out, scale)
    return 0


# ------------------------------------------------------------------------------------ parsers


def _collect_parser(sub) -> None:
    p = sub.add_parser(
        "collect", help="collect robot logs (RLDS) with scripted policies in the MuJoCo tasks",
        description="Run scripted policies in the MuJoCo tasks with parallel workers and write "
        "RLDS episodes (TFDS on-disk format). Re-running with the same --out continues an "
        "interrupted collection up to --episodes without duplicates.")
    p.add_argument("--task", required=True,
                   help=f"task name ({TASK_HELP}) or 'play' for the exploratory play policy")
    p.add_argument("--variation", default="train", choices=VARIATIONS,
                   help="scene variation set (default: train)")
    p.add_argument("--episodes", type=_positive_int, required=True, help="episodes to collect")
    p.add_argument("--workers", type=_positive_int, default=1, help="parallel worker processes")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--videos", action="store_true",
                   help="also write each episode's camera frames as an mp4 (readable by pretrain)")
    p.add_argument("--image-size", type=_positive_int, default=128, help="camera frame size in px")
    p.add_argument("--view", default="scene", choices=["scene", "close", "wrist", "scene+wrist"],
                   help="what the camera sees (scene+wrist: both side by side)")
    p.add_argument("--noise", type=float, default=None,
                   help="action noise of the scripted expert (default: the policy's own)")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode i uses seed + i")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser(
        "make-videos", help="generate mp4 videos of procedurally moving objects (test data)",
        description="Write procedurally generated videos (textured backgrounds, moving, "
        "bouncing, spinning shapes with occlusions) that pretrain can read. Different seeds "
        "give disjoint splits.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=_positive_int, default=200, help="number of videos")
    p.add_argument("--frames", type=_positive_int, default=48, help="frames per video")
    p.add_argument("--size", type=_positive_int, default=128, help="frame size in px")
    p.add_argument("--fps", type=_positive_int, default=8, help="frame rate")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.set_defaults(func=_cmd_make_videos)


def _training_parsers(sub) -> None:
    from vjepa2.app.flags import add_config_flags
    from vjepa2.train.finetune_ac import FinetuneACConfig
    from vjepa2.train.pretrain import PretrainConfig

    p = sub.add_parser(
        "pretrain", help="self-supervised V-JEPA 2 pretraining of a video encoder on video files",
        description="Pretrain a video encoder with the V-JEPA 2 objective (predict the EMA "
        "teacher's latent tokens of masked space-time blocks from the visible ones). Writes "
        "checkpoints, metrics.jsonl and TensorBoard logs into --out.")
    add_config_flags(p, PretrainConfig)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly from its last checkpoint")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser(
        "finetune-ac", help="fine-tune an action-conditioned predictor (V-JEPA 2-AC) on robot logs",
        description="Train the action-conditioned predictor on RLDS robot logs with the "
        "pretrained encoder frozen (teacher-forcing L1 + 2-step rollout L1). Writes checkpoints, "
        "metrics.jsonl and the world model (encoder + predictor + conventions) into --out.")
    add_config_flags(p, FinetuneACConfig)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly from its last checkpoint")
    p.set_defaults(func=_cmd_finetune_ac)


def _evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="zero-shot goal-image evaluation of the planner (or a baseline)",
        description="Run episodes of a task with the CEM planner in the loop (MPC), reading "
        "success from the simulator only after each episode. The planner follows the task's "
        "preset (its best measured setting; `vjepa2 presets --task T` lists the others). "
        "Writes results.json, per-episode records, videos and a summary plot into --out.")
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument("--episodes", type=_positive_int, required=True, help="episodes to run")
    p.add_argument("--out", required=True, help="output folder (re-run to continue it)")
    p.add_argument("--model", default=None,
                   help="world-model run folder (from finetune-ac), or 'shipped' (the default: "
                   "the small model installed with the package)")
    p.add_argument("--variation", default="heldout", choices=VARIATIONS,
                   help="scene variation set (default: heldout)")
    p.add_argument("--policy", default="planner", choices=["planner", "random", "expert"],
                   help="planner (CEM + world model) or a baseline in the same harness")
    p.add_argument("--preset", default=None,
                   help="planner preset: a name of the task's table (default, reference_method, "
                   "reference, notebook, ...) or a saved evaluation.json (default: the task's "
                   "default)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="change one preset field, e.g. cem.samples=128, goals=pregrasp,goal, "
                   "gripper=off, gripper.threshold=0.5, stop_energy=0 (repeatable)")
    p.add_argument("--max-steps", type=_positive_int, default=None,
                   help="env steps per episode (default: the task's 50)")
    p.add_argument("--videos", type=int, default=4,
                   help="episodes to save as mp4 (observation beside goal, energy curve)")
    p.add_argument("--seed", type=int, default=1000, help="base seed; episode i uses seed + i")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="camera frame size in px (default 128; the model resizes frames)")
    p.add_argument("--noise", type=float, default=None,
                   help="the expert baseline's action noise (default: the policy's own)")
    p.add_argument("--remote", default=None, metavar="URL",
                   help="plan with a vjepa2 serve service at URL instead of loading --model")
    p.add_argument("--parallel", type=_positive_int, default=1,
                   help="environments run at once (each in its own process), planned for in "
                   "one batched call per step; same episodes and records as 1 (default: 1)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="K",
                   help="spread the episodes over K worker processes, each loading the model "
                   "once (with --parallel envs each); only this process writes --out")
    p.add_argument("--engine", default=None, choices=["processes", "ray"],
                   help="runs the workers: child processes, or Ray tasks (the ray extra)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS", help="local (default: "
                   "a Ray started for this run), auto (`ray start` here) or HOST:PORT")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("presets", help="list a task's planner presets",
                       description="Print the named planner presets of a task (vjepa2 evaluate "
                       "--preset NAME); with a name, its every field.")
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument("name", nargs="?", default=None, help="one preset to print in full")
    p.add_argument("--full", action="store_true", help="print every preset in full")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "calibrate-stop", help="calibrate the planner's stop rule on robot logs",
        description="Measure, on frame pairs of the training logs, the largest latent distance "
        "at which the end effectors of the pair are within --radius metres with the given "
        "precision, and store it as stop_energy in the run's conventions.json (the presets' "
        "stop_energy 'model' uses it).")
    p.add_argument("--model", required=True, help="world-model run folder (from finetune-ac)")
    p.add_argument("--logs", required=True, help="RLDS logs (e.g. the training logs)")
    p.add_argument("--radius", type=float, default=0.05, help="metres that count as arrived")
    p.add_argument("--precision", type=float, default=0.9,
                   help="required fraction of truly close pairs below the threshold")
    p.add_argument("--episodes", type=_positive_int, default=40, help="episodes to read")
    p.set_defaults(func=_cmd_calibrate_stop)


def _demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="the whole recipe at small scale: collect, pretrain, fine-tune, plan",
        description="Collect play logs, pretrain the encoder on their videos, fine-tune the "
        "action-conditioned predictor, and plan from goal images in held-out scenes beside the "
        "random baseline; prints a success table and writes videos. Re-run with the same --out "
        "to continue an interrupted demo.")
    p.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    p.add_argument("--episodes", type=_positive_int, default=100, help="play episodes to log")
    p.add_argument("--pretrain-steps", type=_positive_int, default=400,
                   help="encoder pretraining steps")
    p.add_argument("--finetune-steps", type=_positive_int, default=500,
                   help="action-conditioned predictor steps")
    p.add_argument("--eval-episodes", type=_positive_int, default=4,
                   help="planner (and random) episodes per task and scene set")
    p.set_defaults(func=_cmd_demo)


def _family_parsers(sub) -> None:
    from vjepa2.app.flags import add_config_flags
    from vjepa2.train.probe import ProbeConfig

    p = sub.add_parser(
        "probe", help="frozen evaluation: an attentive probe on a pretrained encoder's tokens",
        description="Train an attentive probe (cross-attention pooling + linear head) on the "
        "frozen tokens of any family member's encoder (video, image or audio) over a labelled "
        "path,label CSV; report top-1 on a held-out split beside the same probe on a randomly "
        "initialised encoder. Writes results.json into --out.")
    add_config_flags(p, ProbeConfig)
    p.set_defaults(func=_cmd_probe)
    from vjepa2.app.state_probe_cli import add_parsers
    add_parsers(sub)

    from vjepa2.data.family_data import KINDS
    p = sub.add_parser(
        "make-family-data", help="generate labelled images, audio clips or moving-shape clips",
        description="Write labelled data with a path,label CSV: shape images (label: kind), "
        "tones and chirps (label: pitch contour), shapes moving over texture (label: direction) "
        "or scikit-learn's real handwritten digits, still or moving (label: digit).")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=_positive_int, default=None,
                   help="files (default 1000; digits: all 1797; moving-digits: clips per "
                   "training digit, 3)")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.set_defaults(func=_cmd_make_family_data)


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="the planner over HTTP for many robots or episodes, batching requests",
        description="Serve a world model's planner over HTTP (JSON, schema at GET /schema): "
        "sessions, goal images, encode and plan; concurrent plan requests are planned in one "
        "batched call. Clients: planning.RemotePlanner, or vjepa2 evaluate --remote URL. "
        "Ctrl-C or SIGTERM stop it after the requests in flight.")
    p.add_argument("--model", default="shipped", help="world-model run folder (default: shipped)")
    p.add_argument("--task", default="reach", help=f"whose preset sets the CEM search: {TASK_HELP}")
    p.add_argument("--preset", default=None, help="a preset name of the task (default: default)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="change one preset field, e.g. cem.samples=128 (repeatable)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--max-batch", type=_positive_int, default=16,
                   help="most plan requests in one batched call")
    p.add_argument("--window-ms", type=float, default=5.0,
                   help="how long a batch waits for more requests (ms)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds before a plan request is answered 504")
    p.set_defaults(func=_cmd_serve)


def _convert_parser(sub) -> None:
    p = sub.add_parser(
        "convert", help="a reference V-JEPA 2 / V-JEPA 2-AC PyTorch checkpoint -> preset folders",
        description="Convert Meta's released .pt files (or the reference's training "
        "checkpoints) into this project's preset folders without PyTorch: encoder, target "
        "encoder, pretraining predictor, or an AC world-model run folder (Planner.from_run). "
        "Missing, unexpected or mis-shaped keys are errors, never skipped (docs/convert.md).")
    p.add_argument("checkpoint", help="the .pt file")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--preset", default=None,
                   help="the released preset the file must match (default: found from the "
                   "shapes): vjepa2-vitl-256, vjepa2-vith-256, vjepa2-vitg-256, vjepa2-vitg-384, "
                   "vjepa2-ac-vitg-256")
    p.add_argument("--encoder-heads", type=_positive_int, default=None,
                   help="attention heads of the encoder, for a file of another size")
    p.add_argument("--predictor-heads", type=_positive_int, default=None,
                   help="attention heads of the predictor, for a file of another size")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="frame size of a converted AC world model (default: the preset's)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the model folders of an existing --out")
    p.set_defaults(func=_cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa2",
        description="V-JEPA 2 world model: collect robot logs, pretrain a video encoder, "
        "fine-tune an action-conditioned predictor, plan and evaluate.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _collect_parser(sub)
    _training_parsers(sub)
    _evaluate_parser(sub)
    _demo_parser(sub)
    _convert_parser(sub)
    _serve_parser(sub)
    _family_parsers(sub)
    return parser


def _exit_now(code: int) -> None:
    """Ends the process without interpreter teardown.

    A write that met a full disk midway can leave a library in a state it cannot leave
    cleanly: HDF5 keeps the half-written weights file open with metadata it cannot flush, and
    its exit handler then prints "Exception ignored" tracebacks or crashes (segmentation fault).
    Completed work is already on disk and the error is reported, so nothing is lost by exiting
    at once.
    """
    sys.unraisablehook = lambda unraisable: None
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code.

    Exit codes: 0 done; 1 the run could not finish (diverged, incomplete, a full disk: one
    line naming the path and the space needed; completed work is kept); 2 bad input (one line);
    130 interrupted. Called with `argv=None` (the program), a full disk ends the process at once
    after its line (`_exit_now`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as error:
        print(f"vjepa2 {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from vjepa2.files import as_disk_full, is_disk_full

        if not is_disk_full(error):
            if isinstance(error, RuntimeError):  # a run that cannot continue
                print(f"vjepa2 {args.command}: error: {error}", file=sys.stderr)
                return 1
            raise
        full = as_disk_full(error, getattr(args, "out", None) or ".")
        print(f"vjepa2 {args.command}: error: {full}", file=sys.stderr)
        if argv is None:  # the program itself (not a caller of main): end here
            _exit_now(1)
        return 1
    except KeyboardInterrupt:
        print(f"vjepa2 {args.command}: interrupted; completed work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
