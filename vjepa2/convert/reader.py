"""A PyTorch-free reader of `torch.save` zip files (PyTorch >= 1.6).

The pickle is loaded by an unpickler that builds only dicts, lists, numbers, strings and numpy
arrays: any other global named in the file is refused, so reading a file cannot run its code.
Tensors are read from the archive's storages (little-endian; float32/64, float16, bfloat16 and
integer types); a contiguous tensor stays a read-only view of its storage.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from vjepa2.errors import UsageError

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
