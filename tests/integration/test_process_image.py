"""functions/process_image against moto: real S3 calls, real Pillow on generated images."""

from __future__ import annotations

import copy
import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from PIL import Image

from imgpipe import avatars, keys
from imgpipe.settings import SettingsError
from imgpipe_local.handlers import load_module
from tests.aws_support import create_avatar_buckets, use_test_aws
from tests.conftest import ROOT, load_event

UPLOADS = "imgpipe-uploads-123456789012"
ASSETS = "imgpipe-assets-test"
MAX_UPLOAD_BYTES = 300_000
USER = "3f1c2a9e-8b7d-4e6f-9a01-23456789abcd"
RENDITION_NAMES = ("128x128", "64x64")
FILES = tuple(f"{name}.{ext}" for name in RENDITION_NAMES for ext in ("jpg", "webp"))
SEQ = ["0066A4E39C2F8B1D27", "0066A4E39C2F8B1D28", "0066A4E39C2F8B1D29", "0066A4E39C2F8B1E"]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_test_aws(
        monkeypatch,
        POWERTOOLS_SERVICE_NAME="imgpipe",
        POWERTOOLS_METRICS_NAMESPACE="imgpipe",
        UPLOADS_BUCKET=UPLOADS,
        ASSETS_BUCKET=ASSETS,
        MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
        MAX_IMAGE_PIXELS="50000000",
        RENDITIONS="128x128:cover,64x64:contain",
        OUTPUT_FORMATS="jpeg,webp",
        JPEG_QUALITY="80",
        WEBP_QUALITY="75",
    )
    with mock_aws():
        s3 = boto3.client("s3")
        create_avatar_buckets(s3, UPLOADS, ASSETS)
        yield s3


@pytest.fixture
def app(aws: Any) -> ModuleType:
    """functions/process_image/app.py, imported fresh inside moto with the test's environment."""
    return load_module(ROOT / "functions/process_image")


def image_bytes(color: tuple[int, int, int], size: tuple[int, int] = (640, 480), fmt: str = "JPEG") -> bytes:
    image = Image.new("RGB", size, color)
    # A gradient band so encoders have real content, not a flat fill.
    for x in range(size[0]):
        image.putpixel((x, size[1] // 2), (x % 256, 255 - x % 256, 128))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid-looking PNG header claiming 3.6 gigapixels with a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def upload(s3: Any, data: bytes, upload_id: str, user: str = USER) -> dict[str, Any]:
    """Put an original as the presigned POST would and describe it like S3's event does."""
    key = keys.upload_key(user)
    put = s3.put_object(
        Bucket=UPLOADS, Key=key, Body=data, ContentType="image/jpeg", Metadata={"upload-id": upload_id}
    )
    return {"key": key, "version_id": put["VersionId"], "etag": put["ETag"].strip('"'), "size": len(data)}


def s3_event(obj: dict[str, Any], sequencer: str, *, bucket: str = UPLOADS, size: int | None = None) -> dict:
    event = load_event("process_image_put")
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"] = {
        "key": quote_plus(obj["key"], safe="/"),
        "size": obj["size"] if size is None else size,
        "eTag": obj["etag"],
        "versionId": obj["version_id"],
        "sequencer": sequencer,
    }
    return event


def manifest(s3: Any, user: str = USER) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=ASSETS, Key=keys.manifest_key(user))["Body"].read())


