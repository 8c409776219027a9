"""Command-line flags generated from config dataclasses, so each default is written once.

A field `batch_size: int = 8` with `metadata={"help": "clips per step"}` becomes
`--batch-size INT` (help: "clips per step (default: 8)"); a field without a default is a
required flag; `bool` fields are switches; `tuple[float, float]` fields take two values;
`metadata["choices"]` limits the values. Flags that are not given are not passed on, so the
dataclass's default applies.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

_SCALARS = (int, float, str)


def _scalar_type(hint):
    """The element type argparse converts with, and the tuple length (`None`: not a tuple)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _scalar_type(args[0])
    if origin is tuple:
        args = typing.get_args(hint)
        return args[0], len(args)
    return hint, None


def add_config_flags(parser: argparse.ArgumentParser, cls, *, skip=()) -> None:
    """Adds one flag per field of the dataclass `cls` (except `skip`)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind, length = _scalar_type(hints[field.name])
        help_text = field.metadata.get("help", "")
        flag = "--" + field.name.replace("_", "-")
        kwargs = dict(dest=field.name, default=argparse.SUPPRESS)
        required = field.default is dataclasses.MISSING and \
            field.default_factory is dataclasses.MISSING
        if not required and field.default is not None and kind is not bool:
            default = field.default
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f"{help_text} (default: {shown})"
        if kind is bool:
            kwargs["action"] = "store_true"
        else:
            if kind not in _SCALARS:
                raise TypeError(f"{cls.__name__}.{field.name}: no flag for type {kind!r}")
            kwargs["type"] = kind
            if length is not None:
                kwargs["nargs"] = length
                kwargs["metavar"] = field.metadata.get("metavar")
            if "choices" in field.metadata:
                kwargs["choices"] = field.metadata["choices"]
        parser.add_argument(flag, required=required, help=help_text.replace("%", "%%"),
                            **kwargs)


def config_from_args(cls, args: argparse.Namespace, **extra):
    """`cls(**fields given on the command line, **extra)`; tuples stay tuples."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if hasattr(args, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values, **extra)
