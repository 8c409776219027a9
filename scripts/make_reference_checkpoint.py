"""A random-init checkpoint in the layout of Meta's released V-JEPA 2 files, built by the
reference code (github.com/facebookresearch/vjepa2 at `REF_COMMIT`), for end-to-end checks of
`vjepa2.convert` at real sizes and for planning-speed measurements without the released weights.

Writes `{"encoder": ..., "predictor": ...}` under the `module.backbone.` prefix, as
`src/hub/backbones.py` reads them. `--encoder` names a reference constructor at its released
size (`vit_large`, `vit_huge`, `vit_giant_xformers`) or gives `WIDTH,DEPTH,HEADS` for a small one;
`--predictor pretrain` is the released 12 x 384 predictor with 10 mask tokens, `--predictor ac`
the V-JEPA 2-AC predictor (`--ac-size WIDTH,DEPTH,HEADS`, released 1024,24,16).
`--time-batch B` also times the reference AC predictor's forward on one frame step for B
candidates (one CEM iteration of the reference planner at horizon 1), on this CPU.

Runs with PyTorch in its own environment (see docs/convert.md):

    /work/.torchref/bin/python scripts/make_reference_checkpoint.py --git-dir REPO.git \\
        --encoder vit_large --predictor pretrain --out /tmp/vitl_random.pt
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_reference_fixture import REF_COMMIT, export_reference, stub_timm  # noqa: E402


def sizes(text):
    width, depth, heads = (int(v) for v in text.split(","))
    return width, depth, heads


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--git-dir", help="git directory of facebookresearch/vjepa2")
    source.add_argument("--ref", help="an exported tree of that repository at REF_COMMIT")
    parser.add_argument("--encoder", default="vit_large")
    parser.add_argument("--predictor", choices=("pretrain", "ac"), default="pretrain")
    parser.add_argument("--ac-size", type=sizes, default=(1024, 24, 16))
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--time-batch", type=int, default=0)
    parser.add_argument("--probe", help="also write encoder (and AC predictor) outputs on a "
                        "small fixed input to this .npz, to compare with the converted model")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    tmp = None
    if args.git_dir:
        tmp = tempfile.TemporaryDirectory(prefix="vjepa2ref.")
        ref = export_reference(args.git_dir, tmp.name)
    else:
        ref = args.ref
    sys.path.insert(0, ref)
    stub_timm()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    from src.models import ac_predictor as ac_mod
    from src.models import predictor as predictor_mod
    from src.models import vision_transformer as vit

    torch.manual_seed(0)
    common = dict(img_size=(args.img_size, args.img_size), patch_size=16, num_frames=64,
                  tubelet_size=2, use_rope=True, use_sdpa=True, uniform_power=False)
    if "," in args.encoder:
        width, depth, heads = sizes(args.encoder)
        encoder = vit.VisionTransformer(embed_dim=width, depth=depth, num_heads=heads,
                                        mlp_ratio=4.0, qkv_bias=True,
                                        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                        **common)
    else:
        encoder = vit.__dict__[args.encoder](**common)
    if args.predictor == "pretrain":
        predictor = predictor_mod.vit_predictor(
            img_size=common["img_size"], patch_size=16, use_mask_tokens=True,
            embed_dim=encoder.embed_dim, predictor_embed_dim=384, num_frames=64, tubelet_size=2,
            depth=12, num_heads=12, num_mask_tokens=10, use_rope=True, uniform_power=False,
            use_sdpa=True)
    else:
        width, depth, heads = args.ac_size
        predictor = ac_mod.vit_ac_predictor(
            img_size=common["img_size"], patch_size=16, num_frames=64, tubelet_size=2,
            embed_dim=encoder.embed_dim, predictor_embed_dim=width, depth=depth,
            num_heads=heads)
    encoder.eval()
    predictor.eval()
    wrap = "module.backbone."
    torch.save({"encoder": {wrap + k: v for k, v in encoder.state_dict().items()},
                "predictor": {wrap + k: v for k, v in predictor.state_dict().items()}}, args.out)
    report = {"out": args.out, "bytes": os.path.getsize(args.out), "commit": REF_COMMIT,
              "encoder_params": sum(p.numel() for p in encoder.parameters()),
              "predictor_params": sum(p.numel() for p in predictor.parameters())}
    if args.probe:
        import numpy as np

        gen = torch.Generator().manual_seed(1)
        video = torch.randn(1, 3, 2, 64, 96, generator=gen)  # (B, C, T, H, W): 4 x 6 patches
        probe = {"video": video.permute(0, 2, 3, 4, 1).numpy()}
        with torch.no_grad():
            probe["encoder_tokens"] = encoder(video).numpy()
            if args.predictor == "ac":
                # The AC predictor reads its configured frame grid (img_size / 16 square).
                grid = args.img_size // 16
                z = torch.nn.functional.layer_norm(
                    torch.randn(1, 2 * grid * grid, encoder.embed_dim, generator=gen),
                    (encoder.embed_dim,))
                actions = 0.05 * torch.randn(1, 2, 7, generator=gen)
                states = torch.randn(1, 2, 7, generator=gen)
                probe.update(z=z.numpy().reshape(1, 2, grid * grid, -1), actions=actions.numpy(),
                             states=states.numpy(),
                             ac_out=predictor(z, actions, states).numpy().reshape(
                                 1, 2, grid * grid, -1))
        np.savez(args.probe, **probe)
    if args.time_batch and args.predictor == "ac":
        grid = args.img_size // 16
        z = torch.randn(args.time_batch, grid * grid, encoder.embed_dim)
        actions = torch.zeros(args.time_batch, 1, 7)
        states = torch.zeros(args.time_batch, 1, 7)
        times = []
        with torch.no_grad():
            for _ in range(3):
                start = time.perf_counter()
                predictor(z, actions, states)
                times.append(time.perf_counter() - start)
        report["reference_predictor_seconds"] = times
        report["time_batch"] = args.time_batch
        report["torch_threads"] = torch.get_num_threads()
    print(json.dumps(report))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