def assets_snapshot(s3: Any) -> dict[str, tuple[str, Any]]:
    listing = s3.list_objects_v2(Bucket=ASSETS).get("Contents", [])
    return {item["Key"]: (item["ETag"], item["LastModified"]) for item in listing}


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """Every `operation` call the client makes from now on, with its parameters."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.s3.{operation}", lambda params, **_: calls.append(params)
    )
    return calls


class _CountingBody:
    def __init__(self, body: Any, reads: list[int]) -> None:
        self._body, self._reads = body, reads

    def read(self, amount: int | None = None) -> bytes:
        data = self._body.read(amount)
        self._reads.append(len(data))
        return data

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _CountingBody:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def bytes_read(client: Any, bucket: str) -> list[int]:
    """The size of every read from a GetObject body of `bucket` the client makes from now on."""
    reads: list[int] = []

    def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["imgpipe-bucket"] = params.get("Bucket")

    def wrap(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("imgpipe-bucket") == bucket and "Body" in parsed:
            parsed["Body"] = _CountingBody(parsed["Body"], reads)

    client.meta.events.register("provide-client-params.s3.GetObject", remember)
    client.meta.events.register("after-call.s3.GetObject", wrap)
    return reads


def on_first(
    client: Any, operation: str, predicate: Callable[[dict], bool], action: Callable[[], None]
) -> None:
    """Run `action` (another writer) just before the client's first matching call goes out."""
    fired: list[bool] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if not fired and predicate(params):
            fired.append(True)
            action()

    client.meta.events.register(f"provide-client-params.s3.{operation}", hook)


def stable_matches(s3: Any, version: str, user: str = USER) -> bool:
    body = s3.get_object(Bucket=ASSETS, Key=keys.stable_key(user, FILES[0]))["Body"].read()
    expected = s3.get_object(Bucket=ASSETS, Key=keys.versioned_key(user, version, FILES[0]))["Body"].read()
    return body == expected


def emitted_metrics(output: str) -> dict[str, list[tuple[float, dict[str, str]]]]:
    """EMF metric values printed by Powertools, by name, with their dimensions."""
    found: dict[str, list[tuple[float, dict[str, str]]]] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dimensions = {name: blob[name] for group in directive["Dimensions"] for name in group}
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    found.setdefault(metric["Name"], []).append((value, dimensions))
    return found


# ---------------------------------------------------------------- the happy path


def test_upload_becomes_versioned_and_stable_renditions_and_a_manifest(aws, app, lambda_context, capsys):
    # Given an uploaded JPEG
    original = image_bytes((200, 30, 30))
    obj = upload(aws, original, "upload-1")

    # When S3 reports it
    result = app.lambda_handler(s3_event(obj, SEQ[0]), lambda_context)

    # Then every rendition exists twice, with the right headers
    [outcome] = result["outcomes"]
    assert outcome["status"] == "processed"
    version = outcome["version"]
    doc = manifest(aws)
    assert doc["schema"] == 1
    assert doc["user"] == USER
    assert doc["sequencer"] == SEQ[0]
    assert doc["latest"]["uploadId"] == "upload-1"
    assert doc["latest"]["state"] == "ready"
    assert doc["avatar"]["version"] == version
    assert doc["avatar"]["source"] == {"format": "jpeg", "width": 640, "height": 480}
    assert doc["avatar"]["placeholder"].startswith("data:image/")
    assert sorted(r["stableUrl"] for r in doc["avatar"]["renditions"]) == sorted(
        keys.stable_key(USER, name) for name in FILES
    )
    for rendition in doc["avatar"]["renditions"]:
        versioned = aws.get_object(Bucket=ASSETS, Key=rendition["url"])
        stable = aws.get_object(Bucket=ASSETS, Key=rendition["stableUrl"])
        assert rendition["url"] == keys.versioned_key(USER, version, rendition["stableUrl"].rsplit("/", 1)[1])
        assert versioned["ContentType"] == stable["ContentType"] == rendition["contentType"]
        assert versioned["CacheControl"] == "public, max-age=31536000, immutable"
        assert stable["CacheControl"] == "public, max-age=10"
        data = versioned["Body"].read()
        assert stable["Body"].read() == data
        assert len(data) == rendition["bytes"]
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == {"jpeg": "JPEG", "webp": "WEBP"}[rendition["format"]]
            assert image.size == (rendition["width"], rendition["height"])
    head = aws.head_object(Bucket=ASSETS, Key=keys.manifest_key(USER))
    assert head["ContentType"] == "application/json"
    assert head["CacheControl"] == "no-cache"
    # And the original is untouched
    assert (
        aws.get_object(Bucket=UPLOADS, Key=obj["key"], VersionId=obj["version_id"])["Body"].read() == original
    )
    assert aws.get_object_tagging(Bucket=UPLOADS, Key=obj["key"], VersionId=obj["version_id"])["TagSet"] == []

    metrics = emitted_metrics(capsys.readouterr().out)
    assert [value for value, _ in metrics["Processed"]] == [1.0]
    assert metrics["BytesIn"][0][0] == len(original)
    assert metrics["BytesOut"][0][0] == sum(r["bytes"] for r in doc["avatar"]["renditions"])
    assert metrics["ProcessingTime"][0][0] > 0
    assert "Rejected" not in metrics


