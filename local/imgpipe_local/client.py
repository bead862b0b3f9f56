"""An imgpipe client over plain HTTP, as a browser or app uses the stack: Cognito sign-in,
`POST /avatars/key_upload`, the presigned POST to S3, polling the manifest on the CDN,
`DELETE /avatars`. `imgpipe demo` and the end-to-end tests both drive the stack through it,
against the local stack or a deployed one alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

TIMEOUT = 30  # seconds, for any one HTTP request
DEFAULT_DEV_URL = "http://127.0.0.1:8000"  # `make dev`'s web page
COGNITO_TARGET = "AWSCognitoIdentityProviderService.InitiateAuth"


class StepFailed(Exception):
    """One step of the flow failed; `step` names it (sign-in, key_upload, upload, processing, cdn, delete)."""

    def __init__(self, step: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Target:
    """Where a stack lives: enough to sign in and call it."""

    api_url: str
    cdn_url: str
    cognito_url: str
    client_id: str

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str], cognito_url: str | None = None) -> Target:
        """From CloudFormation-style outputs; Cognito's endpoint follows from the pool's region."""
        if cognito_url is None:
            region = outputs.get("Region") or outputs["UserPoolId"].split("_", 1)[0]
            cognito_url = f"https://cognito-idp.{region}.amazonaws.com/"
        return cls(
            api_url=outputs["ApiUrl"].rstrip("/"),
            cdn_url=outputs["CdnUrl"].rstrip("/"),
            cognito_url=cognito_url,
            client_id=outputs["UserPoolClientId"],
        )


@dataclass(frozen=True)
class Upload:
    """The answer of `POST /avatars/key_upload`."""

    url: str
    fields: dict[str, str]
    key: str
    upload_id: str
    expires_at: str
    max_bytes: int
    avatar_url: str
    manifest_url: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Upload:
        return cls(
            url=body["url"],
            fields=dict(body["fields"]),
            key=body["key"],
            upload_id=body["uploadId"],
            expires_at=body["expiresAt"],
            max_bytes=int(body["maxBytes"]),
            avatar_url=body["avatarUrl"],
            manifest_url=body["manifestUrl"],
        )


@dataclass
class Client:
    target: Target
    session: requests.Session = field(default_factory=requests.Session)

    def _request(self, step: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise StepFailed(step, f"{url} unreachable: {exc}") from exc

    def sign_in(self, username: str, password: str) -> dict[str, Any]:
        """Cognito InitiateAuth (USER_PASSWORD_AUTH); the AuthenticationResult (AccessToken, IdToken…)."""
        auth = {"USERNAME": username, "PASSWORD": password}
        response = self._request(
            "sign-in",
            "POST",
            self.target.cognito_url,
            json={
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": self.target.client_id,
                "AuthParameters": auth,
            },
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": COGNITO_TARGET},
        )
        body = _json_or_empty(response)
        if not response.ok:
            detail = body.get("message") or body.get("__type") or response.text[:200]
            raise StepFailed(
                "sign-in", f"Cognito refused ({response.status_code}): {detail}", response.status_code
            )
        if "AuthenticationResult" not in body:
            raise StepFailed("sign-in", f"Cognito asks for a challenge: {body.get('ChallengeName')}")
        result: dict[str, Any] = body["AuthenticationResult"]
        return result

    def api(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: Mapping[str, str] = {},
    ) -> requests.Response:
        """One raw API call; the caller judges the status (the denial tests need the response as is)."""
        bearer = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.session.request(
            method,
            f"{self.target.api_url}{path}",
            json=json,
            headers={**(headers or {}), **bearer},
            timeout=TIMEOUT,
        )

    def _api_step(self, step: str, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.api(method, path, token=token, **kwargs)
        except requests.RequestException as exc:
            raise StepFailed(step, f"API at {self.target.api_url} unreachable: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise StepFailed(
                step, f"HTTP {response.status_code}: {response.text[:300]}", response.status_code
            )
        return response

    def key_upload(self, token: str, content_type: str = "image/jpeg") -> Upload:
        response = self._api_step(
            "key_upload", "POST", "/avatars/key_upload", token, json={"contentType": content_type}
        )
        return Upload.from_json(response.json())

    def delete(self, token: str) -> None:
        self._api_step("delete", "DELETE", "/avatars", token)

    def upload(
        self, upload: Upload, data: bytes, content_type: str, filename: str = "avatar"
    ) -> requests.Response:
        """The presigned multipart POST: every policy field, then the file (S3 ignores fields after it)."""
        files = {"file": (filename, data, content_type)}
        response = self._request("upload", "POST", upload.url, data=upload.fields, files=files)
        if not 200 <= response.status_code < 300:
            code = re.search(r"<Code>([^<]+)</Code>", response.text)
            detail = code.group(1) if code else response.text[:300]
            raise StepFailed("upload", f"S3 refused ({response.status_code}): {detail}", response.status_code)
        return response

    def manifest(self, manifest_url: str) -> dict[str, Any] | None:
        """The avatar.json status doc, or None before the user's first upload."""
        response = self._request("processing", "GET", manifest_url, headers={"Cache-Control": "no-cache"})
        # CloudFront answers 403 for a missing key when the origin hides absence.
        if response.status_code in (403, 404):
            return None
        if response.status_code != 200:
            raise StepFailed("processing", f"manifest HTTP {response.status_code}", response.status_code)
        manifest: dict[str, Any] = response.json()
        return manifest

    def wait_for_avatar(self, upload: Upload, timeout: float = 60.0, max_poll: float = 1.0) -> dict[str, Any]:
        """Poll the manifest (backing off to `max_poll` s) until it reports this upload; the manifest."""
        deadline, delay = time.monotonic() + timeout, 0.05
        while True:
            last = self.manifest(upload.manifest_url)
            if last is not None and last.get("latest", {}).get("uploadId") == upload.upload_id:
                return last
            if time.monotonic() >= deadline:
                seen = (last or {}).get("latest")
                message = (
                    f"upload {upload.upload_id} not processed after {timeout:.0f}s (manifest latest: {seen})"
                )
                raise StepFailed("processing", message)
            time.sleep(delay)
            delay = min(delay * 1.5, max_poll)

    def cdn_get(self, path_or_url: str) -> requests.Response:
        """GET an asset: a manifest-relative key (avatars/…) or a full URL; the raw response."""
        url = path_or_url if "://" in path_or_url else f"{self.target.cdn_url}/{path_or_url}"
        return self._request("cdn", "GET", url)


def dev_config(web_url: str = DEFAULT_DEV_URL) -> dict[str, Any]:
    """A running `imgpipe dev` stack's endpoints and demo user: its web page's config.json."""
    try:
        response = requests.get(f"{web_url.rstrip('/')}/config.json", timeout=TIMEOUT)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise SystemExit(
            f"no imgpipe dev stack answers at {web_url} ({exc}); start one with `make dev`"
        ) from exc
    config: dict[str, Any] = response.json()
    return config


def renditions(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    avatar = manifest.get("avatar") or {}
    return list(avatar.get("renditions", []))


def rendition(manifest: Mapping[str, Any], name: str, fmt: str = "jpeg") -> dict[str, Any]:
    for entry in renditions(manifest):
        if entry["name"] == name and entry["format"] == fmt:
            return entry
    raise KeyError(f"no {name} {fmt} rendition in the manifest")


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
