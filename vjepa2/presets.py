"""Named model configurations: data, not code.

`tiny` and `small` run on a CPU; `large`, `huge` and `giant` match the V-JEPA 2 reference encoders
(ViT-L/16, ViT-H/16, ViT-g/16) with the reference 12 x 384 pretraining predictor, for training
here (true-rotation RoPE). The `vjepa2-*` presets are Meta's released checkpoints as
`vjepa2.convert` writes them: the same sizes with the reference's RoPE layout, its 10 mask
tokens and (for V-JEPA 2-AC) its output normalization; each also names the released file
(`checkpoint`) and the frame size it was trained at (`image_size`).
"""
from __future__ import annotations

_REFERENCE_PREDICTOR = dict(embed_dim=384, depth=12, num_heads=12, mlp_dim=1536)


# The V-JEPA 2-AC predictor: 24 blocks of width 1024, 16 heads (~300M), 7-D actions and states.
_REFERENCE_AC_PREDICTOR = dict(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096)


def _preset(encoder, predictor, description, ac_predictor=None):
    predictor = dict(predictor, encoder_dim=encoder["embed_dim"])
    ac = dict(ac_predictor or _REFERENCE_AC_PREDICTOR, encoder_dim=encoder["embed_dim"],
              action_dim=7, state_dim=7)
    return {"description": description, "encoder": dict(encoder), "predictor": predictor,
            "ac_predictor": ac}