def test_url_encoded_key_is_decoded(aws, app, lambda_context):
    # Given a subject whose key S3 URL-encodes in events ('@' -> %40)
    user = "jane@example.com"
    obj = upload(aws, image_bytes((20, 120, 220)), "upload-jane", user=user)
    event = load_event("process_image_put_encoded_key")
    assert event["Records"][0]["s3"]["object"]["key"] == "avatars/jane%40example.com/original"
    event["Records"][0]["s3"]["object"].update(
        versionId=obj["version_id"], eTag=obj["etag"], size=obj["size"]
    )

    [outcome] = app.lambda_handler(event, lambda_context)["outcomes"]

    assert outcome["status"] == "processed"
    assert manifest(aws, user)["latest"]["uploadId"] == "upload-jane"
    assert aws.head_object(Bucket=ASSETS, Key=f"avatars/{user}/128x128.jpg")["ContentType"] == "image/jpeg"


# ---------------------------------------------------------------- at-least-once, out of order, concurrent


def test_duplicate_event_changes_nothing(aws, app, lambda_context, capsys):
    obj = upload(aws, image_bytes((10, 200, 10)), "upload-1")
    event = s3_event(obj, SEQ[0])
    # The original is asked for alongside avatar.json (one round trip), but only a run that
    # processes it reads its body.
    original_reads = bytes_read(app.s3, UPLOADS)
    app.lambda_handler(event, lambda_context)
    assert sum(original_reads) == obj["size"]
    original_reads.clear()
    before = assets_snapshot(aws)
    writes = count_calls(app.s3, "PutObject") + count_calls(app.s3, "CopyObject")
    capsys.readouterr()

    [outcome] = app.lambda_handler(copy.deepcopy(event), lambda_context)["outcomes"]

    assert (outcome["status"], outcome["reason"]) == ("skipped", "duplicate")
    assert writes == []
    assert sum(original_reads) == 0, "the original must not be downloaded again"
    assert assets_snapshot(aws) == before
    metrics = emitted_metrics(capsys.readouterr().out)
    assert sorted((value, dims.get("reason", "")) for value, dims in metrics["Skipped"]) == [
        (1.0, ""),
        (1.0, "duplicate"),
    ]


def test_duplicate_repairs_stable_copies_a_crash_left_behind(aws, app, lambda_context):
    # Given an event whose commit landed, then the run crashed checking its stable copies
    # after an older writer had overwritten them
    first = upload(aws, image_bytes((10, 200, 10)), "upload-1")
    app.lambda_handler(s3_event(first, SEQ[0]), lambda_context)
    old_version = manifest(aws)["avatar"]["version"]
    second = upload(aws, image_bytes((10, 10, 200)), "upload-2")
    failing = boto3.client("s3")

    def older_writer_then_crash(params: dict[str, Any], **_: Any) -> None:
        for name in FILES:
            aws.copy_object(
                Bucket=ASSETS,
                Key=keys.stable_key(USER, name),
                CopySource={"Bucket": ASSETS, "Key": keys.versioned_key(USER, old_version, name)},
                MetadataDirective="REPLACE",
                Metadata={"imgpipe-version": old_version},
            )
        raise ConnectionError("simulated crash after the commit")

    failing.meta.events.register("provide-client-params.s3.HeadObject", older_writer_then_crash)
    with pytest.raises(ConnectionError):
        avatars.handle_upload(failing, app.CONFIG, sequencer=SEQ[1], **second)
    version = manifest(aws)["avatar"]["version"]
    assert manifest(aws)["latest"]["uploadId"] == "upload-2"
    assert not stable_matches(aws, version)

    # When S3 retries the event
    [outcome] = app.lambda_handler(s3_event(second, SEQ[1]), lambda_context)["outcomes"]

    # Then nothing is reprocessed, but the stable URLs now show the committed avatar
    assert (outcome["status"], outcome["reason"]) == ("skipped", "duplicate")
    for name in FILES:
        head = aws.head_object(Bucket=ASSETS, Key=keys.stable_key(USER, name))
        assert head["Metadata"]["imgpipe-version"] == version
        assert head["CacheControl"] == "public, max-age=10"
    assert stable_matches(aws, version)


