"""The `vjepa2` command: parse arguments, build a config, call the module that does the work.

No algorithms live here. Heavy imports (TensorFlow, MuJoCo) happen inside each command so that
`vjepa2 --help` is instant.
"""
from __future__ import annotations

import argparse
import sys


from vjepa2.errors import UsageError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {value}")
    return value


def _cmd_collect(args: argparse.Namespace) -> int:
    from envs.collect import collect_cli

    return collect_cli(args)


def _cmd_make_videos(args: argparse.Namespace) -> int:
    from vjepa2.data.synthetic import generate_videos

    paths = generate_videos(args.out, args.count, frames=args.frames, size=args.size,
                            fps=args.fps, seed=args.seed)
    print(f"wrote {len(paths)} videos to {args.out}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from vjepa2.train.pretrain import pretrain_cli

    return pretrain_cli(args)


def _cmd_finetune_ac(args: argparse.Namespace) -> int:
    from vjepa2.train.finetune_ac import finetune_ac_cli

    return finetune_ac_cli(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from planning.evaluation import evaluate_cli

    return evaluate_cli(args)


def _cmd_calibrate_stop(args: argparse.Namespace) -> int:
    from planning.calibrate import calibrate_stop_energy, write_stop_energy
    from planning.evaluation import load_model

    world_model = load_model(args.model)
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from vjepa2.demo import demo_cli

    return demo_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa2",
        description="V-JEPA 2 world model: collect robot logs, pretrain a video encoder, "
        "fine-tune an action-conditioned predictor, plan and evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "collect",
        help="collect robot logs (RLDS) with scripted policies in the MuJoCo tasks",
        description="Run scripted policies in the MuJoCo tasks with parallel workers and write "
        "RLDS episodes (TFDS on-disk format). Re-running with the same --out continues an "
        "interrupted collection up to --episodes without duplicates.",
    )
    p.add_argument("--task", required=True,
                   help="task name (reach, push, grasp, reach_with_object, pick_and_place) or "
                   "'play' for the exploratory play policy")
    p.add_argument("--variation", default="train", choices=["train", "wide", "heldout"],
                   help="scene variation set (default: train)")
    p.add_argument("--episodes", type=_positive_int, required=True, help="episodes to collect")
    p.add_argument("--workers", type=_positive_int, default=1, help="parallel worker processes")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--videos", action="store_true",
                   help="also write each episode's camera frames as an mp4 (readable by pretrain)")
    p.add_argument("--image-size", type=_positive_int, default=128, help="camera frame size in px")
    p.add_argument("--noise", type=float, default=None,
                   help="action noise of the scripted expert (default: the policy's own)")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode i uses seed + i")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser(
        "make-videos",
        help="generate mp4 videos of procedurally moving objects (built-in test data)",
        description="Write procedurally generated videos (textured backgrounds, moving, "
        "bouncing, spinning shapes with occlusions) that pretrain can read. Different seeds "
        "give disjoint splits.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=_positive_int, default=200, help="number of videos")
    p.add_argument("--frames", type=_positive_int, default=48, help="frames per video")
    p.add_argument("--size", type=_positive_int, default=128, help="frame size in px")
    p.add_argument("--fps", type=_positive_int, default=8, help="frame rate")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.set_defaults(func=_cmd_make_videos)

    p = sub.add_parser(
        "pretrain",
        help="self-supervised V-JEPA 2 pretraining of a video encoder on video files",
        description="Pretrain a video encoder with the V-JEPA 2 objective (predict the EMA "
        "teacher's latent tokens of masked space-time blocks from the visible ones). Writes "
        "checkpoints, metrics.jsonl and TensorBoard logs into --out.",
    )
    p.add_argument("--preset", default="tiny",
                   help="model preset name (tiny, small, large, huge, giant) or a preset folder")
    p.add_argument("--videos", required=True,
                   help="folder of .mp4/.webm/.mkv/.avi files, or a CSV of path[,label]")
    p.add_argument("--steps", type=_positive_int, required=True, help="optimizer steps")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, logs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly from its last checkpoint")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="clips per step")
    p.add_argument("--frames", type=_positive_int, default=8, help="frames per clip")
    p.add_argument("--resolution", type=_positive_int, default=128, help="frame size in px")
    p.add_argument("--fps", type=float, default=4.0, help="clip sampling rate (frames/s)")
    p.add_argument("--lr", type=float, default=5.25e-4, help="peak learning rate")
    p.add_argument("--start-lr", type=float, default=1e-4, help="learning rate at step 0")
    p.add_argument("--final-lr", type=float, default=1e-6, help="learning rate after decay")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="linear warmup steps (default: 10%% of --steps)")
    p.add_argument("--decay-steps", type=int, default=None,
                   help="final linear decay steps (default: 20%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=0.04, help="AdamW weight decay")
    p.add_argument("--ema", type=float, nargs=2, default=(0.99925, 0.99925),
                   metavar=("START", "END"),
                   help="EMA teacher momentum, linearly scheduled from START to END")
    p.add_argument("--clip-grad", type=float, default=None, help="global gradient-norm clip")
    p.add_argument("--checkpoint-every", type=_positive_int, default=100,
                   help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="parallel video decoders (default: CPU count)")
    p.add_argument("--distribute", choices=["none", "mirrored", "multi_worker", "data_parallel"],
                   default="none",
                   help="multi-device training: tf.distribute.MirroredStrategy (TensorFlow, one "
                   "host), MultiWorkerMirroredStrategy (TensorFlow, hosts from TF_CONFIG) or "
                   "keras.distribution.DataParallel (JAX, all devices of all processes)")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto",
                   help="auto: mixed_bfloat16 where a GPU is present, else float32")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser(
        "finetune-ac",
        help="fine-tune an action-conditioned predictor (V-JEPA 2-AC) on robot logs",
        description="Train the action-conditioned predictor on RLDS robot logs with the "
        "pretrained encoder frozen (teacher-forcing L1 + 2-step rollout L1). Writes checkpoints, "
        "metrics.jsonl and the world model (encoder + predictor + conventions) into --out.",
    )
    p.add_argument("--encoder", required=True,
                   help="a pretraining run folder (its encoder/ is used) or an encoder preset "
                   "folder")
    p.add_argument("--logs", required=True, help="RLDS dataset folder (TFDS on-disk format)")
    p.add_argument("--steps", type=_positive_int, required=True, help="optimizer steps")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly from its last checkpoint")
    p.add_argument("--preset", default="tiny",
                   help="action-conditioned predictor preset (tiny, small, large)")
    p.add_argument("--keymap", default="default",
                   help="RLDS key mapping: 'default' (this project's logs), 'droid', or a JSON "
                   "file with image/state/action keys")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="clips per step")
    p.add_argument("--clip-length", type=_positive_int, default=4,
                   help="frames per training clip")
    p.add_argument("--frame-stride", type=_positive_int, default=1,
                   help="environment steps between frames (actions summed across them)")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="resize frames to this size (default: as logged)")
    p.add_argument("--lr", type=float, default=4.25e-4, help="peak learning rate")
    p.add_argument("--start-lr", type=float, default=7.5e-5, help="learning rate at step 0")
    p.add_argument("--final-lr", type=float, default=0.0, help="learning rate after decay")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="linear warmup steps (default: 10%% of --steps)")
    p.add_argument("--decay-steps", type=int, default=None,
                   help="final linear decay steps (default: 20%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=0.04, help="AdamW weight decay")
    p.add_argument("--checkpoint-every", type=_positive_int, default=100,
                   help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto",
                   help="auto: mixed_bfloat16 where a GPU is present, else float32")
    p.add_argument("--augment", action="store_true",
                   help="per-clip colour and viewpoint augmentation (vjepa2.data.augment), for "
                   "logs from few scene settings")
    p.set_defaults(func=_cmd_finetune_ac)

    p = sub.add_parser(
        "evaluate",
        help="zero-shot goal-image evaluation of the planner (or a baseline) in a MuJoCo task",
        description="Run episodes of a task with the CEM planner in the loop (MPC), reading "
        "success from the simulator only after each episode. Writes results.json, per-episode "
        "records, videos and a summary plot into --out.",
    )
    p.add_argument("--model", default=None,
                   help="world-model run folder (from finetune-ac), or 'shipped' (the default "
                   "for the planner: the small model installed with the package); not used by "
                   "the baselines")
    p.add_argument("--task", required=True,
                   help="reach, push, grasp, reach_with_object or pick_and_place")
    p.add_argument("--variation", default="heldout", choices=["train", "wide", "heldout"],
                   help="scene variation set (default: heldout)")
    p.add_argument("--episodes", type=_positive_int, required=True, help="episodes to run")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--policy", default="planner", choices=["planner", "random", "expert"],
                   help="planner (CEM + world model) or a baseline in the same harness")
    p.add_argument("--planner", default="default", choices=["default", "reference", "notebook"],
                   help="CEM budget preset")
    p.add_argument("--samples", type=_positive_int, default=None, help="override CEM samples")
    p.add_argument("--iterations", type=_positive_int, default=None,
                   help="override CEM iterations")
    p.add_argument("--horizon", type=_positive_int, default=None, help="override CEM horizon")
    p.add_argument("--l1-radius", type=float, default=None,
                   help="override the CEM's per-action L1 ball on the gripper's xyz move, in "
                   "metres (the reference: 0.075)")
    p.add_argument("--xyz-clip", type=float, default=None,
                   help="override the CEM's per-axis limit on each planned xyz move, in metres "
                   "(the reference's notebook: 0.05)")
    p.add_argument("--goals", default=None,
                   help="comma-separated goal images to pursue in order, ending with goal "
                   "(default: all of the task's; grasp: pregrasp,goal; pick_and_place: "
                   "pregrasp,grasp,near_goal,goal)")
    p.add_argument("--early-advance", action="store_true",
                   help="let the stop rule end an intermediate sub-goal before its budget "
                   "(default: fixed sub-goal budgets, as the reference)")
    p.add_argument("--gripper-latch", default=None,
                   help="execute the gripper as open/close, switching only when the planned "
                   "value is at least this far from 0 (e.g. 0.6), or off (the planned value "
                   "as is); default: 0.6 starting closed for reach_with_object (which starts "
                   "holding the object), off for the other tasks")
    p.add_argument("--gripper-start", choices=("open", "closed"), default=None,
                   help="with --gripper-latch: the latched gripper command at the start of "
                   "each episode (default: the first plan decides)")
    p.add_argument("--gripper-switch", choices=("any", "subgoal_start"), default=None,
                   help="with --gripper-latch: which plans may switch it: any (default) or "
                   "subgoal_start (only the first plan of each sub-goal; needs --gripper-start)")
    p.add_argument("--gripper-hold", action="store_true", default=None,
                   help="with --gripper-latch: hold the arm still on a step where the gripper "
                   "switches (the fingers close or open in place)")
    p.add_argument("--gripper-search", choices=("gaussian", "paired"), default=None,
                   help="how CEM searches the gripper dim: gaussian (default, the reference) or "
                   "paired (open vs close, each candidate imagined with both; twice the "
                   "rollouts)")
    p.add_argument("--max-steps", type=_positive_int, default=None,
                   help="actions per episode (default: the task's budget)")
    p.add_argument("--videos", type=int, default=4,
                   help="episodes to save as mp4 (observation beside goal, energy curve)")
    p.add_argument("--seed", type=int, default=1000, help="base seed; episode i uses seed + i")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="camera frame size in px (default 128; the world model resizes frames "
                   "to its own size)")
    p.add_argument("--stop-energy", type=float, default=None,
                   help="the planner's stop rule: end the episode once the observed frame's "
                   "latent distance to the goal is at most this (default: the model's "
                   "calibrated value in conventions.json, if any; 0 disables)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "calibrate-stop",
        help="calibrate the planner's stop rule (latent distance to the goal) on robot logs",
        description="Measure, on frame pairs of the training logs, the largest latent distance "
        "at which the end effectors of the pair are within --radius metres with the given "
        "precision, and store it as stop_energy in the run's conventions.json (vjepa2 evaluate "
        "uses it unless --stop-energy is given).",
    )
    p.add_argument("--model", required=True, help="world-model run folder (from finetune-ac)")
    p.add_argument("--logs", required=True, help="RLDS logs (e.g. the training logs)")
    p.add_argument("--radius", type=float, default=0.05, help="metres that count as arrived")
    p.add_argument("--precision", type=float, default=0.9,
                   help="required fraction of truly close pairs below the threshold")
    p.add_argument("--episodes", type=_positive_int, default=40, help="episodes to read")
    p.set_defaults(func=_cmd_calibrate_stop)

    p = sub.add_parser(
        "demo",
        help="the whole recipe at small scale: collect, pretrain, fine-tune, plan (~20 min CPU)",
        description="Collect play logs, pretrain the encoder on their videos, fine-tune the "
        "action-conditioned predictor, and plan from goal images in held-out scenes beside the "
        "random baseline; prints a success table and writes videos. Re-run with the same --out "
        "to continue an interrupted demo.",
    )
    p.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    p.add_argument("--episodes", type=_positive_int, default=100, help="play episodes to log")
    p.add_argument("--pretrain-steps", type=_positive_int, default=400,
                   help="encoder pretraining steps")
    p.add_argument("--finetune-steps", type=_positive_int, default=500,
                   help="action-conditioned predictor steps")
    p.add_argument("--eval-episodes", type=_positive_int, default=4,
                   help="planner (and random) episodes per task and scene set")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as error:
        print(f"vjepa2 {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vjepa2 {args.command}: interrupted; completed work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
