"""The command line of the grasp-visibility tools: `make-probe-data` and `probe-states`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(sub) -> None:
    """Adds `make-probe-data` and `probe-states` to the `vjepa2` subcommands."""
    from vjepa2.app.flags import add_config_flags
    from vjepa2.train.state_probe import StateProbeConfig

    p = sub.add_parser(
        "make-probe-data", help="render labelled robot frames in several views for state probes",
        description="Render play episodes of the pick-and-place scene in the scene, close and "
        "wrist views at once and label each frame with simulator truth (finger gap, object in "
        "hand, object and gripper xyz). Writes one .npz.")
    p.add_argument("--variation", required=True, choices=["train", "wide", "heldout"])
    p.add_argument("--episodes", type=int, required=True, help="play episodes")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    p.add_argument("--image-size", type=int, default=128, help="frame side in px")
    p.add_argument("--views", nargs="+", default=["scene", "close", "wrist"],
                   help="camera views to render")
    p.add_argument("--frame-stride", type=int, default=2, help="keep every k-th step")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(func=_cmd_make_probe_data)

    p = sub.add_parser(
        "probe-states", help="can the frozen latents tell the grasp? attentive + ridge probes",
        description="Probe a frozen encoder's frame latents (the planner's) for finger "
        "open/closed, object in hand, object xyz and gripper xyz on held-out scenes, with an "
        "attentive probe and a ridge baseline, beside a random-init encoder. Writes "
        "results.json into --out.")
    add_config_flags(p, StateProbeConfig)
    p.set_defaults(func=_cmd_probe_states)


def _cmd_make_probe_data(args: argparse.Namespace) -> int:
    from envs.probe_data import make_probe_data

    meta = make_probe_data(args.out, args.variation, args.episodes, args.seed, args.image_size,
                           tuple(args.views), args.frame_stride, args.workers)
    print(f"{meta['frames']} frames of {', '.join(meta['views'])} written to {args.out}")
    return 0


def _cmd_probe_states(args: argparse.Namespace) -> int:
    from vjepa2.app.flags import config_from_args
    from vjepa2.train.state_probe import StateProbeConfig, state_probe

    results = state_probe(config_from_args(StateProbeConfig, args))
    path = Path(args.out) / "results.json"
    print(f"results written to {path} ({results['heldout_frames']} held-out frames, "
          f"{json.dumps(results['frame_shape'])} px)")
    return 0
