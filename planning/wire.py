"""The planner service's wire format: JSON bodies with arrays as base64 (schema in
`planning/service_schema.json`, served at `GET /schema`).

An array is `{"dtype": "uint8" | "float32" | "float64", "shape": [...], "data": base64 of the
C-order bytes}`. Every decoding error is a `WireError` naming the field and what is wrong.
"""
from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import numpy as np

DTYPES = ("uint8", "float32", "float64")
MAX_ELEMENTS = 64 * 1024 * 1024  # a 4096 x 4096 x 4 array; anything larger is refused
SCHEMA_PATH = Path(__file__).with_name("service_schema.json")


class WireError(ValueError):
    """A request or response body that does not follow the schema; the message names the
    field."""


def encode_array(array) -> dict:
    """`{"dtype", "shape", "data"}` for a numpy array (other dtypes are sent as float32)."""
    array = np.asarray(array)
    if array.dtype.name not in DTYPES:
        array = array.astype("float32")
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")}


def decode_array(value, field: str) -> np.ndarray:
    """The numpy array of an encoded `value`; `WireError` naming `field` if it is malformed."""
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise WireError(f"{field} must be an object with dtype, shape and data")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in DTYPES:
        raise WireError(f"{field}.dtype must be one of {', '.join(DTYPES)}; received {dtype!r}")
    if (not isinstance(shape, list) or len(shape) > 6
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                       for n in shape)):
        raise WireError(f"{field}.shape must be a list of at most 6 non-negative integers; "
                        f"received {shape!r}")
    count = int(np.prod(shape)) if shape else 1
    if count > MAX_ELEMENTS:
        raise WireError(f"{field} has {count} elements; at most {MAX_ELEMENTS} are accepted")
    if not isinstance(data, str):
        raise WireError(f"{field}.data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{field}.data is not valid base64") from None
    expected = count * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise WireError(f"{field}.data holds {len(raw)} bytes; shape {shape} of {dtype} needs "
                        f"{expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(body: bytes, what: str = "body") -> dict:
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WireError(f"the {what} is not JSON") from None
    if not isinstance(obj, dict):
        raise WireError(f"the {what} must be a JSON object")
    return obj


def schema() -> dict:
    """The service's JSON schema (requests and responses of every endpoint)."""
    return json.loads(SCHEMA_PATH.read_text())