def test_older_event_after_newer_is_skipped(aws, app, lambda_context):
    # Given two uploads, whose events arrive newest first
    older = upload(aws, image_bytes((250, 250, 0)), "upload-old")
    newer = upload(aws, image_bytes((0, 250, 250)), "upload-new")
    [first] = app.lambda_handler(s3_event(newer, SEQ[1]), lambda_context)["outcomes"]
    snapshot = assets_snapshot(aws)

    # When the older event arrives late
    [late] = app.lambda_handler(s3_event(older, SEQ[0]), lambda_context)["outcomes"]

    # Then it changes nothing: the newer avatar stays, at its stable URLs too
    assert first["status"] == "processed"
    assert (late["status"], late["reason"]) == ("skipped", "stale")
    doc = manifest(aws)
    assert doc["latest"]["uploadId"] == "upload-new"
    assert doc["sequencer"] == SEQ[1]
    assert stable_matches(aws, first["version"])
    assert assets_snapshot(aws) == snapshot


def test_sequencers_of_different_lengths_order_events(aws, app, lambda_context):
    # SEQ[3] is shorter than SEQ[2] but newer once right-padded with zeros.
    a = upload(aws, image_bytes((1, 2, 3)), "upload-a")
    b = upload(aws, image_bytes((3, 2, 1)), "upload-b")
    app.lambda_handler(s3_event(b, SEQ[3]), lambda_context)
    [outcome] = app.lambda_handler(s3_event(a, SEQ[2]), lambda_context)["outcomes"]
    assert (outcome["status"], outcome["reason"]) == ("skipped", "stale")
    assert manifest(aws)["latest"]["uploadId"] == "upload-b"


def test_manifest_changed_between_read_and_commit_is_retried(aws, app):
    # Given two uploads processed concurrently, the newer one reading avatar.json first
    older = upload(aws, image_bytes((90, 0, 0)), "upload-old")
    newer = upload(aws, image_bytes((0, 90, 0)), "upload-new")
    newer_client = boto3.client("s3")
    manifest_puts = count_calls(newer_client, "PutObject")
    on_first(
        newer_client,
        "PutObject",
        lambda params: params["Key"] == keys.manifest_key(USER),
        # the older writer commits in the gap between the newer one's read and its write
        lambda: avatars.handle_upload(boto3.client("s3"), app.CONFIG, sequencer=SEQ[0], **older),
    )

    # When the newer one commits
    outcome = avatars.handle_upload(newer_client, app.CONFIG, sequencer=SEQ[1], **newer)

    # Then its first conditional write failed, the retry (against the older doc) won
    assert outcome.status == "processed"
    attempts = [call for call in manifest_puts if call["Key"] == keys.manifest_key(USER)]
    assert [("IfNoneMatch" in call, "IfMatch" in call) for call in attempts] == [(True, False), (False, True)]
    doc = manifest(aws)
    assert (doc["latest"]["uploadId"], doc["sequencer"]) == ("upload-new", SEQ[1])
    assert stable_matches(aws, outcome.version)


