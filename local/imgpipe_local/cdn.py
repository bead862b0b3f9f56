"""The CDN in front of the assets bucket: what CloudFront + the template's ResponseHeadersPolicy serve.

Differences from CloudFront, on purpose: a missing object is a 404 here (CloudFront with OAC
and no s3:ListBucket answers 403), and nothing is cached, so every request reads the bucket,
which is what a browser sees after a `no-cache` revalidation anyway.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from imgpipe_local.cors import is_preflight
from imgpipe_local.httpserver import Request, Response
from imgpipe_local.template import CdnConfig

log = logging.getLogger("imgpipe_local")


def _etag_matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


class Cdn:
    """An App for LocalServer serving GET/HEAD /<key> from the bucket behind the distribution."""

    def __init__(self, config: CdnConfig, s3: Any) -> None:
        self.config = config
        self.s3 = s3

    def _policy_headers(self, request: Request) -> list[tuple[str, str]]:
        headers = list(self.config.headers.items())
        cors = self.config.cors
        if cors is not None:
            headers.extend(cors.headers(request.header("Origin")))
        if cors is not None and not any(k == "Vary" for k, _ in headers):
            # Without it a browser may reuse a copy fetched without Origin for a CORS request.
            headers.append(("Vary", "Origin"))
        return headers

    def handle(self, request: Request) -> Response:
        cors = self.config.cors
        if request.method == "OPTIONS" and cors is not None and is_preflight(request):
            return self._preflight(request)
        if request.method not in ("GET", "HEAD"):
            return Response(
                405, [("Allow", "GET, HEAD"), *self._policy_headers(request)], b"Method Not Allowed"
            )
        key = unquote(request.path.lstrip("/"))
        response = self._object(request, key)
        response.headers.extend(self._policy_headers(request))
        log.info("CDN %s /%s -> %d", request.method, key, response.status)
        return response

    def _preflight(self, request: Request) -> Response:
        assert self.config.cors is not None
        granted = self.config.cors.preflight_headers(request)
        if granted is None:
            return Response(403, list(self.config.headers.items()))
        return Response(200, [*self.config.headers.items(), *granted])

    def _object(self, request: Request, key: str) -> Response:
        if not key:
            return Response(404, [("Content-Type", "text/plain")], b"Not Found")
        try:
            obj = self.s3.get_object(Bucket=self.config.bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return Response(404, [("Content-Type", "text/plain")], b"Not Found")
            raise
        body = obj["Body"].read()
        etag = obj["ETag"]
        headers = [
            ("ETag", etag),
            ("Last-Modified", obj["LastModified"].strftime("%a, %d %b %Y %H:%M:%S GMT")),
        ]
        if obj.get("CacheControl"):
            headers.append(("Cache-Control", obj["CacheControl"]))
        if_none_match = request.header("If-None-Match")
        if if_none_match and _etag_matches(if_none_match, etag):
            return Response(304, headers)
        headers.append(("Content-Type", obj.get("ContentType") or "binary/octet-stream"))
        headers.append(("Content-Length", str(len(body))))
        return Response(200, headers, body)
