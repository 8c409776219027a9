"""Can MC-JEPA's flow head learn flow on its own? Train it alone and score it against zero flow.

A frozen, randomly initialised `family-tiny` encoder supplies the tokens; only the `FlowHead`
trains, on generated frame pairs with known flow (`vjepa2.data.motion.synthesize_motion`,
normalised as in training), with one of three losses:

- `photometric`: the unsupervised photometric term of `flow_losses` (occlusion-masked);
- `photometric-unmasked`: the same Charbonnier reconstruction on every pixel;
- `supervised`: the mean end-point error to the true flow (a capacity check, not MC-JEPA).

Every `--log-every` steps it prints the end-point error on held-out pairs (another seed), over
all pixels and over the moving ones, beside zero flow's. `--pairs 1` trains and scores on one
pair (can the head fit a single pair at all). The summary is written as JSON to `--out`.

    python scripts/flow_head_check.py --loss photometric --steps 300 --out check.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

LOSSES = ("photometric", "photometric-unmasked", "supervised")


def make_pairs(seed: int, count: int):
    """(first, second, flow) arrays of `count` generated 64 px pairs, frames normalised."""
    from vjepa2.data.motion import synthesize_motion
    from vjepa2.data.video import IMAGENET_MEAN, IMAGENET_STD

    firsts, seconds, flows = [], [], []
    for index in range(count):
        video, flow, _ = synthesize_motion(seed, index, frames=2, size=64)
        video = ((video / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype("float32")
        firsts.append(video[0])
        seconds.append(video[1])
        flows.append(flow[0])
    return np.stack(firsts), np.stack(seconds), np.stack(flows)


def endpoint_errors(predicted, true) -> dict:
    """Mean end-point error over all and over moving pixels, with zero flow's."""
    error = np.linalg.norm(predicted - true, axis=-1)
    zero = np.linalg.norm(true, axis=-1)
    moving = zero > 0
    return {"epe_all": float(error.mean()), "zero_flow_epe_all": float(zero.mean()),
            "epe_moving": float(error[moving].mean()),
            "zero_flow_epe_moving": float(zero[moving].mean()),
            "mean_predicted_magnitude": float(np.linalg.norm(predicted, axis=-1).mean())}


def make_step(encoder, head, loss_name: str, lr: float):
    """A compiled training step of the head alone: (first, second, flow) -> loss."""
    import keras
    import tensorflow as tf
    from keras import ops

    from vjepa2.models.flow_head import warp
    from vjepa2.train.mc_jepa import charbonnier, flow_losses

    optimizer = keras.optimizers.Adam(lr)

    @tf.function
    def step(first, second, flow):
        pairs = ops.concatenate([ops.stack([first, second], 1), ops.stack([second, first], 1)], 0)
        tokens = ops.stop_gradient(encoder(pairs))
        count = tf.shape(first)[0]
        with tf.GradientTape() as tape:
            flows = head(ops.concatenate([first, second], 0), ops.concatenate([second, first], 0),
                         tokens)
            forward, backward = flows[:count], flows[count:]
            if loss_name == "photometric":
                loss = flow_losses(first, second, forward, backward)["photometric"]
            elif loss_name == "photometric-unmasked":
                loss = (ops.mean(charbonnier(warp(second, forward) - first)) +
                        ops.mean(charbonnier(warp(first, backward) - second))) / 2.0
            else:
                loss = ops.mean(ops.norm(forward - flow, axis=-1))
        grads = tape.gradient(loss, head.trainable_weights)
        optimizer.apply_gradients(zip(grads, head.trainable_weights))
        return loss

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", choices=LOSSES, default="photometric")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=512, help="training pairs (seed 0)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--out", default=None, help="JSON summary")
    args = parser.parse_args(argv)

    import keras
    from keras import ops

    from vjepa2.models import VideoEncoder
    from vjepa2.models.flow_head import FlowHead
    from vjepa2.presets import get_preset

    keras.utils.set_random_seed(0)
    encoder = VideoEncoder(**get_preset("family-tiny")["encoder"])
    head = FlowHead(encoder.embed_dim, encoder.patch_size)
    train = make_pairs(0, args.pairs)
    test = train if args.pairs == 1 else make_pairs(2, 64)
    step = make_step(encoder, head, args.loss, args.lr)

    def evaluate():
        tokens = encoder(ops.stack([test[0], test[1]], 1))
        return endpoint_errors(np.asarray(head(test[0], test[1], tokens)), test[2])

    rng, started, log = np.random.default_rng(0), time.time(), [{"step": 0, **evaluate()}]
    print(json.dumps(log[-1]), flush=True)
    batch = min(args.batch_size, args.pairs)
    for index in range(1, args.steps + 1):
        chosen = rng.choice(args.pairs, batch, replace=False)
        loss = float(step(*(x[chosen] for x in train)))
        if index % args.log_every == 0 or index == args.steps:
            log.append({"step": index, "loss": loss, **evaluate(),
                        "seconds": time.time() - started})
            print(json.dumps(log[-1]), flush=True)
    if args.out:
        from vjepa2.files import write_json

        write_json(args.out, {"command": "python scripts/flow_head_check.py " + " ".join(
            argv if argv is not None else sys.argv[1:]), "settings": vars(args), "log": log})
    return 0


if __name__ == "__main__":
    sys.exit(main())