def test_newer_commit_during_processing_makes_the_older_skip(aws, app):
    older = upload(aws, image_bytes((90, 0, 0)), "upload-old")
    newer = upload(aws, image_bytes((0, 90, 0)), "upload-new")
    older_client = boto3.client("s3")
    results: list[avatars.Outcome] = []
    on_first(
        older_client,
        "PutObject",
        lambda params: params["Key"] == keys.manifest_key(USER),
        lambda: results.append(
            avatars.handle_upload(boto3.client("s3"), app.CONFIG, sequencer=SEQ[1], **newer)
        ),
    )

    outcome = avatars.handle_upload(older_client, app.CONFIG, sequencer=SEQ[0], **older)

    assert (outcome.status, outcome.reason) == ("skipped", "stale")
    assert results[0].status == "processed"
    assert manifest(aws)["latest"]["uploadId"] == "upload-new"
    assert stable_matches(aws, results[0].version)


def test_late_older_writer_cannot_leave_its_stable_copies(aws, app):
    # Given the older upload stalled while writing its stable copies
    older = upload(aws, image_bytes((90, 0, 90)), "upload-old")
    newer = upload(aws, image_bytes((0, 90, 90)), "upload-new")
    older_client = boto3.client("s3")
    results: list[avatars.Outcome] = []
    on_first(
        older_client,
        "PutObject",
        lambda params: params["Key"] == keys.stable_key(USER, FILES[0]),
        # ...while the newer upload was processed from start to finish
        lambda: results.append(
            avatars.handle_upload(boto3.client("s3"), app.CONFIG, sequencer=SEQ[1], **newer)
        ),
    )

    # When the older writer resumes and writes its (now stale) stable copies
    outcome = avatars.handle_upload(older_client, app.CONFIG, sequencer=SEQ[0], **older)

    # Then it notices the newer commit, skips, and puts the newer renditions back
    assert (outcome.status, outcome.reason) == ("skipped", "stale")
    assert results[0].status == "processed"
    assert manifest(aws)["avatar"]["version"] == results[0].version
    for name in FILES:
        head = aws.head_object(Bucket=ASSETS, Key=keys.stable_key(USER, name))
        assert head["Metadata"]["imgpipe-version"] == results[0].version
        assert head["CacheControl"] == "public, max-age=10"
    assert stable_matches(aws, results[0].version)


