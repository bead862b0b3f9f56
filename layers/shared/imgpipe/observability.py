"""The Powertools logger and tracer every function sets up, set up one way.

- `logger()`: the handler's JSON logger, and the domain modules' stdlib loggers (`imgpipe.*`,
  e.g. `imgpipe.avatars`) writing through it, so their lines carry the same JSON shape, cold
  start flag and request id as the handler's, and name the module that logged them.
- `tracer()`: Powertools' Tracer when tracing is on, else a stand-in whose decorators do nothing.
  Tracer imports the X-Ray SDK even when disabled: ~40 ms CPU of a cold import (~20 ms where boto3
  is loaded anyway), ~75/55 ms without .pyc; the template's `Tracing` parameter turns it off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

PACKAGE = "imgpipe"


def logger() -> Logger:
    """The function's Powertools Logger, its configuration copied to the `imgpipe` package's loggers."""
    handler_logger = Logger()
    # Registered now, so the copy finds it even before any domain module has logged.
    logging.getLogger(PACKAGE)
    # With POWERTOOLS_SERVICE_NAME=imgpipe the handler's logger *is* the package's (the copy then
    # leaves it alone and the domain loggers propagate to it); with any other service name the
    # copy gives the package logger the handler's handler. Either way every line names its logger.
    copy_config_to_registered_loggers(source_logger=handler_logger, include={PACKAGE})
    handler_logger.append_keys(name="%(name)s")
    return handler_logger


class Untraced:
    """Tracer's handler decorator, doing nothing: what a function uses when tracing is off."""

    def capture_lambda_handler(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[..., Any]:
        if lambda_handler is None:
            return lambda handler: handler
        return lambda_handler


def tracing_enabled() -> bool:
    """Powertools' own rule: in Lambda (not SAM local) and not POWERTOOLS_TRACE_DISABLED."""
    return not Tracer._is_tracer_disabled()


def tracer() -> Tracer | Untraced:
    return Tracer() if tracing_enabled() else Untraced()
