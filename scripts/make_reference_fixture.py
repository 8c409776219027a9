"""Writes the reference-numerics fixture of `tests/test_convert.py` with Meta's V-JEPA 2 code.

Builds small random models with the reference implementation itself (github.com/
facebookresearch/vjepa2 at `REF_COMMIT`), saves their state dicts with `torch.save` in the key
layouts of the reference's files, and records their outputs on fixed inputs:

- `tests/fixtures/vjepa2_ref/pretrain.pt`: a training checkpoint of the reference's pretraining
  (`app/vjepa/train.py` `save_checkpoint`: `encoder`, `predictor`, `target_encoder` under
  `module.backbone.` as its DDP + MultiSeqWrapper modules name them, plus `epoch`, `loss`, ...);
- `tests/fixtures/vjepa2_ref/ac.pt`: an AC checkpoint in the released `vjepa2-ac-vitg.pt`
  layout (`encoder`, `predictor` under `module.`);
- `tests/fixtures/vjepa2_ref/outputs.npz`: inputs and outputs (encoder tokens on a full clip and
  on a masked subset, target and context encoders; pretraining-predictor outputs for given
  context/target ids and a mask index; AC-predictor outputs teacher-forced, and an
  autoregressive rollout as the reference trains and plans: predictions layer-normed and fed
  back, states propagated);
- `tests/fixtures/vjepa2_ref/reference.json`: the commit, the model configs and the reference's
  parameter counts of the released sizes (ViT-L/H/g encoders, the 12 x 384 predictor with 10 mask
  tokens, the V-JEPA 2-AC predictor), built on PyTorch's meta device (no memory).

Every parameter of the small models is perturbed with N(0, 0.02) noise after the reference's
own init, so that biases, LayerNorm scales and mask tokens (zero or one at init) are random too
and a mapping error cannot hide behind an identity.

Runs with PyTorch in its own environment, never the project's (see docs/convert.md):

    python3 -m venv /work/.torchref && /work/.torchref/bin/pip install torch==2.13.0 numpy einops
    /work/.torchref/bin/python scripts/make_reference_fixture.py \\
        --git-dir /path/to/facebookresearch/vjepa2/.git

The reference tree is exported from `--git-dir` at `REF_COMMIT` into a temporary folder
(`--ref DIR` uses an exported tree instead and trusts that it is that commit). The reference
imports `timm` only for `drop_path` (unused at drop rate 0): a stub stands in for it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REF_COMMIT = "c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb"
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "vjepa2_ref"

# Small configs: head dims 20 (encoder: 18 rotated + 2 unrotated), 12 (predictor: all
# rotated) and 16 (AC: 12 + 4), a 3-frame-token-step grid 4 x 4 of 8 px patches, an MLP ratio
# that is not 4.
ENCODER = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=40, depth=2,
               num_heads=2, mlp_ratio=3.0)
PREDICTOR = dict(predictor_embed_dim=24, depth=2, num_heads=2, num_mask_tokens=3)
AC = dict(num_frames=8, predictor_embed_dim=32, depth=2, num_heads=2, action_embed_dim=7)
MASK_INDEX = 4  # the reference takes it modulo num_mask_tokens: token 1


def stub_timm():
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")

    def drop_path(x, drop_prob=0.0, training=False):
        if drop_prob:
            raise RuntimeError("the fixture uses drop rate 0")
        return x

    layers.drop_path = drop_path
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})


def export_reference(git_dir: str, into: str) -> str:
    archive = subprocess.run(["git", "--git-dir", git_dir, "archive", REF_COMMIT],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def perturb(module, generator):
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator))


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def prefixed(state_dict, prefix):
    return {prefix + key: value.clone() for key, value in state_dict.items()}


def build_small(vit, predictor_mod, ac_mod, generator):
    from functools import partial

    norm = partial(torch.nn.LayerNorm, eps=1e-6)
    common = dict(use_rope=True, use_sdpa=True, qkv_bias=True, norm_layer=norm)
    enc = dict(ENCODER)
    size = enc.pop("img_size")
    encoder = vit.VisionTransformer(img_size=(size, size), **enc, **common)
    target = vit.VisionTransformer(img_size=(size, size), **enc, **common)
    predictor = predictor_mod.VisionTransformerPredictor(
        img_size=(size, size), patch_size=ENCODER["patch_size"], num_frames=ENCODER["num_frames"],
        tubelet_size=ENCODER["tubelet_size"], embed_dim=ENCODER["embed_dim"], mlp_ratio=4.0,
        use_mask_tokens=True, zero_init_mask_tokens=True, **PREDICTOR, **common)
    ac = ac_mod.VisionTransformerPredictorAC(
        img_size=(size, size), patch_size=ENCODER["patch_size"],
        tubelet_size=ENCODER["tubelet_size"], embed_dim=ENCODER["embed_dim"], mlp_ratio=4.0,
        is_frame_causal=True, **AC, **common)
    for module in (encoder, target, predictor, ac):
        perturb(module, generator)
        module.eval()
    return encoder, target, predictor, ac


def reference_counts(vit, predictor_mod, ac_mod) -> dict:
    """Parameter counts of the released sizes, built as `src/hub/backbones.py` builds them."""
    counts = {}
    encoders = {"vit_large": vit.vit_large, "vit_huge": vit.vit_huge,
                "vit_giant_xformers": vit.vit_giant_xformers}
    linspace = torch.linspace
    # The constructors read drop-path rates with `.item()`, which meta tensors refuse.
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        with torch.device("meta"):
            counts = _counts(vit, predictor_mod, ac_mod, encoders)
    finally:
        torch.linspace = linspace
    return counts


def _counts(vit, predictor_mod, ac_mod, encoders):
    counts = {}
    if True:
        for name, make in encoders.items():
            encoder = make(img_size=(256, 256), num_frames=64, tubelet_size=2, use_rope=True,
                           use_sdpa=True, uniform_power=False)
            pos = 0 if encoder.pos_embed is None else encoder.pos_embed.numel()
            counts[name] = {"encoder": count(encoder), "encoder_pos_embed": pos}
            predictor = predictor_mod.vit_predictor(
                img_size=(256, 256), patch_size=16, use_mask_tokens=True,
                embed_dim=encoder.embed_dim, predictor_embed_dim=384, num_frames=64,
                tubelet_size=2, depth=12, num_heads=12, num_mask_tokens=10, use_rope=True,
                uniform_power=False, use_sdpa=True)
            counts[name]["predictor"] = count(predictor)
        ac = ac_mod.vit_ac_predictor(img_size=(256, 256), patch_size=16, num_frames=64,
                                     tubelet_size=2, embed_dim=1408)
        counts["vit_ac_giant"] = {"ac_predictor": count(ac),
                                  "ac_extrinsics_encoder": count(ac.extrinsics_encoder)}
    return counts


def ac_rollout(ac, z0, actions, states):
    """The reference's autoregressive rollout (`app/vjepa_droid/train.py`, the notebook's
    `step_predictor`): each prediction layer-normed and appended, the next step run on the
    whole sequence."""
    tokens = z0.shape[1]
    z = z0
    out = []
    for n in range(actions.shape[1]):
        step = ac(z, actions[:, :n + 1], states[:, :n + 1])[:, -tokens:]
        step = F.layer_norm(step, (step.size(-1),))
        out.append(step)
        z = torch.cat([z, step], dim=1)
    return torch.stack(out, dim=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--git-dir", help="git directory of facebookresearch/vjepa2")
    source.add_argument("--ref", help="an exported tree of that repository at REF_COMMIT")
    parser.add_argument("--out", default=str(OUT))
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

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    encoder, target, predictor, ac = build_small(vit, predictor_mod, ac_mod, generator)
    rng = np.random.default_rng(0)

    size, frames = ENCODER["img_size"], ENCODER["num_frames"]
    grid = (frames // ENCODER["tubelet_size"], size // ENCODER["patch_size"],
            size // ENCODER["patch_size"])
    num_tokens = int(np.prod(grid))
    batch = 2
    video = rng.normal(size=(batch, frames, size, size, 3)).astype("float32")  # (B, T, H, W, C)
    video_t = torch.from_numpy(video).permute(0, 4, 1, 2, 3).contiguous()  # (B, C, T, H, W)
    # The kept (context) ids of a masked clip, unsorted: positions must follow the ids.
    keep = np.stack([rng.permutation(num_tokens)[:13] for _ in range(batch)]).astype("int64")
    # Predictor: disjoint context / target ids per sample.
    perm = np.stack([rng.permutation(num_tokens) for _ in range(batch)]).astype("int64")
    context_ids, target_ids = perm[:, :11], perm[:, 11:20]
    context_tokens = rng.normal(size=(batch, 11, ENCODER["embed_dim"])).astype("float32")
    # AC: 4 steps of a 4 x 4 frame grid.
    steps, frame_tokens = AC["num_frames"] // ENCODER["tubelet_size"], grid[1] * grid[2]
    z = rng.normal(size=(batch, steps, frame_tokens, ENCODER["embed_dim"])).astype("float32")
    z = (z - z.mean(-1, keepdims=True)) / z.std(-1, keepdims=True)
    actions = rng.normal(scale=0.05, size=(batch, steps, 7)).astype("float32")
    states = rng.normal(scale=0.3, size=(batch, steps, 7)).astype("float32")
    # Rollout states: xyz and gripper integrate the actions, rotations held (the planner's
    # actions have zero rotation deltas), as `WorldModelConventions` propagates them.
    roll_actions = actions.copy()
    roll_actions[..., 3:6] = 0.0
    roll_states = np.zeros_like(states)
    roll_states[:, 0] = states[:, 0]
    for k in range(1, steps):
        roll_states[:, k] = roll_states[:, k - 1]
        roll_states[:, k, [0, 1, 2, 6]] += roll_actions[:, k - 1, [0, 1, 2, 6]]

    t = torch.from_numpy
    with torch.no_grad():
        out = {
            "video": video, "keep_ids": keep, "context_ids": context_ids,
            "target_ids": target_ids, "context_tokens": context_tokens, "z": z,
            "actions": actions, "states": states, "rollout_actions": roll_actions,
            "rollout_states": roll_states,
            "encoder_tokens": encoder(video_t).numpy(),
            "encoder_masked_tokens": encoder(video_t, masks=[t(keep)]).numpy(),
            "target_encoder_tokens": target(video_t).numpy(),
            "predictor_out": predictor(t(context_tokens), [t(context_ids)], [t(target_ids)],
                                       mask_index=MASK_INDEX).numpy(),
            "ac_out": ac(t(z).flatten(1, 2), t(actions), t(states)).numpy().reshape(z.shape),
            "ac_rollout": ac_rollout(ac, t(z[:, 0]), t(roll_actions[:, :3]),
                                     t(roll_states[:, :3])).numpy(),
        }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrap = "module.backbone."
    torch.save({"encoder": prefixed(encoder.state_dict(), wrap),
                "predictor": prefixed(predictor.state_dict(), wrap),
                "opt": None, "scaler": None,
                "target_encoder": prefixed(target.state_dict(), wrap),
                "epoch": 1, "loss": 0.5, "batch_size": 2, "world_size": 1, "lr": 1e-4},
               out_dir / "pretrain.pt")
    torch.save({"encoder": prefixed(encoder.state_dict(), "module."),
                "predictor": prefixed(ac.state_dict(), "module.")}, out_dir / "ac.pt")
    np.savez_compressed(out_dir / "outputs.npz", **out)
    info = {
        "reference": "https://github.com/facebookresearch/vjepa2",
        "commit": REF_COMMIT,
        "torch": torch.__version__,
        "made_by": "scripts/make_reference_fixture.py",
        "encoder": ENCODER, "predictor": PREDICTOR, "ac_predictor": AC,
        "mask_index": MASK_INDEX, "grid": list(grid),
        "small_counts": {"encoder": count(encoder), "predictor": count(predictor),
                         "ac_predictor": count(ac),
                         "ac_extrinsics_encoder": count(ac.extrinsics_encoder)},
        "released_counts": reference_counts(vit, predictor_mod, ac_mod),
    }
    (out_dir / "reference.json").write_text(json.dumps(info, indent=1) + "\n")
    sizes = {p.name: p.stat().st_size for p in out_dir.iterdir()}
    print(json.dumps({"out": str(out_dir), "bytes": sizes, "total": sum(sizes.values())}))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
