"""The user's path: sign in, ask for an upload, post the photo, see the avatar on the CDN."""

from __future__ import annotations

import io

from PIL import Image

from imgpipe_local import samples
from imgpipe_local.client import Client, rendition, renditions
from tests.e2e.conftest import E2EStack, served_at_stable_url, upload_and_wait


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_uploaded_photo_is_served_by_the_cdn_in_every_rendition(client: Client, token: str) -> None:
    # Given a photo stored sideways under an EXIF Orientation tag (warm on top as displayed)
    photo = samples.photo_jpeg(1200, 1600, orientation=6)

    # When it is uploaded through a presigned POST
    upload, manifest = upload_and_wait(client, token, photo, "image/jpeg")

    # Then the status doc says ready, and every rendition is served with its type and size
    assert manifest["latest"]["state"] == "ready", manifest["latest"]
    assert manifest["avatar"]["source"]["format"].lower() in {"jpeg", "jpg"}
    entries = renditions(manifest)
    assert {entry["format"] for entry in entries} >= {"jpeg", "webp"}
    for entry in entries:
        for response in (client.cdn_get(entry["url"]), served_at_stable_url(client, entry)):
            assert response.status_code == 200, response.url
            assert response.headers["Content-Type"] == entry["contentType"]
            image = open_image(response.content)
            assert image.format.lower() == entry["format"]
            assert image.size == (entry["width"], entry["height"])
            assert len(response.content) == entry["bytes"]
            # Metadata is stripped: no EXIF (so no GPS, no orientation to apply twice).
            assert not image.getexif()

    # And the avatar URL promised by key_upload is the 512x512 JPEG, upright
    assert upload.avatar_url == f"{client.target.cdn_url}/{rendition(manifest, '512x512')['stableUrl']}"
    avatar = open_image(served_at_stable_url(client, rendition(manifest, "512x512")).content)
    assert avatar.size == (512, 512)
    assert samples.is_warm(avatar.convert("RGB").getpixel((256, 20)))
    assert samples.is_cool(avatar.convert("RGB").getpixel((256, 490)))


def test_cache_headers_follow_the_url_kind(client: Client, token: str) -> None:
    upload, manifest = upload_and_wait(
        client, token, samples.photo_jpeg(400, 300, orientation=1), "image/jpeg"
    )
    entry = rendition(manifest, "256x256")

    versioned = client.cdn_get(entry["url"]).headers["Cache-Control"]
    stable = client.cdn_get(entry["stableUrl"]).headers["Cache-Control"]
    status = client.cdn_get(upload.manifest_url).headers["Cache-Control"]

    assert "immutable" in versioned
    assert "max-age=31536000" in versioned
    assert "immutable" not in stable
    assert "max-age=10" in stable
    assert "no-cache" in status


def test_reupload_shows_the_new_avatar_at_the_same_stable_url(client: Client, token: str) -> None:
    # Given a ready avatar
    _, first = upload_and_wait(client, token, samples.photo_jpeg(800, 600, orientation=1), "image/jpeg")
    stable = rendition(first, "512x512")["stableUrl"]

    # When the user uploads a different picture (a green PNG)
    green = io.BytesIO()
    Image.new("RGB", (640, 640), (30, 200, 60)).save(green, "PNG")
    _, second = upload_and_wait(client, token, green.getvalue(), "image/png")

    # Then the same stable URL serves the new picture, identical to the new versioned copy
    assert second["latest"]["state"] == "ready"
    assert second["avatar"]["version"] != first["avatar"]["version"]
    assert rendition(second, "512x512")["stableUrl"] == stable
    served = served_at_stable_url(client, rendition(second, "512x512")).content
    r, g, b = open_image(served).convert("RGB").getpixel((256, 256))
    assert g > 150 > r
    assert b < 120
    # And the old versioned copy is still there for anyone who cached its URL.
    assert client.cdn_get(rendition(first, "512x512")["url"]).status_code == 200


def test_key_upload_refuses_a_type_the_processor_would_reject(
    stack: E2EStack, client: Client, token: str
) -> None:
    response = client.api(
        "POST",
        "/avatars/key_upload",
        token=token,
        json={"contentType": "text/html"},
        headers={"Origin": stack.origin},
    )

    assert response.status_code == 400
    assert "contentType" in response.text
    assert response.headers.get("Access-Control-Allow-Origin") == stack.origin
