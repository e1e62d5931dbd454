"""Frozen dataclass configs loaded from YAML, overridable from the command line.

One frozen dataclass per component (``SimConfig``, ``ModelConfig``, ``FusionConfig``...). A job config nests the
components it needs, and each component receives only its own section. Values come from, in order: the
dataclass defaults, a YAML file under ``configs/``, then ``key=value`` overrides (dotted keys for nested
sections, values parsed as YAML). Unknown keys are rejected with the list of valid ones, and the resolved
config is written next to every output with :func:`save_config`.

Example::

    cfg = load_config(TrainConfig, "configs/cspdh_synthetic.yaml", ["optim.lr=3e-4", "model.name=resnet18"])
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit the config dataclass."""


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from its defaults, an optional YAML file and ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml_mapping(path)
    merged = deep_merge(data, parse_overrides(overrides))
    return from_dict(cls, merged)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=3", "c=[1, 2]"]`` into ``{"a": {"b": 3}, "c": [1, 2]}`` (values parsed as YAML)."""
    result: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} sets a key below {part!r}, which is not a section")
        node[parts[-1]] = value
    return result


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively by ``update`` (neither is modified)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and converting values to the field types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(_join(where, k) for k in unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, _join(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err


def with_overrides(cfg: T, overrides: Mapping[str, Any]) -> T:
    """A copy of config ``cfg`` with ``overrides`` merged in recursively (checked like a loaded file)."""
    return from_dict(type(cfg), deep_merge(to_dict(cfg), overrides))


def to_dict(cfg: Any) -> Any:
    """Plain YAML-safe structure (dicts, lists, scalars) of a config dataclass."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, enum.Enum):
        return cfg.value
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (``config.yaml`` next to a run's outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    return path


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """Add ``--config PATH``, repeatable ``--set key=value`` and trailing ``key=value`` overrides."""
    parser.add_argument("--config", default=default_config, help="YAML config file (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    parser.add_argument("extra_overrides", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides")


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Load ``cls`` from the arguments added by :func:`add_config_arguments`."""
    return load_config(cls, args.config, [*args.overrides, *args.extra_overrides])


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to type ``tp``; raise ConfigError naming ``where`` if it does not fit."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(args, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _convert_enum(tp, value, where)
    if origin in (tuple, list) or tp in (tuple, list):
        return _convert_sequence(tp, origin or tp, args, value, where)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return _convert_scalar(tp, value, where)


def _convert_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for option in (a for a in args if a is not type(None)):
        try:
            return _convert(option, value, where)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(f"{where}: {value!r} fits none of the allowed types ({'; '.join(errors)})")


def _convert_enum(tp: type[enum.Enum], value: Any, where: str) -> enum.Enum:
    try:
        return value if isinstance(value, tp) else tp(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not one of {[m.value for m in tp]}") from None


def _convert_sequence(tp: Any, origin: type, args: tuple[Any, ...], value: Any, where: str) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    item_type = args[0] if args else Any
    items = [_convert(item_type, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _parse_number(tp: type, text: str, where: str) -> Any:
    """YAML 1.1 reads ``3e-4`` as a string; accept numbers written that way."""
    try:
        return tp(text)
    except ValueError:
        raise ConfigError(f"{where}: expected {tp.__name__}, got {text!r}") from None


def _convert_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, str):
        return _parse_number(tp, value, where)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is Path and isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
