"""Config dataclasses: one place for each default, from which ROS parameters are generated.

Each core has one frozen dataclass (in the style of LeRobot's
`configuration_act.py`): every field declared with `param(default, help,
...)`, its unit in the name or the help, checked in `__post_init__`.  Nodes
declare their ROS parameters from it (`surgbot.rosutil.declare_config`),
`config/*.yaml` only overrides, and tests load the shipped YAML through
`config_from_yaml` so what ships is what is tested.

Supported field types: `float`, `int`, `bool`, `str`, `tuple[float, ...]`,
`tuple[int, ...]`, `tuple[str, ...]`, each optionally `| None` ("unset": no
default value; the ROS parameter is declared typed but without a value), and
nested config dataclasses (parameters `outer.inner`).  ROS-free.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SCALARS = (float, int, bool, str)


def param(default: Any = None, help: str = "", *, lo: float | None = None, hi: float | None = None,
          read_only: bool = True) -> Any:
    """A documented config field.  `lo`/`hi` become the ROS parameter's range (inclusive)."""
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "read_only": read_only})


@dataclass(frozen=True)
class FieldSpec:
    """One leaf parameter of a config: dotted name, python type, default, docs."""

    name: str
    kind: type                 # float, int, bool, str
    is_array: bool
    optional: bool
    default: Any
    help: str
    lo: float | None
    hi: float | None
    read_only: bool


def _unwrap_optional(tp) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported union {tp}")
        return rest[0], True
    return tp, False


def fields(cls: type, prefix: str = "") -> Iterator[FieldSpec]:
    """Leaf parameters of a config dataclass (nested configs flattened as `outer.inner`)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        name = prefix + f.name
        if dataclasses.is_dataclass(tp):
            yield from fields(tp, name + ".")
            continue
        is_array = typing.get_origin(tp) is tuple
        kind = typing.get_args(tp)[0] if is_array else tp
        if kind not in SCALARS:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {tp}")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:     # type: ignore[misc]
            default = f.default_factory()                      # type: ignore[misc]
        md = f.metadata
        yield FieldSpec(name, kind, is_array, optional, default, md.get("help", ""), md.get("lo"), md.get("hi"),
                        md.get("read_only", True))


def _coerce(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        if not spec.optional:
            raise ValueError(f"{spec.name}: a value is required")
        return None
    if spec.is_array:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{spec.name}: expected a list, got {value!r}")
        return tuple(_coerce_scalar(spec, v) for v in value)
    return _coerce_scalar(spec, value)


def _coerce_scalar(spec: FieldSpec, v: Any) -> Any:
    if spec.kind is bool:
        if not isinstance(v, bool):
            raise ValueError(f"{spec.name}: expected true/false, got {v!r}")
        return v
    if spec.kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{spec.name}: expected an integer, got {v!r}")
        return v
    if spec.kind is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{spec.name}: expected a number, got {v!r}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{spec.name}: {v!r} is not finite")
        return float(v)
    if not isinstance(v, str):
        raise ValueError(f"{spec.name}: expected a string, got {v!r}")
    return v


def check_ranges(cfg) -> None:
    """ValueError naming the first field of `cfg` (its own, not nested) outside its `param(lo=, hi=)` range:
    a config built in Python gets the same bounds a ROS parameter of it would."""
    for f in dataclasses.fields(cfg):
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if lo is None and hi is None:
            continue
        v = getattr(cfg, f.name)
        for x in (v if isinstance(v, tuple) else (v,)):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                continue
            if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
                raise ValueError(f"{f.name}: {v!r} outside [{lo}, {hi}]")


def build(cls: type, values: Mapping[str, Any]):
    """`cls` from dotted-name values (missing names keep their defaults).  Unknown names -> ValueError."""
    specs = {s.name: s for s in fields(cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}")
    return _build(cls, {k: _coerce(specs[k], v) for k, v in values.items()}, "")


def _default_instance(f: dataclasses.Field, tp: type):
    if f.default is not dataclasses.MISSING and f.default is not None:
        return f.default
    if f.default_factory is not dataclasses.MISSING:          # type: ignore[misc]
        return f.default_factory()                             # type: ignore[misc]
    return tp()


def _build(cls: type, values: Mapping[str, Any], prefix: str, base=None):
    """`cls(...)` (or `base` replaced) with the leaves named in `values`; nested configs recurse."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        name = prefix + f.name
        if dataclasses.is_dataclass(tp):
            if any(k.startswith(name + ".") for k in values):
                inner = getattr(base, f.name) if base is not None else None
                kwargs[f.name] = _build(tp, values, name + ".", inner or _default_instance(f, tp))
        elif name in values:
            kwargs[f.name] = values[name]
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def flatten_yaml(section: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{a: {b: 1}}` -> `{"a.b": 1}` (ROS 2 params files nest dotted names)."""
    out: dict[str, Any] = {}
    for k, v in section.items():
        if isinstance(v, Mapping):
            out.update(flatten_yaml(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def yaml_parameters(path: str | Path, node_name: str) -> dict[str, Any]:
    """The `ros__parameters` of `node_name` (or `/**`) in a ROS 2 params file, flattened."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    out: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = data.get(key, {}) or {}
        out.update(flatten_yaml(section.get("ros__parameters", {}) or {}))
    return out


def config_from_yaml(cls: type, path: str | Path, node_name: str, *, ignore: tuple[str, ...] = ()):
    """The config a node named `node_name` gets from a shipped params file (keys in `ignore` skipped)."""
    values = {k: v for k, v in yaml_parameters(path, node_name).items() if k not in ignore}
    return build(cls, values)
