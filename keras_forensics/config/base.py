"""Saving, loading and changing any config dataclass, and the checks every trainer's runtime
fields share (strategy, precision).

Each command line flag of `python -m keras_forensics.train ...` maps to a field of a config
class, and the resolved config is written as config.json beside each run, so a run is described by
its config alone (TF Model Garden's convention). `replace` turns flags into fields.
"""

from __future__ import annotations

import dataclasses
import json
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
    try:
        return dataclasses.replace(config, **direct)
    except TypeError as error:
        raise ForensicsError(str(error)) from None


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
        value = tuple(type(current[0])(v) for v in value) if current else tuple(value)
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
