"""One value of ``params.yaml`` checked: its type, range or allowed choices, and a block of
scalar fields checked against its dataclass's defaults. Every error names the key
(``finetune.frozen_epochs``) and what is allowed, so all blocks' messages read alike."""
from __future__ import annotations

import dataclasses
from typing import Any

from fashion_search.params import ConfigError


def check_keys(raw: dict, allowed: set[str], where: str) -> None:
    """Refuse a key the block does not have, naming the keys it has."""
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key '{key_path(where, unknown[0])}'; allowed keys here: {', '.join(sorted(allowed))}"
        )


def key_path(where: str, key: str) -> str:
    """A key as the messages name it: ``block.key``."""
    return f"{where}.{key}" if where else key


def mapping(value: Any, key: str) -> dict:
    """A block: a mapping (an empty one when the YAML gives none)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"'{key}' must be a mapping of keys to values, got {type(value).__name__}")
    return value


def integer(value: Any, key: str, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """An integer (not a boolean) of at least ``minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"'{key}' must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"'{key}' must be at least {minimum}, got {value}")
    return value


def number(value: Any, key: str, low: float, high: float) -> float:
    """A number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"'{key}' must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"'{key}' must be between {low} and {high}, got {value}")
    return float(value)


def boolean(value: Any, key: str) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    return value


def choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ConfigError(f"'{key}' must be one of {', '.join(choices)}; got {value!r}")
    return value


# Allowed ranges of the scalar fields that are not simply "a positive integer".
RANGES: dict[str, tuple[float, float]] = {
    "finetune.frozen_epochs": (0, 10_000),
    "finetune.unfrozen_epochs": (0, 10_000),
    "finetune.type_hidden": (0, 65_536),
    "finetune.learning_rate": (1e-9, 1.0),
    "finetune.unfrozen_learning_rate": (1e-9, 1.0),
    "finetune.unfreeze_fraction": (0.0, 1.0),
    "finetune.dropout": (0.0, 0.95),
    "finetune.margin": (0.0, 1.0),
    "finetune.scale": (1.0, 128.0),
    "index.memory_budget_gb": (0.01, 1e6),
    "index.flat_max_items": (0, 1e12),
    "index.exact_filter_rows": (0, 1e12),
    "index.lock_wait_s": (0.0, 3600.0),
    "index.ray_actors": (0, 100_000),
    "index.ray_min_photos": (0, 1e12),
}


def simple_block(cls: type, raw: Any, where: str) -> Any:
    """Build a dataclass of scalar fields, type-checked against its defaults."""
    raw = mapping(raw, where)
    fields = {f.name for f in dataclasses.fields(cls)}
    check_keys(raw, fields, where)
    defaults = cls()
    values = {}
    for name, value in raw.items():
        key, default = key_path(where, name), getattr(defaults, name)
        low, high = RANGES.get(key, (1, float("inf")))
        if isinstance(default, bool):
            values[name] = boolean(value, key)
        elif isinstance(default, int):
            values[name] = integer(value, key, minimum=int(low))
        else:
            values[name] = number(value, key, low, high)
    return cls(**values)
