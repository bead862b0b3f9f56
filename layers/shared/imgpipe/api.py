"""What the HTTP API's functions share: who is calling, and error answers in one shape.

Errors use the shape Powertools gives its own (`ServiceError`: 401 from `caller`, 404 for an
unknown route), `{"statusCode": N, "message": "..."}`, so a client reads every error of ours
alike; the gateway's own answers (401 without a token, 403 denied, 429 throttled) carry
`{"message": "..."}` only. docs/openapi.yaml describes both.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError

from imgpipe import keys


def caller(app: APIGatewayHttpResolver) -> str:
    """The user key of the caller our authorizer verified, or a 401 (never the token decoded again)."""
    user = keys.caller_user(app.current_event.request_context.authorizer.get_lambda)
    if user is None:
        # Only reachable when the route is misconfigured without the authorizer.
        raise UnauthorizedError("Unauthorized")
    return user


def error(status: int, message: str) -> Response[str]:
    """An error answer in the shape of Powertools' own (for @app.exception_handler)."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"statusCode": status, "message": message}),
    )
