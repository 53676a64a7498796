"""Strict loading of frozen config dataclasses from YAML mappings and ``--set key=value`` strings.

Every field is typed; an unknown key, a wrong type or a value outside the field's declared range is a
:class:`ConfigError` naming the key and where it came from. Nothing is reset silently.
Fields may declare ``metadata={"min": .., "max": .., "choices": (..), "help": ".."}``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_range(f: dataclasses.Field, value: Any, where: str) -> None:
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "min" in meta and value < meta["min"]:
            raise ConfigError(f"{where}: {value!r} is below the minimum {meta['min']}")
        if "max" in meta and value > meta["max"]:
            raise ConfigError(f"{where}: {value!r} is above the maximum {meta['max']}")


def _coerce(tp: Any, value: Any, where: str, from_text: bool) -> Any:
    """Check (YAML) or parse (``--set`` text) one value against a type hint."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if (value is None or (from_text and str(value).lower() in ("none", "null", ""))) and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where, from_text)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: {value!r} is not allowed")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_mapping(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if origin is tuple:
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_coerce(item_tp, v, f"{where}[{i}]", from_text) for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("true", "yes", "on", "1"):
            return True
        if from_text and str(value).lower() in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text:
            try:
                return int(str(value))
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif from_text:
            try:
                out = float(str(value))
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        else:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if out != out or out in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if from_text:
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def from_mapping(cls: type[T], data: dict[str, Any], source: str) -> T:
    """Build ``cls`` from a mapping, strictly. ``source`` names the file (and key path) for errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        where = f"{source}: {name}" if ": " not in source else f"{source}.{name}"
        kwargs[name] = _coerce(hints[name], value, where, from_text=False)
        _check_range(fields[name], kwargs[name], where)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field left out
        raise ConfigError(f"{source}: {exc}") from None


def validate(obj: Any, source: str) -> None:
    """Check ranges of every field of an already built dataclass (defaults included)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{source}.{f.name}")
        else:
            _check_range(f, value, f"{source}.{f.name}")


def replace_path(obj: T, dotted: str, text: str, source: str, _full: str | None = None) -> T:
    """Return a copy of dataclass ``obj`` with the field at ``a.b.c`` parsed from ``text``."""
    full = _full or dotted
    head, _, rest = dotted.partition(".")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if head not in fields:
        known = ", ".join(sorted(fields)) or "none"
        raise ConfigError(f"{source} {full}={text}: unknown key {head!r} (known: {known})")
    current = getattr(obj, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{source} {full}={text}: {head!r} has no sub-key {rest!r}")
        return dataclasses.replace(obj, **{head: replace_path(current, rest, text, source, full)})
    where = f"{source} {full}={text}"
    value = _coerce(_hints(type(obj))[head], text, where, from_text=True)
    _check_range(fields[head], value, where)
    return dataclasses.replace(obj, **{head: value})


def to_dict(obj: Any) -> Any:
    """A dataclass as plain JSON/YAML-friendly data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def schema(cls: type) -> list[dict[str, Any]]:
    """The fields of a params dataclass with type, default and declared range, for listings and UIs."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tp = hints[f.name]
        out.append({
            "name": f.name,
            "type": getattr(tp, "__name__", str(tp)),
            "default": to_dict(default),
            **{k: v for k, v in f.metadata.items() if k in ("min", "max", "choices", "help")},
        })
    return out


def read_yaml(cls: type[T], path: Path, what: str) -> T:
    """A config dataclass from a YAML file, strictly (:func:`from_mapping`); its defaults when the file does
    not exist. ``what`` names the file's role in errors ("the studio settings")."""
    import yaml

    if not path.is_file():
        return cls()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc})") from None
    return from_mapping(cls, data, str(path))


def write_yaml(obj: Any, path: Path, what: str) -> Path:
    """Write a config dataclass as YAML, atomically; OutputError naming the file when it cannot be written."""
    import yaml

    from . import atomic
    from .errors import OutputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, yaml.safe_dump(to_dict(obj), sort_keys=False).encode())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write {what} ({exc.strerror or exc})") from None
    return path
