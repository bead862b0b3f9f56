"""HTTP API Lambda authorizer (payload 2.0, simple responses): verify the Bearer JWT, pass on its sub.

Every failure is a deny, never an error: API Gateway answers a deny with a 403 carrying the API's
CORS headers (a request without the header gets a 401 before this runs), where an authorizer
error would be a 500 the browser cannot even read.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponseV2,
)
from aws_lambda_powertools.utilities.data_classes.common import CaseInsensitiveDict
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgpipe.jwt_verify import AuthorizerSettings, JwtVerifier, TokenRejected, bearer_token, jwks_cache
from imgpipe.settings import load

settings = load(AuthorizerSettings)
config = settings.verifier_config()
verifier = JwtVerifier(config, jwks_cache(config.jwks_url))
logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        headers = CaseInsensitiveDict(event.get("headers") or {})
        claims = verifier.verify(bearer_token(headers.get("authorization")))
    except TokenRejected as rejected:
        logger.info("denied", extra={"reason": rejected.reason, "detail": str(rejected)})
        return APIGatewayAuthorizerResponseV2(authorize=False).asdict()
    except Exception:
        # A bug or an odd event must still answer deny: an authorizer error becomes a 500.
        logger.exception("denied", extra={"reason": "internal_error"})
        return APIGatewayAuthorizerResponseV2(authorize=False).asdict()
    username = claims.get("username") or claims.get("cognito:username") or ""
    return APIGatewayAuthorizerResponseV2(
        authorize=True, context={"sub": claims["sub"], "username": username}
    ).asdict()
