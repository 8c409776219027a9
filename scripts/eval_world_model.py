"""Fidelity of a fine-tuned world model on held-out logs, and its energy landscape.

1. Rollout error: from one observed frame (and its state), imagine the next `H` frames with the
   logged actions (`H` = 1 and 4) and report the latent L1 to the encoded true frames, against
   two baselines: copy-the-last-frame (predict the context latent unchanged) and mean-action
   (the same model driven by the mean logged action instead of the true one).
2. Energy landscape (as in the V-JEPA 2 paper's figure): for held-out transitions, sweep a grid
   of actions around the true one on two action dims (the others held at their true values),
   compute the energy L1(imagined next latent, true next latent), and count how often the
   minimum lies within one grid cell of the true action. A PNG of one landscape is saved.

Usage:
    python scripts/eval_world_model.py --run runs/ac --logs logs/play_heldout --out eval/
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def load_clips(logs, conventions, clip_length, count, seed):
    from vjepa2.data.rlds import KeyMap, make_clip_dataset

    keymap_fields = dict(conventions.get("keymap") or {})
    for key in ("state", "action", "delta_action_dims"):
        if isinstance(keymap_fields.get(key), list):
            keymap_fields[key] = tuple(keymap_fields[key])
    keymap = KeyMap(**keymap_fields) if keymap_fields else KeyMap()
    dataset = make_clip_dataset(logs, keymap, clip_length=clip_length,
                                frame_stride=conventions["frame_stride"], batch_size=count,
                                shuffle=True, seed=seed, image_size=conventions["image_size"],
                                clip_shift=conventions["frame_stride"], drop_remainder=False)
    batch = next(iter(dataset))
    return {k: batch[k].numpy() for k in ("frames", "states", "actions")}


def l1(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).mean(axis=(-2, -1))  # per sample


def fidelity(model, clips, horizons, chunk=32):
    from keras import ops

    frames, states, actions = clips["frames"], clips["states"], clips["actions"]
    horizon = max(horizons)
    z = np.concatenate([np.asarray(model.encode(frames[i:i + chunk]))
                        for i in range(0, len(frames), chunk)])
    mean_action = actions[:, :horizon].reshape(-1, actions.shape[-1]).mean(0)
    model_err = {h: [] for h in horizons}
    mean_err = {h: [] for h in horizons}
    copy_err = {h: [] for h in horizons}
    for i in range(len(frames)):
        z0, s0 = z[i:i + 1, :1], states[i:i + 1, :1]
        true_a = actions[i:i + 1, :horizon]
        both = np.concatenate([true_a, np.broadcast_to(mean_action, true_a.shape)], 0)
        pred = ops.convert_to_numpy(model.rollout(z0, s0, both.astype("float32")))
        for h in horizons:
            target = z[i, h]
            model_err[h].append(float(l1(pred[0, h - 1], target)))
            mean_err[h].append(float(l1(pred[1, h - 1], target)))
            copy_err[h].append(float(l1(z[i, 0], target)))
    out = {}
    for h in horizons:
        m, c, a = (np.array(v) for v in (model_err[h], copy_err[h], mean_err[h]))
        out[str(h)] = {"model_l1": float(m.mean()), "copy_last_frame_l1": float(c.mean()),
                       "mean_action_l1": float(a.mean()),
                       "model_vs_copy_ratio": float(m.mean() / c.mean()),
                       "model_vs_mean_action_ratio": float(m.mean() / a.mean()),
                       "model_beats_copy_fraction": float(np.mean(m < c)),
                       "model_beats_mean_action_fraction": float(np.mean(m < a))}
    return out, z, mean_action


def energy_landscapes(model, clips, z, dims, grid, radius, transitions):
    from keras import ops

    actions, states = clips["actions"], clips["states"]
    offsets = np.linspace(-radius, radius, grid)
    ox, oy = np.meshgrid(offsets, offsets, indexing="ij")
    center = grid // 2
    hits, landscapes = [], []
    for i in range(min(transitions, len(actions))):
        cand = np.repeat(actions[i:i + 1, :1], grid * grid, 0).astype("float32")
        cand[:, 0, dims[0]] += ox.ravel()
        cand[:, 0, dims[1]] += oy.ravel()
        pred = ops.convert_to_numpy(model.rollout(z[i:i + 1, :1], states[i:i + 1, :1], cand))
        energy = l1(pred[:, 0], z[i, 1]).reshape(grid, grid)
        best = np.unravel_index(np.argmin(energy), energy.shape)
        hits.append(max(abs(best[0] - center), abs(best[1] - center)) <= 1)
        landscapes.append(energy)
    chance = min(9, grid * grid) / float(grid * grid)
    return {"transitions": len(hits), "grid": grid, "radius": radius, "dims": list(dims),
            "cell": float(offsets[1] - offsets[0]),
            "min_within_one_cell_fraction": float(np.mean(hits)),
            "chance_fraction": chance}, landscapes, offsets


def save_landscape_png(path, energy, offsets, dims, true_action):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4))
    extent = [true_action[dims[1]] + offsets[0], true_action[dims[1]] + offsets[-1],
              true_action[dims[0]] + offsets[0], true_action[dims[0]] + offsets[-1]]
    image = ax.imshow(energy, origin="lower", extent=extent, aspect="auto", cmap="viridis")
    ax.plot(true_action[dims[1]], true_action[dims[0]], "r*", ms=14, label="true action")
    best = np.unravel_index(np.argmin(energy), energy.shape)
    ax.plot(true_action[dims[1]] + offsets[best[1]], true_action[dims[0]] + offsets[best[0]],
            "wx", ms=10, mew=2, label="energy minimum")
    ax.set_xlabel(f"action dim {dims[1]}")
    ax.set_ylabel(f"action dim {dims[0]}")
    ax.set_title("energy L1(imagined, true next latent)")
    ax.legend(loc="upper right", fontsize=7)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="finetune-ac run folder")
    parser.add_argument("--logs", required=True, help="held-out RLDS logs")
    parser.add_argument("--out", default="eval_world_model")
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--transitions", type=int, default=64, help="energy landscapes")
    parser.add_argument("--grid", type=int, default=9)
    parser.add_argument("--radius", type=float, default=1.0,
                        help="grid half-width in action units")
    parser.add_argument("--dims", type=int, nargs=2, default=[0, 1])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from vjepa2.models.world_model import load_world_model

    started = time.time()
    model = load_world_model(args.run)
    conventions = model.conventions
    clips = load_clips(args.logs, conventions, max(args.horizons) + 1, args.clips, args.seed)
    rollout, z, mean_action = fidelity(model, clips, args.horizons)
    landscape, energies, offsets = energy_landscapes(model, clips, z, args.dims, args.grid,
                                                     args.radius, args.transitions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_landscape_png(out / "energy_landscape.png", energies[0], offsets, args.dims,
                       clips["actions"][0, 0])
    result = {"run": args.run, "logs": args.logs, "clips": int(len(clips["frames"])),
              "frame_stride": conventions["frame_stride"], "image_size": conventions["image_size"],
              "rollout": rollout, "energy_landscape": landscape,
              "mean_action": mean_action.tolist(), "seconds": time.time() - started}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"world model {args.run} on {args.logs}: {result['clips']} clips, stride "
          f"{conventions['frame_stride']}, {conventions['image_size']} px")
    print(f"{'H':>2} {'model L1':>9} {'copy-last L1':>13} {'mean-action L1':>15} "
          f"{'model/copy':>11} {'beats copy':>11}")
    for h, r in rollout.items():
        print(f"{h:>2} {r['model_l1']:>9.4f} {r['copy_last_frame_l1']:>13.4f} "
              f"{r['mean_action_l1']:>15.4f} {r['model_vs_copy_ratio']:>11.3f} "
              f"{r['model_beats_copy_fraction']:>10.0%}")
    print(f"energy minimum within one grid cell of the true action: "
          f"{landscape['min_within_one_cell_fraction']:.0%} of {landscape['transitions']} "
          f"transitions (chance {landscape['chance_fraction']:.0%}; {args.grid}x{args.grid} "
          f"grid, cell {landscape['cell']:.3f} on action dims {args.dims})")
    print(f"wrote {out / 'results.json'} and {out / 'energy_landscape.png'}")
    return result


if __name__ == "__main__":
    main()
