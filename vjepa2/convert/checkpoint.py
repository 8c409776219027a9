"""`convert_checkpoint`: a reference `.pt` file -> preset folders (see `vjepa2.convert`)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from vjepa2.convert.reader import read_torch_checkpoint
from vjepa2.convert.weights import (IGNORED_KEYS, infer_config, kind_of, load_reference_state,
                                    strip_prefixes)
from vjepa2.errors import UsageError
from vjepa2.files import replace_folder, temp_path

MODEL_ENTRIES = ("encoder", "target_encoder", "predictor")
REFERENCE_COMMIT = "c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb"


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
            states[entry] = strip_prefixes(state)
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
    tmp = temp_path(out.parent, out.name, folder=True)
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
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return summary


def _describe(configs):
    return "; ".join(f"{part} " + ", ".join(f"{k}={v}" for k, v in config.items())
                     for part, config in configs.items())
