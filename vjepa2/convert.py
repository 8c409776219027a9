"""Meta's V-JEPA 2 PyTorch checkpoints -> this project's preset folders, without PyTorch.

`convert_checkpoint(path, out)` reads a `.pt` file of the reference implementation
(github.com/facebookresearch/vjepa2): the released files (`vitl.pt`, `vith.pt`, `vitg.pt`,
`vitg-384.pt`, `vjepa2-ac-vitg.pt`: `encoder` and `predictor` entries) or the reference's
training checkpoints (`encoder`, `target_encoder`, `predictor`, plus optimizer state that is not
read). Keys may carry the `module.` / `backbone.` prefixes of its DDP and multi-sequence
wrappers. It writes one preset folder per model (`config.json` + `model.weights.h5`, loadable
with `from_preset(folder)`):

    out/encoder/          VideoEncoder              (the `encoder` entry)
    out/target_encoder/   VideoEncoder              (the `target_encoder` entry, if present)
    out/predictor/        MaskedPredictor           (a pretraining predictor)
    out/ac_predictor/     ActionConditionedPredictor (a V-JEPA 2-AC predictor), with
    out/conventions.json  the DROID action/state conventions: `out` is then a world-model run
                          folder (`load_world_model(out)`, `planning.Planner.from_run(out)`)
    out/conversion.json   the source file, preset, configs and the keys deliberately not read

Models use `rope_layout="reference"` (see `vjepa2.layers.rope`), the layout the released weights
were trained with. Every tensor of the checkpoint must map to exactly one weight of matching
shape and every weight must be filled: a missing, unexpected or mis-shaped key is an error
naming it. The only keys not read are named here with their reason (`IGNORED_KEYS`).

The `.pt` file (PyTorch's zip format, `torch.save` since 1.6) is read by `read_torch_checkpoint`:
the pickle is loaded by an unpickler that builds only dicts, lists, numbers, strings and arrays
(any other global in the file is refused), and tensors are read from the archive as numpy arrays.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

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
MODEL_ENTRIES = ("encoder", "target_encoder", "predictor")
REFERENCE_COMMIT = "c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb"

# ------------------------------------------------------------------------- the safe .pt reader

_DTYPES = {
    "FloatStorage": np.dtype("float32"), "DoubleStorage": np.dtype("float64"),
    "HalfStorage": np.dtype("float16"), "BFloat16Storage": "bfloat16",
    "LongStorage": np.dtype("int64"), "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"), "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"), "BoolStorage": np.dtype("bool"),
}


class _StorageType:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None,
                    metadata=None):
    data = storage
    if not size:
        return np.array(data[offset], copy=True)
    itemsize = data.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride),
        writeable=False)
    # A contiguous tensor stays a read-only view of its storage (no second copy of the file).
    return view if view.flags.c_contiguous else np.array(view, copy=True)


def _rebuild_parameter(tensor, requires_grad=False, hooks=None):
    return tensor


class _Unpickler(pickle.Unpickler):
    """Builds only containers, numbers, strings and numpy arrays; refuses any other global."""

    def __init__(self, handle, archive, prefix, path):
        super().__init__(handle)
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise UsageError(f"{self._path}: the checkpoint refers to {module}.{name}, which the safe "
                         "reader does not load (not a plain state-dict checkpoint)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UsageError(f"{self._path}: unsupported storage record {pid!r:.80}")
        _, kind, key, _location, numel = pid
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            dtype = _DTYPES[kind.name]
            if dtype == "bfloat16":  # the upper half of a float32
                bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
                array = bits.view("<f4")
            else:
                array = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
            if array.size < numel:
                raise UsageError(f"{self._path}: storage {key} holds {array.size} values, "
                                 f"{numel} expected (truncated file?)")
            self._storages[key] = array
        return self._storages[key]


def read_torch_checkpoint(path) -> dict:
    """Reads a `torch.save` zip file into nested dicts of numpy arrays, without PyTorch.

    Raises:
        UsageError: not a file, not PyTorch's zip format (the legacy pre-1.6 format included),
            a big-endian file, or a pickle that refers to anything but tensors and containers.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            head = handle.read(2)
        hint = (" (the legacy pre-1.6 torch.save format: re-save it with a recent PyTorch)"
                if head[:1] == b"\x80" else "")
        raise UsageError(f"{path} is not a PyTorch zip checkpoint{hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise UsageError(f"{path} is a zip file but not a PyTorch checkpoint (no single "
                                 "<name>/data.pkl)")
            prefix = pickles[0][:-len("data.pkl")]
            if f"{prefix}byteorder" in names and \
                    archive.read(f"{prefix}byteorder").strip() != b"little":
                raise UsageError(f"{path}: big-endian checkpoints are not supported")
            with archive.open(pickles[0]) as handle:
                return _Unpickler(handle, archive, prefix, path).load()
    except (zipfile.BadZipFile, KeyError, EOFError, pickle.UnpicklingError) as error:
        raise UsageError(f"{path} is damaged or truncated ({type(error).__name__}: {error})") \
            from None


# --------------------------------------------------------------------------- configs from keys


def _strip(state: dict) -> dict:
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

    state = _strip(state)
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


# ------------------------------------------------------------------------------- conversion


def droid_conventions(image_size: int = 256):
    """`WorldModelConventions` of the released V-JEPA 2-AC (DROID, Franka arm, 4 fps).

    xyz and the gripper integrate the actions in an imagined rollout; the rotation is held
    (the reference planner commands zero rotation deltas; it composes rotations and clips the
    gripper to [0, 1], which a linear update does not). Bounds: xyz inside the planner's
    0.075 m L1 ball, rotation held at 0, gripper delta in [-1, 1].
    """
    from vjepa2.models.world_model import WorldModelConventions

    return WorldModelConventions(
        action_dim=7, state_dim=7, image_size=image_size, frame_stride=1,
        action="[dx, dy, dz (m), rotation delta as extrinsic XYZ Euler angles (rad), "
               "gripper closedness delta]; the difference to the next state, unnormalized; "
               "DROID at 4 fps",
        state="[x, y, z (m) of the end effector, extrinsic XYZ Euler angles (rad), gripper "
              "closedness in [0, 1]]",
        action_delta_dims=(0, 1, 2, 6), state_delta_dims=(0, 1, 2, 6),
        action_to_state_scale=(1.0, 1.0, 1.0, 1.0), frame_normalization="imagenet",
        action_low=(-0.075, -0.075, -0.075, 0.0, 0.0, 0.0, -1.0),
        action_high=(0.075, 0.075, 0.075, 0.0, 0.0, 0.0, 1.0))


def _preset_config(preset: dict, part: str) -> dict:
    """A preset's constructor arguments for `part`, with the class defaults filled in."""
    import inspect

    signature = inspect.signature(_model_class(part).__init__)
    defaults = {name: p.default for name, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **preset[part]}


def _match_released(configs: dict) -> str | None:
    from vjepa2.presets import RELEASED

    kind = "ac" if "ac_predictor" in configs else "pretrain"
    found = []
    for name, preset in RELEASED.items():
        if preset["kind"] == kind and all(all(_preset_config(preset, part).get(k) == v
                                              for k, v in config.items())
               for part, config in configs.items()):
            found.append(name)
    if not found:
        return None
    # The 256 and 384 px ViT-g files have the same shapes: the first (256 px) is the default.
    return found[0]


def _model_class(kind):
    from vjepa2.models import ActionConditionedPredictor, MaskedPredictor, VideoEncoder

    return {"encoder": VideoEncoder, "predictor": MaskedPredictor,
            "ac_predictor": ActionConditionedPredictor}[kind]


def _model_states(checkpoint, path):
    """The prefix-stripped state dicts of the checkpoint's model entries and their kinds."""
    if not isinstance(checkpoint, dict) or not any(k in checkpoint for k in MODEL_ENTRIES):
        keys = sorted(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint)
        raise UsageError(f"{path} is not a V-JEPA 2 checkpoint: expected 'encoder', "
                         f"'target_encoder' or 'predictor' entries; found {keys}")
    states = {}
    for entry in MODEL_ENTRIES:
        if entry in checkpoint:
            state = checkpoint[entry]
            if not isinstance(state, dict):
                raise UsageError(f"{path}: entry {entry!r} is a {type(state).__name__}, not a "
                                 "state dict")
            states[entry] = _strip(state)
    kinds = {entry: kind_of(state) for entry, state in states.items()}
    for entry in ("encoder", "target_encoder"):
        if entry in kinds and kinds[entry] != "encoder":
            raise UsageError(f"{path}: entry {entry!r} holds a {kinds[entry]}, not an encoder")
    if "predictor" in kinds and kinds["predictor"] == "encoder":
        raise UsageError(f"{path}: entry 'predictor' holds an encoder")
    return states, kinds


def _shape_configs(states, kinds, path):
    """Per part (`encoder`, `predictor` or `ac_predictor`) the config implied by the shapes."""
    configs = {}
    for entry, state in states.items():
        part = kinds[entry]
        inferred = infer_config(state, f"{path} [{entry}]")
        if part in configs and configs[part] != inferred:
            raise UsageError(f"{path}: 'encoder' and 'target_encoder' have different shapes "
                             f"({configs[part]} vs {inferred})")
        configs[part] = inferred
    return configs


def _full_configs(configs, path, preset, encoder_heads, predictor_heads, image_size):
    """`(preset, constructor arguments per part, image_size)` from a released preset (given
    or matched by shapes) or from the shapes and the given head counts."""
    from vjepa2.presets import RELEASED

    if preset is None and encoder_heads is None and predictor_heads is None:
        preset = _match_released(configs)
        if preset is None:
            raise UsageError(f"{path} matches no released size ({_describe(configs)}); give a "
                             "preset or the head counts (encoder_heads, predictor_heads)")
    if preset is not None:
        expected = RELEASED[preset]
        kind = "ac" if "ac_predictor" in configs else "pretrain"
        if expected["kind"] != kind:
            raise UsageError(f"{path} holds a {'V-JEPA 2-AC' if kind == 'ac' else 'pretraining'}"
                             f" checkpoint; preset {preset} is not one")
        for part, config in configs.items():
            wanted = _preset_config(expected, part)
            for key, value in config.items():
                if wanted.get(key) != value:
                    raise UsageError(f"{path} does not match preset {preset}: {part} {key}="
                                     f"{value}, the preset has {wanted.get(key)}")
        full = {part: dict(expected[part]) for part in configs}
        return preset, full, image_size or expected["image_size"]
    full = {}
    for part, config in configs.items():
        name = "encoder_heads" if part == "encoder" else "predictor_heads"
        heads = encoder_heads if part == "encoder" else predictor_heads
        if heads is None:
            raise UsageError(f"the {part} has no released size: give its head count ({name})")
        full[part] = dict(config, num_heads=heads, rope_layout="reference")
        if part == "ac_predictor":
            full[part]["normalize_output"] = True
    return None, full, image_size or 256


def convert_checkpoint(path, out, preset: str | None = None, *, encoder_heads: int | None = None,
                       predictor_heads: int | None = None, image_size: int | None = None,
                       overwrite: bool = False) -> dict:
    """Converts a reference V-JEPA 2 / V-JEPA 2-AC `.pt` file into preset folders under `out`.

    Args:
        path: the `.pt` file (released or a reference training checkpoint).
        out: the folder to write (see the module docstring); must not exist or be empty
            unless `overwrite`.
        preset: a `vjepa2.presets.RELEASED` name the file must match (its head counts, frame
            size and RoPE layout are used); `None` finds the released preset whose shapes match,
            or, with `encoder_heads` and `predictor_heads`, converts any size.
        encoder_heads: attention heads of the encoder(s) (shapes do not tell them), when the
            file is not a released size.
        predictor_heads: attention heads of the predictor, likewise.
        image_size: frame size of a converted AC world model (default: the preset's, else 256).
        overwrite: replace the model folders of an existing `out`.

    Returns:
        The summary written to `out/conversion.json`: source, preset, per-model config, ignored
        keys and parameter counts.

    Raises:
        UsageError: a file of the wrong kind, a size that does not match `preset`, missing head
            counts, or missing/unexpected/mis-shaped keys (all named).
    """
    from vjepa2.files import write_json
    from vjepa2.presets import RELEASED

    path, out = Path(path), Path(out)
    if preset is not None and preset not in RELEASED:
        raise UsageError(f"unknown released preset {preset!r}; known: {', '.join(RELEASED)}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} exists and is not empty; choose another output folder")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise UsageError(f"image_size must be a positive integer; received {image_size!r}")
    checkpoint = read_torch_checkpoint(path)
    states, kinds = _model_states(checkpoint, path)
    configs = _shape_configs(states, kinds, path)
    preset, full, image_size = _full_configs(configs, path, preset, encoder_heads,
                                             predictor_heads, image_size)
    if "ac_predictor" in configs and "encoder" not in states:
        raise UsageError(f"{path}: an AC predictor without its 'encoder' entry cannot make a "
                         "world model")
    summary = {"source": os.path.abspath(path), "source_bytes": path.stat().st_size,
               "preset": preset, "reference_commit": REFERENCE_COMMIT, "models": {},
               "image_size": image_size}
    # Everything is written into a sibling temp folder first: a failure leaves no half folder.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for entry in list(states):
            part = kinds[entry]
            folder = entry if part == "encoder" else part
            try:
                model = _model_class(part)(**full[part])
            except ValueError as error:
                raise UsageError(f"{path} [{entry}]: {error}") from None
            model.build()
            ignored = load_reference_state(model, states[entry], f"{path} [{entry}]")
            model.save_to_preset(tmp / folder)
            summary["models"][folder] = {"entry": entry, "config": full[part],
                                         "params": int(model.count_params()),
                                         "ignored_keys": {k: IGNORED_KEYS[k] for k in ignored}}
            del model
            states[entry] = checkpoint[entry] = None  # free the arrays before the next model
        if "ac_predictor" in configs:
            write_json(tmp / "conventions.json", droid_conventions(image_size).to_json(),
                       indent=2)
            summary["conventions"] = "conventions.json"
        write_json(tmp / "conversion.json", summary, indent=2)
        _replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return summary


def _replace_folder(new: Path, out: Path):
    """Moves `new` to `out`, replacing an existing `out` (checked empty or allowed by the caller)."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(new, out)
        shutil.rmtree(old)
    else:
        os.replace(new, out)


def _describe(configs):
    return "; ".join(f"{part} " + ", ".join(f"{k}={v}" for k, v in config.items())
                     for part, config in configs.items())
