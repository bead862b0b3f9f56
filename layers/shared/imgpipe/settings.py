"""Typed settings read once from the environment at cold start.

A missing or malformed variable fails the import with a message naming it, so a
misconfigured deployment shows up as one clear init error rather than as odd
behaviour on the first request.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from typing import Any

_MISSING = object()


class SettingsError(RuntimeError):
    pass


def env(name: str, default: Any = _MISSING, *, parse: Callable[[str], Any] | None = None) -> Any:
    """Declare a dataclass field read from environment variable `name`; no default means required.

    `parse` turns the raw string into the field's value (a ValueError names what is wrong);
    without it the field's type decides (str, int, bool, tuple[str, ...]).
    """
    metadata = {"env": name, "parse": parse}
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _convert(name: str, raw: str, kind: Any, parse: Callable[[str], Any] | None) -> Any:
    if parse is not None:
        try:
            return parse(raw)
        except ValueError as error:
            raise SettingsError(f"{name}: {error}") from None
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
        values[field.name] = _convert(name, raw, hints[field.name], field.metadata.get("parse"))
    try:
        settings = cls(**values)
    except ValueError as error:
        # A dataclass that checks its values in __post_init__ fails the cold start the same way.
        raise SettingsError(f"{cls.__name__}: {error}") from None
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate()
    return settings
