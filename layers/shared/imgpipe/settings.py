"""Typed settings read once from the environment at cold start.

A missing or malformed variable fails the import with a message naming it, so a
misconfigured deployment shows up as one clear init error rather than as odd
behaviour on the first request.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any

_MISSING = object()


class SettingsError(RuntimeError):
    pass


def env(name: str, default: Any = _MISSING) -> Any:
    """Declare a dataclass field read from environment variable `name`; no default means required."""
    if default is _MISSING:
        return dataclasses.field(metadata={"env": name})
    return dataclasses.field(default=default, metadata={"env": name})


def _convert(name: str, raw: str, kind: Any) -> Any:
    if kind is str:
        return raw
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    raise SettingsError(f"{name}: unsupported settings type {kind!r}")


def load[T](cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build settings dataclass `cls` from `environ` (default: os.environ).

    Empty strings count as unset: CloudFormation cannot omit an environment
    variable conditionally, so optional parameters arrive as "".
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.metadata.get("env")
        if name is None:
            continue
        raw = environ.get(name, "")
        if raw == "":
            if field.default is not dataclasses.MISSING:
                continue
            raise SettingsError(f"environment variable {name} is required")
        values[field.name] = _convert(name, raw, hints[field.name])
    settings = cls(**values)
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate()
    return settings
