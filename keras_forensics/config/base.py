"""Saving, loading and changing any config dataclass, and the checks every trainer's runtime
fields share (strategy, precision).

Each command line flag of `python -m keras_forensics.train ...` maps to a field of a config
class, and the resolved config is written as config.json beside each run, so a run is described by
its config alone (TF Model Garden's convention). `replace` turns flags into fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path

from keras_forensics.errors import ForensicsError

#: Distribution strategies a trainer accepts (`training.common.make_strategy`).
STRATEGIES = ("default", "mirrored", "multiworker")


def check_probabilities(config) -> None:
    """Every `p_*` field of a config dataclass lies in [0, 1] (one clear error otherwise)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
            raise ForensicsError(f"{field.name} must be a probability in [0, 1], got {value}")


def check_strategy(strategy: str) -> None:
    """The RuntimeConfig check shared by every train config: --strategy."""
    if strategy not in STRATEGIES:
        raise ForensicsError(f"--strategy must be default, mirrored or multiworker, got {strategy!r}")


def to_dict(config) -> dict:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls, values: dict):
    """Rebuild a config dataclass from `to_dict` output (nested dataclasses and tuples restored)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def replace(config, **overrides):
    """`dataclasses.replace` with a clear error for unknown fields and dotted nested names.

    `replace(cfg, **{"deformation.p_jpeg": 0.0})` changes a field of a nested config; flat names
    that match exactly one nested field (`p_jpeg=0.0`) are accepted too, so every field is a flag.
    """
    direct, nested = {}, {}
    names = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            if head not in names or not dataclasses.is_dataclass(getattr(config, head)):
                raise ForensicsError(f"unknown option --{key}")
            nested.setdefault(head, {})[rest] = value
        elif key in names:
            direct[key] = _coerce(getattr(config, key), value, key, hints.get(key))
        else:
            owners = [
                n for n, f in names.items()
                if dataclasses.is_dataclass(getattr(config, n))
                and key in {g.name for g in dataclasses.fields(getattr(config, n))}
            ]
            if len(owners) != 1:
                known = ", ".join(sorted(names))
                raise ForensicsError(f"unknown option --{key} (known: {known})")
            nested.setdefault(owners[0], {})[key] = value
    for head, values in nested.items():
        direct[head] = replace(getattr(config, head), **values)
    for key, value in direct.items():
        if not dataclasses.is_dataclass(value):
            check_field(key, value, hints.get(key))
    try:
        return dataclasses.replace(config, **direct)
    except TypeError as error:
        raise ForensicsError(str(error)) from None


def check_field(name: str, value, hint) -> None:
    """ForensicsError naming --`name` unless `value` has the type of its annotation `hint` and a
    sensible range: numbers are finite and not negative, except in a `*_range` field, whose (low,
    high) may be negative but must be ordered. The one check of every flag, before a trainer
    writes anything (the per-config `__post_init__` checks add what only they know)."""
    if not _has_type(value, hint):
        raise ForensicsError(f"--{name} takes {_type_name(hint)}, got {value!r}")
    numbers = [v for v in (value if isinstance(value, tuple) else (value,))
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not all(math.isfinite(v) for v in numbers):
        raise ForensicsError(f"--{name} must be finite, got {value!r}")
    if name.endswith("_range"):
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            raise ForensicsError(f"--{name} is (low, high) with low <= high, got {value!r}")
    elif any(v < 0 for v in numbers):
        raise ForensicsError(f"--{name} must not be negative, got {value!r}")


def _has_type(value, hint) -> bool:
    if hint is None or hint is typing.Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_has_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(_has_type(v, a) for v, a in zip(value, args))
    return True  # nested configs and other annotations are checked where they are defined


def _type_name(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is tuple:
        inner = _type_name(args[0]) if args else "a value"
        return f"a comma-separated list ({inner} each)" if Ellipsis in args else f"{len(args)} values ({inner} each)"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a word",
            type(None): "nothing"}.get(hint, str(hint))


def _coerce(current, value, name, hint=None):
    """Make a CLI value match the type of the field it sets (fire parses '1' as int, '1,2' as tuple).

    A `tuple[X, ...]` field takes any number of values; a `tuple[X, Y]` field exactly that many.
    """
    if isinstance(current, bool):
        if isinstance(value, str):
            value = value.lower() in ("1", "true", "yes")
        return bool(value)
    if isinstance(current, tuple):
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if isinstance(value, (str, int, float)):
            value = (value,)
        try:
            value = tuple(type(current[0])(v) for v in value) if current else tuple(value)
        except (TypeError, ValueError):
            raise ForensicsError(f"--{name} takes {_type_name(hint or type(current))}, got {value!r}") from None
        variable = Ellipsis in typing.get_args(hint) or not current
        if not variable and len(value) != len(current):
            raise ForensicsError(f"--{name} takes {len(current)} values, got {len(value)}")
        return value
    if isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ForensicsError(f"--{name} takes a whole number, got {value!r}")
    return value


def save(config, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load(cls, path: str | Path):
    return from_dict(cls, json.loads(Path(path).read_text()))