# ---------------------------------------------------------------- permanent rejections


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        ("text", b"hello, this is not an image\n" * 200, "not_an_image"),
        ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "unsupported_format"),
        ("too_big", b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES + 10), "too_many_bytes"),
        ("bomb", png_bomb(), "too_many_pixels"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_rejected_upload_is_tagged_reported_and_keeps_the_previous_avatar(
    aws, app, lambda_context, capsys, case, data, reason
):
    # Given a processed avatar
    good = upload(aws, image_bytes((120, 60, 200)), "upload-good")
    [first] = app.lambda_handler(s3_event(good, SEQ[0]), lambda_context)["outcomes"]
    stable_before = {
        k: v for k, v in assets_snapshot(aws).items() if "/v/" not in k and "avatar.json" not in k
    }
    bad = upload(aws, data, f"upload-{case}")
    originals_read = [c for c in count_calls(app.s3, "GetObject") if c["Bucket"] == UPLOADS]
    capsys.readouterr()

    # When a bad upload arrives
    [outcome] = app.lambda_handler(s3_event(bad, SEQ[1]), lambda_context)["outcomes"]

    # Then it is rejected without an exception (no retries)...
    assert (outcome["status"], outcome["reason"]) == ("rejected", reason)
    if case == "too_big":
        assert originals_read == [], "an oversized upload must not be downloaded"
    # ...its own version of the original is tagged, and nothing is deleted
    tags = aws.get_object_tagging(Bucket=UPLOADS, Key=bad["key"], VersionId=bad["version_id"])["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"imgpipe-status": "rejected", "imgpipe-reason": reason}
    assert (
        aws.get_object_tagging(Bucket=UPLOADS, Key=good["key"], VersionId=good["version_id"])["TagSet"] == []
    )
    versions = aws.list_object_versions(Bucket=UPLOADS, Prefix=bad["key"])["Versions"]
    assert {v["VersionId"] for v in versions} == {good["version_id"], bad["version_id"]}
    # ...the client learns why, and the previous avatar is still the one shown
    doc = manifest(aws)
    assert doc["latest"]["uploadId"] == f"upload-{case}"
    assert doc["latest"]["state"] == "rejected"
    assert doc["latest"]["reason"] == reason
    assert isinstance(doc["latest"]["message"], str)
    assert len(doc["latest"]["message"]) > 10
    assert doc["latest"]["message"] != reason
    assert doc["sequencer"] == SEQ[1]
    assert doc["avatar"]["version"] == first["version"]
    assert {k: v for k, v in assets_snapshot(aws).items() if k in stable_before} == stable_before
    metrics = emitted_metrics(capsys.readouterr().out)
    assert sorted((value, dims.get("reason", "")) for value, dims in metrics["Rejected"]) == [
        (1.0, ""),
        (1.0, reason),
    ]
    assert "Processed" not in metrics


def test_oversized_size_in_event_is_rejected_before_download(aws, app, lambda_context):
    # S3 bounds the POST, so an oversized event means the object came another way; trust the event's size.
    obj = upload(aws, image_bytes((5, 5, 5)), "upload-x")
    gets = count_calls(app.s3, "GetObject")

    [outcome] = app.lambda_handler(s3_event(obj, SEQ[0], size=MAX_UPLOAD_BYTES + 1), lambda_context)[
        "outcomes"
    ]

    assert (outcome["status"], outcome["reason"]) == ("rejected", "too_many_bytes")
    assert [call["Bucket"] for call in gets] == [ASSETS]
    doc = manifest(aws)
    assert doc["avatar"] is None
    assert doc["latest"]["uploadId"] == "upload-x"
    assert f"{MAX_UPLOAD_BYTES:,}" in doc["latest"]["message"]


# ---------------------------------------------------------------- failures and foreign records


# A failed invocation has no application metrics; Lambda's Errors metric counts it.
@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_transient_failure_raises_for_s3_to_retry(aws, app, lambda_context, monkeypatch):
    # Given a processor whose assets bucket is unreachable
    monkeypatch.setenv("ASSETS_BUCKET", "imgpipe-assets-missing")
    broken = load_module(ROOT / "functions/process_image")
    obj = upload(aws, image_bytes((1, 1, 1)), "upload-1")

    # Then the handler fails, so S3 retries and then dead-letters the event
    with pytest.raises(ClientError) as raised:
        broken.lambda_handler(s3_event(obj, SEQ[0]), lambda_context)
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"
    assert aws.get_object_tagging(Bucket=UPLOADS, Key=obj["key"], VersionId=obj["version_id"])["TagSet"] == []
    assert aws.get_object(Bucket=UPLOADS, Key=obj["key"])["Body"].read()


def test_vanished_version_is_skipped(aws, app, lambda_context):
    obj = upload(aws, image_bytes((1, 1, 1)), "upload-1")
    aws.delete_object(Bucket=UPLOADS, Key=obj["key"], VersionId=obj["version_id"])

    [outcome] = app.lambda_handler(s3_event(obj, SEQ[0]), lambda_context)["outcomes"]

    assert (outcome["status"], outcome["reason"]) == ("skipped", "gone")
    assert assets_snapshot(aws) == {}


def test_foreign_records_and_test_events_are_ignored(aws, app, lambda_context, capsys):
    obj = upload(aws, image_bytes((1, 1, 1)), "upload-1")
    other_bucket = s3_event(obj, SEQ[0], bucket="someone-elses-bucket")
    not_upload = s3_event({**obj, "key": f"avatars/{USER}/notes.txt"}, SEQ[0])
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-28T15:30:00.000Z",
        "Bucket": UPLOADS,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }

    assert app.lambda_handler(other_bucket, lambda_context) == {"outcomes": []}
    assert app.lambda_handler(test_event, lambda_context) == {"outcomes": []}
    [outcome] = app.lambda_handler(not_upload, lambda_context)["outcomes"]
    assert (outcome["status"], outcome["reason"]) == ("skipped", "not_an_upload_key")
    assert assets_snapshot(aws) == {}
    metrics = emitted_metrics(capsys.readouterr().out)
    assert [value for value, _ in metrics["Ignored"]] == [1.0, 1.0]


def test_event_understating_the_size_is_still_bounded(aws, app, lambda_context):
    obj = upload(aws, b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES * 3), "upload-liar")

    [outcome] = app.lambda_handler(s3_event(obj, SEQ[0], size=1000), lambda_context)["outcomes"]

    assert (outcome["status"], outcome["reason"]) == ("rejected", "too_many_bytes")
    assert outcome["bytes_in"] == 0
    assert manifest(aws)["latest"]["reason"] == "too_many_bytes"


