"""Reference V-JEPA 2 state dicts -> this project's models: configs from shapes, exact key
mapping. Every tensor maps to exactly one weight of matching shape and every weight is filled;
the few keys read past are named in `IGNORED_KEYS` with their reason."""
from __future__ import annotations

import re

import numpy as np

from vjepa2.errors import UsageError

# Checkpoint keys the converter reads past on purpose (never a silent catch-all).
IGNORED_KEYS = {
    "pos_embed": "the sin-cos position table of non-RoPE encoders; RoPE models never add it",
    "predictor_pos_embed": "the sin-cos position table of non-RoPE predictors; unused with RoPE",
    "extrinsics_encoder.weight": "camera-extrinsics embedding, used only with use_extrinsics=True "
                                 "(never by the released V-JEPA 2-AC)",
    "extrinsics_encoder.bias": "as extrinsics_encoder.weight",
}


def strip_prefixes(state: dict) -> dict:
    """Drops the `module.` / `backbone.` wrapper prefixes, as the reference's loaders do."""
    out = {}
    for key, value in state.items():
        clean = key
        while clean.startswith(("module.", "backbone.")):
            clean = clean.split(".", 1)[1]
        if clean in out:
            raise UsageError(f"keys {key!r} and another both map to {clean!r}")
        out[clean] = value
    return out


def _shape(state, key, where):
    if key not in state:
        raise UsageError(f"{where} has no {key!r}; found keys like {sorted(state)[:6]}")
    return tuple(np.shape(state[key]))


