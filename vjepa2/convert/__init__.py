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
naming it. The only keys not read are listed with their reason in `IGNORED_KEYS`.

The `.pt` file (PyTorch's zip format, `torch.save` since 1.6) is read by `read_torch_checkpoint`:
the pickle is loaded by an unpickler that builds only dicts, lists, numbers, strings and arrays
(any other global in the file is refused), and tensors are read from the archive as numpy arrays.
"""
from vjepa2.convert.checkpoint import (MODEL_ENTRIES, REFERENCE_COMMIT, convert_checkpoint,
                                       droid_conventions)
from vjepa2.convert.reader import read_torch_checkpoint
from vjepa2.convert.weights import IGNORED_KEYS, infer_config, kind_of, load_reference_state

__all__ = ["IGNORED_KEYS", "MODEL_ENTRIES", "REFERENCE_COMMIT", "convert_checkpoint",
           "droid_conventions", "infer_config", "kind_of", "load_reference_state",
           "read_torch_checkpoint"]
