"""`from_preset` / `save_to_preset` for the models: a preset is a name or a folder.

A preset folder holds `config.json` (the Keras-serialized model config) and `model.weights.h5`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import keras

from vjepa2.files import disk_full_guard, ensure_free_space, replace_folder, temp_path

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


class PresetMixin:
    """Adds `from_preset(name_or_dir)` and `save_to_preset(dir)` to a model class.

    Subclasses set `preset_key`, the entry of `vjepa2.presets.PRESETS[name]` holding their
    constructor arguments.
    """

    preset_key: str = ""

    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """Builds the model from a preset name or a folder written by `save_to_preset`.

        Args:
            preset: a name in `vjepa2.presets.PRESETS` (fresh random weights) or a folder.
            load_weights: load the folder's weights (ignored for a name).
            **overrides: constructor arguments replacing the preset's.
        """
        path = Path(str(preset))
        if path.is_dir():
            config_path = path / CONFIG_FILE
            if not config_path.is_file():
                raise ValueError(f"preset folder {path} has no {CONFIG_FILE}")
            model = keras.saving.deserialize_keras_object(json.loads(config_path.read_text()))
            if not isinstance(model, cls):
                raise ValueError(f"preset folder {path} holds a {type(model).__name__}, "
                                 f"not a {cls.__name__}")
            if overrides:
                model = cls.from_config({**model.get_config(), **overrides})
            if not model.built:
                model.build()
            if load_weights:
                model.load_weights(str(path / WEIGHTS_FILE))
            return model
        from vjepa2.presets import get_preset

        if os.sep in str(preset) or str(preset).startswith("."):
            raise ValueError(f"preset folder not found: {preset}")
        config = dict(get_preset(str(preset))[cls.preset_key])
        config.update(overrides)
        model = cls(**config)
        model.build()
        return model

    def save_to_preset(self, directory):
        """Writes `config.json` and `model.weights.h5` into `directory`, atomically."""
        directory = Path(directory)
        needed = sum(math.prod(w.shape) * 4 for w in self.weights)
        ensure_free_space(directory, needed)
        with disk_full_guard(directory, needed):
            tmp = temp_path(directory.parent, directory.name, folder=True)
            try:
                config = keras.saving.serialize_keras_object(self)
                (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
                self.save_weights(str(tmp / WEIGHTS_FILE))
                replace_folder(tmp, directory)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
        return directory