def _depth(state, prefix, where):
    indices = {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
    if not indices or indices != set(range(len(indices))):
        raise UsageError(f"{where}: blocks {prefix}.* are missing or not numbered 0..n-1 "
                         f"(found {sorted(indices)[:10]})")
    return len(indices)


def _check_mlp(state, prefix, where):
    if f"{prefix}.0.mlp.fc3.weight" in state:
        raise UsageError(f"{where} uses a SwiGLU MLP (use_silu=True), which this project does "
                         "not implement; the released V-JEPA 2 models use GELU")


def kind_of(state: dict) -> str:
    """`"encoder"`, `"predictor"` or `"ac_predictor"` for a (prefix-stripped) state dict."""
    if "patch_embed.proj.weight" in state:
        return "encoder"
    if "action_encoder.weight" in state:
        return "ac_predictor"
    if "predictor_embed.weight" in state:
        return "predictor"
    raise UsageError("a state dict that is neither a V-JEPA 2 encoder, predictor nor AC "
                     f"predictor; found keys like {sorted(state)[:6]}")


def infer_config(state: dict, where: str = "checkpoint") -> dict:
    """Constructor arguments implied by a state dict's shapes (all but `num_heads`)."""
    kind = kind_of(state)
    if kind == "encoder":
        shape = _shape(state, "patch_embed.proj.weight", where)
        if len(shape) != 5:
            raise UsageError(f"{where}: patch_embed.proj.weight has shape {shape}; a video "
                             "encoder's Conv3d (dim, 3, tubelet, patch, patch) is expected")
        dim, channels, tubelet, patch, patch_w = shape
        if channels != 3 or patch != patch_w:
            raise UsageError(f"{where}: patch_embed.proj.weight has shape {shape}; 3 channels "
                             "and square patches are expected")
        _check_mlp(state, "blocks", where)
        return dict(embed_dim=dim, depth=_depth(state, "blocks", where),
                    mlp_dim=_shape(state, "blocks.0.mlp.fc1.weight", where)[0],
                    tubelet_size=tubelet, patch_size=patch,
                    qkv_bias="blocks.0.attn.qkv.bias" in state)
    _check_mlp(state, "predictor_blocks", where)
    embed_dim, encoder_dim = _shape(state, "predictor_embed.weight", where)
    config = dict(encoder_dim=encoder_dim, embed_dim=embed_dim,
                  depth=_depth(state, "predictor_blocks", where),
                  mlp_dim=_shape(state, "predictor_blocks.0.mlp.fc1.weight", where)[0],
                  qkv_bias="predictor_blocks.0.attn.qkv.bias" in state)
    if kind == "ac_predictor":
        config.update(action_dim=_shape(state, "action_encoder.weight", where)[1],
                      state_dim=_shape(state, "state_encoder.weight", where)[1])
    else:
        tokens = [k for k in state if re.fullmatch(r"mask_tokens\.\d+", k)]
        if not tokens:
            raise UsageError(f"{where}: a predictor without mask tokens (use_mask_tokens=False) "
                             "is not supported")
        config["num_mask_tokens"] = len(tokens)
    return config


# ---------------------------------------------------------------------------- weight mapping


class _Assigner:
    """Pairs checkpoint keys with model variables; reports every problem at once."""

    def __init__(self, state, where):
        self.state = dict(state)
        self.where = where
        self.pairs = []
        self.missing = []
        self.mismatched = []

    def take(self, key, variable, transform=None):
        if key not in self.state:
            self.missing.append(key)
            return
        value = np.asarray(self.state.pop(key), dtype="float32")
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(variable.shape):
            self.mismatched.append(f"{key} {tuple(value.shape)} -> {tuple(variable.shape)}")
            return
        self.pairs.append((variable, value))

    def linear(self, prefix, dense):
        self.take(f"{prefix}.weight", dense.kernel, lambda w: w.T)
        if dense.use_bias:
            self.take(f"{prefix}.bias", dense.bias)

    def norm(self, prefix, layer):
        self.take(f"{prefix}.weight", layer.gamma)
        self.take(f"{prefix}.bias", layer.beta)

    def block(self, prefix, block):
        self.norm(f"{prefix}.norm1", block.norm1)
        self.linear(f"{prefix}.attn.qkv", block.attn.qkv)
        self.linear(f"{prefix}.attn.proj", block.attn.proj)
        self.norm(f"{prefix}.norm2", block.norm2)
        self.linear(f"{prefix}.mlp.fc1", block.fc1)
        self.linear(f"{prefix}.mlp.fc2", block.fc2)

    def finish(self, model):
        ignored = sorted(k for k in self.state if k in IGNORED_KEYS)
        unexpected = sorted(k for k in self.state if k not in IGNORED_KEYS)
        problems = []
        for name, keys in (("missing keys", self.missing), ("unexpected keys", unexpected),
                           ("shape mismatches", self.mismatched)):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                problems.append(f"{name} {', '.join(keys[:5])}{more}")
        assigned = {id(v) for v, _ in self.pairs}
        unfilled = [v.path for v in model.weights if id(v) not in assigned]
        if unfilled and not problems:
            problems.append(f"model weights left unfilled: {', '.join(unfilled[:5])}")
        if problems:
            raise UsageError(f"{self.where} does not fit a {type(model).__name__}: "
                             + "; ".join(problems))
        for variable, value in self.pairs:
            variable.assign(value)
        return ignored


def load_reference_state(model, state: dict, where: str = "checkpoint") -> list[str]:
    """Fills a built `VideoEncoder`, `MaskedPredictor` or `ActionConditionedPredictor` from a
    reference state dict (prefixes allowed); returns the `IGNORED_KEYS` it read past.

    Raises:
        UsageError: missing, unexpected or mis-shaped keys, all named in one message.
    """
    from vjepa2.models import ActionConditionedPredictor, MaskedPredictor, VideoEncoder

    state = strip_prefixes(state)
    if not model.built:
        model.build()
    a = _Assigner(state, where)
    if isinstance(model, VideoEncoder):
        # Conv3d (dim, C, t, p, p) -> (t, p, p, C, dim).
        a.take("patch_embed.proj.weight", model.patch_embed.kernel,
               lambda w: w.transpose(2, 3, 4, 1, 0))
        a.take("patch_embed.proj.bias", model.patch_embed.bias)
        for i, block in enumerate(model.blocks):
            a.block(f"blocks.{i}", block)
        a.norm("norm", model.norm)
    elif isinstance(model, MaskedPredictor):
        a.linear("predictor_embed", model.embed)
        keys = [f"mask_tokens.{i}" for i in range(model.num_mask_tokens)]
        if all(k in a.state for k in keys):
            tokens = np.concatenate([np.reshape(a.state.pop(k), (1, -1)) for k in keys])
            a.state["mask_tokens"] = tokens
            a.take("mask_tokens", model.mask_tokens)
        else:
            a.missing += [k for k in keys if k not in a.state]
        for i, block in enumerate(model.blocks):
            a.block(f"predictor_blocks.{i}", block)
        a.norm("predictor_norm", model.norm)
        a.linear("predictor_proj", model.head)
    elif isinstance(model, ActionConditionedPredictor):
        a.linear("predictor_embed", model.patch_embed)
        a.linear("action_encoder", model.action_embed)
        a.linear("state_encoder", model.state_embed)
        for i, block in enumerate(model.blocks):
            a.block(f"predictor_blocks.{i}", block)
        a.norm("predictor_norm", model.norm)
        a.linear("predictor_proj", model.head)
    else:
        raise TypeError(f"cannot load a reference state dict into {type(model).__name__}")
    return a.finish(model)