def test_avatar_erased_while_processing_is_not_resurrected(aws, app):
    # Given a user with an avatar who erases it while a new upload is being processed
    first = upload(aws, image_bytes((9, 9, 9)), "upload-1")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **first)
    second = upload(aws, image_bytes((99, 99, 99)), "upload-2")
    client = boto3.client("s3")
    on_first(
        client,
        "PutObject",
        lambda params: params["Key"] == keys.manifest_key(USER),
        lambda: erase_assets(aws),
    )

    outcome = avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[1], **second)

    assert (outcome.status, outcome.reason) == ("skipped", "gone")
    # Nothing of the user's survives in the assets bucket: not the manifest, nor the
    # renditions this run wrote before it learnt of the erase.
    assert "Contents" not in aws.list_objects_v2(Bucket=ASSETS, Prefix=keys.user_prefix(USER))


def erase_assets(aws):
    listing = aws.list_objects_v2(Bucket=ASSETS, Prefix=keys.user_prefix(USER))
    for obj in listing.get("Contents", []):
        aws.delete_object(Bucket=ASSETS, Key=obj["Key"])


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("RENDITIONS", "512:cover", "RENDITIONS|rendition"),
        # The inputs the processor once accepted while presign crashed on them, and the reverse.
        ("RENDITIONS", "512 x 512:cover", "RENDITIONS: rendition '512 x 512:cover' is not WIDTHxHEIGHT"),
        ("RENDITIONS", "0512x512:cover", "RENDITIONS: .* without leading zeros"),
        ("RENDITIONS", "9999x9999:cover", r"RENDITIONS: rendition sides must be integers in 1\.\.4096"),
        ("OUTPUT_FORMATS", "jpeg,gif", "format"),
        ("OUTPUT_FORMATS", "webp,avif", "OUTPUT_FORMATS: output formats must include jpeg"),
        ("UPLOADS_BUCKET", "", "UPLOADS_BUCKET"),
        ("MAX_UPLOAD_BYTES", "ten", "MAX_UPLOAD_BYTES"),
    ],
)
def test_misconfiguration_fails_at_import(aws, monkeypatch, name, value, complaint):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=complaint):
        load_module(ROOT / "functions/process_image")


def test_stable_copies_show_the_new_avatar_before_the_manifest_says_ready(aws, app):
    # Given a user with an avatar and a new upload being processed
    first = upload(aws, image_bytes((200, 10, 10)), "upload-1")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **first)
    second = upload(aws, image_bytes((10, 200, 10)), "upload-2")
    client = boto3.client("s3")
    seen_at_commit: list[str] = []
    on_first(
        client,
        "PutObject",
        lambda params: params["Key"] == keys.manifest_key(USER),
        lambda: seen_at_commit.extend(
            aws.head_object(Bucket=ASSETS, Key=keys.stable_key(USER, name))["Metadata"]["imgpipe-version"]
            for name in FILES
        ),
    )

    # When its manifest is committed
    outcome = avatars.handle_upload(client, app.CONFIG, sequencer=SEQ[1], **second)

    # Then every stable URL already served the new version at that moment
    assert outcome.status == "processed"
    assert seen_at_commit == [outcome.version] * len(FILES)