PRESETS = {
    "tiny": _preset(
        dict(embed_dim=192, depth=6, num_heads=3, mlp_dim=768),
        dict(embed_dim=96, depth=4, num_heads=3, mlp_dim=384),
        "6-block ViT-Ti-width encoder (3.0M), a 4 x 96 predictor and a 4 x 192 action-conditioned "
        "predictor (1.8M, residual head); for CPU tests and demos.",
        dict(embed_dim=192, depth=4, num_heads=3, mlp_dim=768, residual=True),
    ),
    "small": _preset(
        dict(embed_dim=384, depth=12, num_heads=6, mlp_dim=1536),
        dict(embed_dim=192, depth=6, num_heads=6, mlp_dim=768),
        "ViT-S/16 encoder (~22M), a 6 x 192 predictor and a 12 x 384 action-conditioned "
        "predictor (~21M, residual head); CPU-trainable at small scale.",
        dict(embed_dim=384, depth=12, num_heads=6, mlp_dim=1536, residual=True),
    ),
    "large": _preset(
        dict(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
        _REFERENCE_PREDICTOR,
        "ViT-L/16 encoder (~300M), the reference 12 x 384 predictor and the reference 24 x 1024 "
        "action-conditioned predictor (~300M).",
    ),
    "huge": _preset(
        dict(embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120),
        _REFERENCE_PREDICTOR,
        "ViT-H/16 encoder (~630M) and the reference 12 x 384 predictor.",
    ),
    "giant": _preset(
        dict(embed_dim=1408, depth=40, num_heads=22, mlp_dim=6144),
        _REFERENCE_PREDICTOR,
        "ViT-g/16 encoder (~1.0B) and the reference 12 x 384 predictor.",
    ),
    # The JEPA family at CPU size (I-JEPA, A-JEPA, MC-JEPA; docs/family.md): the tiny width
    # at 4 blocks and a 2-block predictor, one size for images, spectrograms and clips.
    "family-tiny": _preset(
        dict(embed_dim=192, depth=4, num_heads=3, mlp_dim=768),
        dict(embed_dim=96, depth=2, num_heads=3, mlp_dim=384),
        "4-block ViT-Ti-width encoder (2.1M) and a 2 x 96 predictor: the JEPA family members "
        "(images, audio, motion) trained in minutes on a CPU.",
        dict(embed_dim=192, depth=2, num_heads=3, mlp_dim=768, residual=True),
    ),
}


def _variant(base, description, **encoder):
    """`base` with some encoder settings replaced (the predictors stay as they are)."""
    preset = PRESETS[base]
    return {**preset, "description": description, "encoder": dict(preset["encoder"], **encoder)}


# family-tiny on 8 px patches: an 8 x 8 token grid per tubelet at 64 px, for inputs whose detail
# is finer than a 16 px patch (MC-JEPA on moving digits; docs/family.md).
PRESETS["family-tiny-p8"] = _variant(
    "family-tiny", "family-tiny on 8 x 8 px patches (4x the tokens of family-tiny at the same "
    "resolution).", patch_size=8)


def _released(base, description, checkpoint, image_size, ac=False):
    """A released V-JEPA 2 checkpoint: `base`'s sizes in the reference's RoPE layout."""
    preset = PRESETS[base]
    ref = dict(rope_layout="reference")
    ac_predictor = dict(_REFERENCE_AC_PREDICTOR, encoder_dim=preset["encoder"]["embed_dim"],
                        action_dim=7, state_dim=7, normalize_output=True, **ref)
    return {"description": description, "checkpoint": checkpoint, "image_size": image_size,
            "kind": "ac" if ac else "pretrain",
            "encoder": dict(preset["encoder"], **ref),
            "predictor": dict(preset["predictor"], num_mask_tokens=10, **ref),
            "ac_predictor": ac_predictor}


# Meta's released files (https://github.com/facebookresearch/vjepa2, `src/hub/backbones.py`).
# Encoder, predictor and AC-predictor parameter counts equal the reference models' (checked by
# scripts/make_reference_fixture.py and tests/test_convert.py; docs/convert.md).
RELEASED = {
    "vjepa2-vitl-256": _released(
        "large", "V-JEPA 2 ViT-L/16 at 256 px (vitl.pt): encoder 303.9M, predictor 22.1M.",
        "vitl.pt", 256),
    "vjepa2-vith-256": _released(
        "huge", "V-JEPA 2 ViT-H/16 at 256 px (vith.pt): encoder 631.6M, predictor 22.3M.",
        "vith.pt", 256),
    "vjepa2-vitg-256": _released(
        "giant", "V-JEPA 2 ViT-g/16 at 256 px (vitg.pt): encoder 1012.2M, predictor 22.4M.",
        "vitg.pt", 256),
    "vjepa2-vitg-384": _released(
        "giant", "V-JEPA 2 ViT-g/16 at 384 px (vitg-384.pt): encoder 1012.2M, predictor 22.4M.",
        "vitg-384.pt", 384),
    "vjepa2-ac-vitg-256": _released(
        "giant", "V-JEPA 2-AC: the ViT-g/16 encoder at 256 px and the 24 x 1024 action-"
        "conditioned predictor (305.2M; 7-D actions and states) (vjepa2-ac-vitg.pt).",
        "vjepa2-ac-vitg.pt", 256, ac=True),
}
PRESETS.update(RELEASED)


def get_preset(name: str) -> dict:
    """The preset dict for `name`; an unknown name raises naming the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def _block_params(dim: int, mlp_dim: int) -> int:
    # 2 LayerNorms, qkv (with bias), attention proj, MLP fc1 and fc2.
    return 4 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + \
        (dim * mlp_dim + mlp_dim) + (mlp_dim * dim + dim)


def encoder_param_count(embed_dim, depth, num_heads=None, mlp_dim=None, tubelet_size=2,
                        patch_size=16, in_channels=3, **unused) -> int:
    """Exact parameter count of a `VideoEncoder` config, computed without allocating it."""
    mlp_dim = mlp_dim or 4 * embed_dim
    embed = tubelet_size * patch_size * patch_size * in_channels * embed_dim + embed_dim
    return embed + depth * _block_params(embed_dim, mlp_dim) + 2 * embed_dim


def predictor_param_count(encoder_dim, embed_dim, depth, num_heads=None, mlp_dim=None,
                          num_mask_tokens=2, **unused) -> int:
    """Exact parameter count of a `MaskedPredictor` config, computed without allocating it."""
    mlp_dim = mlp_dim or 4 * embed_dim
    return (encoder_dim * embed_dim + embed_dim) + num_mask_tokens * embed_dim + \
        depth * _block_params(embed_dim, mlp_dim) + 2 * embed_dim + \
        (embed_dim * encoder_dim + encoder_dim)


def ac_predictor_param_count(encoder_dim, action_dim, state_dim, embed_dim, depth,
                             num_heads=None, mlp_dim=None, **unused) -> int:
    """Exact parameter count of an `ActionConditionedPredictor` config, without allocating it."""
    mlp_dim = mlp_dim or 4 * embed_dim
    embeds = (action_dim + state_dim + encoder_dim) * embed_dim + 3 * embed_dim
    return embeds + depth * _block_params(embed_dim, mlp_dim) + 2 * embed_dim + \
        (embed_dim * encoder_dim + encoder_dim)
