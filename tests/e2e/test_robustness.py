"""What S3 and users throw at the pipeline: repeated events, hostile files, erasure."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from imgpipe import keys
from imgpipe_local import samples
from imgpipe_local.client import Client, rendition, renditions
from tests.e2e.conftest import (
    GONE_SECONDS,
    E2EStack,
    s3_event_for_latest,
    served_at_stable_url,
    upload_and_wait,
    wait_until,
)


def test_a_duplicate_s3_notification_changes_nothing(
    stack: E2EStack, client: Client, token: str, user: str
) -> None:
    # Given a processed upload, settled (the processor copies to the stable URLs after it
    # publishes avatar.json)
    upload, manifest = upload_and_wait(
        client, token, samples.photo_jpeg(600, 800, orientation=8), "image/jpeg"
    )
    stable = {
        entry["stableUrl"]: served_at_stable_url(client, entry).content for entry in renditions(manifest)
    }
    stack.settle()
    written = asset_timestamps(stack, user)
    # S3 timestamps (and the manifest's "at") have whole seconds: let one pass so that a
    # rewrite of identical bytes would still show.
    time.sleep(1.1)

    # When S3 delivers the very same event again (at-least-once delivery)
    event = s3_event_for_latest(stack, user, manifest["sequencer"])
    stack.redeliver(event)
    stack.settle()

    # Then the status doc and the served renditions are as they were, and nothing was rewritten
    assert client.manifest(upload.manifest_url) == manifest
    for url, data in stable.items():
        assert client.cdn_get(url).content == data
    assert asset_timestamps(stack, user) == written

    # (Control: the same event with a newer sequencer does reach the processor and is applied.)
    newer = manifest["sequencer"] + "1"
    event["Records"][0]["s3"]["object"]["sequencer"] = newer
    stack.redeliver(event)
    wait_until(
        lambda: client.manifest(upload.manifest_url)["sequencer"] == newer, what="the newer event applied"
    )


def test_an_older_upload_arriving_late_does_not_replace_the_newer_avatar(
    stack: E2EStack, client: Client, token: str, user: str
) -> None:
    # Given two uploads, processed in order
    _, older = upload_and_wait(client, token, samples.photo_jpeg(500, 500, orientation=1), "image/jpeg")
    older_version = stack.s3.head_object(Bucket=stack.uploads_bucket, Key=keys.upload_key(user))["VersionId"]
    upload, newer = upload_and_wait(client, token, samples.photo_jpeg(500, 500, orientation=3), "image/jpeg")
    assert newer["avatar"]["version"] != older["avatar"]["version"]

    # When the first upload's event is delivered again, late
    stack.redeliver(s3_event_for_latest(stack, user, older["sequencer"], older_version))
    stack.settle()

    # Then the newer avatar stays, in the status doc and at the stable URL
    assert client.manifest(upload.manifest_url) == newer
    served_at_stable_url(client, rendition(newer, "512x512"))


def test_uploads_in_quick_succession_end_with_the_last_one(
    stack: E2EStack, client: Client, token: str
) -> None:
    # Given three uploads sent back to back, without waiting for any to be processed
    uploads = []
    for orientation in (1, 3, 6):
        upload = client.key_upload(token, "image/jpeg")
        client.upload(upload, samples.photo_jpeg(400, 400, orientation=orientation), "image/jpeg")
        uploads.append(upload)

    # When the last one is reported
    final = client.wait_for_avatar(uploads[-1])

    # Then it is the avatar, and stays so once everything in flight has landed
    assert final["latest"]["state"] == "ready"
    stack.settle()
    assert client.manifest(uploads[-1].manifest_url)["latest"]["uploadId"] == uploads[-1].upload_id
    served_at_stable_url(client, rendition(final, "512x512"))


def asset_timestamps(stack: E2EStack, user: str) -> dict[str, object]:
    listing = stack.s3.list_objects_v2(
        Bucket=stack.outputs["AssetsBucketName"], Prefix=keys.user_prefix(user)
    )
    return {entry["Key"]: (entry["LastModified"], entry["ETag"]) for entry in listing.get("Contents", [])}


@pytest.mark.parametrize(
    ("data", "content_type", "reasons"),
    [
        pytest.param(
            samples.not_an_image(), "image/jpeg", {"not_an_image", "unsupported_format"}, id="text-as-jpeg"
        ),
        pytest.param(samples.png_bomb(), "image/png", {"too_many_pixels"}, id="decompression-bomb-png"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image/jpeg", None, id="truncated-jpeg"),
    ],
)
def test_a_hostile_upload_is_rejected_and_the_stack_keeps_serving(
    stack: E2EStack,
    client: Client,
    token: str,
    user: str,
    data: bytes,
    content_type: str,
    reasons: set | None,
) -> None:
    # Given a good avatar
    _, before = upload_and_wait(client, token, samples.photo_jpeg(400, 400, orientation=1), "image/jpeg")

    # When a hostile file is uploaded in its place
    upload, manifest = upload_and_wait(client, token, data, content_type)

    # Then the status doc says rejected, with a reason and a message fit for the user,
    latest = manifest["latest"]
    assert latest["state"] == "rejected"
    assert latest["message"]
    if reasons is not None:
        assert latest["reason"] in reasons
    # the avatar shown is still the previous one,
    assert manifest["avatar"] == before["avatar"]
    assert client.cdn_get(rendition(before, "512x512")["stableUrl"]).status_code == 200
    # the original is kept, tagged with why it was refused,
    head = stack.s3.head_object(Bucket=stack.uploads_bucket, Key=keys.upload_key(user))
    assert head["Metadata"].get("upload-id") == upload.upload_id
    tags = stack.s3.get_object_tagging(
        Bucket=stack.uploads_bucket, Key=keys.upload_key(user), VersionId=head["VersionId"]
    )["TagSet"]
    assert {"Key": "imgpipe-status", "Value": "rejected"} in tags
    assert {"Key": "imgpipe-reason", "Value": latest["reason"]} in tags

    # And a good upload afterwards works
    _, after = upload_and_wait(client, token, samples.photo_jpeg(300, 300, orientation=1), "image/jpeg")
    assert after["latest"]["state"] == "ready"
    assert client.cdn_get(rendition(after, "128x128")["url"]).status_code == 200


def test_delete_removes_the_avatar_and_every_original(
    stack: E2EStack, client: Client, token: str, user: str
) -> None:
    # Given an avatar made from two uploads
    upload_and_wait(client, token, samples.photo_jpeg(300, 400, orientation=1), "image/jpeg")
    png = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 10, 200)).save(png, "PNG")
    upload, manifest = upload_and_wait(client, token, png.getvalue(), "image/png")
    urls = [entry["url"] for entry in renditions(manifest)] + [
        entry["stableUrl"] for entry in renditions(manifest)
    ]

    # When the user deletes it
    client.delete(token)

    # Then the CDN no longer serves the status doc or any rendition (a deployed CloudFront
    # drops its cached copies once the invalidation completes, hence the wait)
    wait_until(
        lambda: client.manifest(upload.manifest_url) is None,
        what="avatar.json gone from the CDN",
        timeout=GONE_SECONDS,
    )
    for url in urls:
        wait_until(
            lambda url=url: client.cdn_get(url).status_code in (403, 404),
            what=f"{url} gone from the CDN",
            timeout=GONE_SECONDS,
        )
    # and no version of any original is left in the uploads bucket
    versions = stack.s3.list_object_versions(Bucket=stack.uploads_bucket, Prefix=keys.user_prefix(user))
    assert versions.get("Versions", []) == []
    assert versions.get("DeleteMarkers", []) == []

    # And deleting again is harmless
    client.delete(token)
