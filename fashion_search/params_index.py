"""The ``index`` block of ``params.yaml`` (the search engine's settings), checked: backend,
model, Milvus URI and Ray address (host:port, [v6]:port or ray://host:port)."""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from fashion_search.backbone_specs import WEIGHT_CHOICES
from fashion_search.params import (INDEX_BACKENDS, INDEX_EXECUTORS, INDEX_METRICS, INDEX_TYPES, MODEL_RUNTIMES,
                                   ConfigError, IndexParams)
from fashion_search.params_values import choice, integer, mapping, simple_block


def parse_index(raw: Any) -> IndexParams:
    """Validate the ``index`` block (the search engine's settings)."""
    raw = dict(mapping(raw, "index"))
    strings = {"model": None, "weights": WEIGHT_CHOICES, "type": INDEX_TYPES, "metric": INDEX_METRICS,
               "backend": INDEX_BACKENDS, "runtime": MODEL_RUNTIMES,
               "executor": INDEX_EXECUTORS}
    values: dict[str, Any] = {}
    for name, choices in strings.items():
        if name in raw:
            value = raw.pop(name)
            if choices:
                values[name] = choice(value, f"index.{name}", choices)
            elif not isinstance(value, str) or not value:
                raise ConfigError(f"'index.{name}' must be fashion_lite0 (the shipped model), a backbone name or a "
                                  f"model folder, got {value!r}")
            else:
                values[name] = value
    if "image_size" in raw:
        values["image_size"] = integer(raw.pop("image_size"), "index.image_size", minimum=32, allow_none=True)
    if "uri" in raw:
        values["uri"] = parse_milvus_uri(raw.pop("uri"))
    if "ray_address" in raw:
        values["ray_address"] = parse_ray_address(raw.pop("ray_address"))
    return dataclasses.replace(simple_block(IndexParams, raw, "index"), **values)


def parse_milvus_uri(value: Any) -> str | None:
    """``index.uri``: null, a Milvus server's address (http(s)://host:port) or a local path (Milvus Lite)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(not c.isprintable() for c in value):
        raise ConfigError(f"'index.uri' must be a Milvus address such as http://localhost:19530 or a local path "
                          f"such as outputs/milvus.db, got {value!r}")
    value = value.strip()
    if "://" in value and not value.startswith(("http://", "https://", "tcp://")):
        raise ConfigError(f"'index.uri' must start with http://, https:// or tcp:// (or be a local path), got {value!r}")
    return value


def parse_ray_address(value: Any) -> str | None:
    """``index.ray_address``: null (Ray on this machine), "auto", host:port or ray://host:port (an
    IPv6 host in brackets: [::1]:6379)."""
    if value is None:
        return None
    message = f"'index.ray_address' must be null, auto, host:6379, [::1]:6379 or ray://host:10001, got {value!r}"
    if not isinstance(value, str) or not value.strip() or any(not c.isprintable() or c.isspace() for c in value.strip()):
        raise ConfigError(message)
    value = value.strip()
    if "://" in value and not value.startswith("ray://"):
        raise ConfigError(f"'index.ray_address' must start with ray:// when it names a scheme, got {value!r}")
    if value != "auto":
        try:
            ray_host_port(value)
        except ValueError:
            raise ConfigError(message) from None
    return value


def ray_host_port(address: str) -> tuple[str, int]:
    """The host (IPv6 without its brackets) and port of a Ray address host:port, [v6]:port or
    ray://host:port; ValueError unless it is one."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = str(ipaddress.IPv6Address(host[1:-1]))
    elif not host or any(c in host for c in ":[]/@"):
        raise ValueError(f"not a Ray address: {address!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a Ray address port: {address!r}")
    return host, int(port)
