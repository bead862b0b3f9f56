"""The backfill against moto: BackfillFunction's handler on real Batch Operations event shapes,
driven both ways `imgpipe backfill` drives it (one machine, and an S3 Batch Operations job).

Stored avatars are made by the processor with the old spec; the backfill function is loaded with
the new one, as a stack update would leave them. Every test that runs "a backfill" runs it
through both drivers (`drive`): the same unit, the same event shapes, the same assertions.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from imgpipe import avatars, backfill, imaging, keys
from imgpipe.spec import AvatarSpec
from imgpipe_local import backfill_cmd
from imgpipe_local.backfill_job import StackRefs
from imgpipe_local.handlers import load_module
from tests.conftest import ROOT, FakeLambdaContext, load_event
from tests.integration.batch_ops import BatchOperations
from tests.integration.s3_interleave import Pause, in_thread
from tests.integration.test_process_image import (
    ASSETS,
    SEQ,
    UPLOADS,
    app,
    assets_snapshot,
    aws,
    image_bytes,
    manifest,
    stable_matches,
    upload,
)

# The processor's fixtures, found by pytest under these names.
FIXTURES = (aws, app)
# The stack update: a new size, a lower JPEG quality (the processor's fixture has 128 and 64).
NEW_SPEC = {"RENDITIONS": "128x128:cover,64x64:contain,32x32:cover", "JPEG_QUALITY": "70"}
BACKFILL_BUCKET = "imgpipe-backfill-test"
REFS = StackRefs(
    uploads_bucket=UPLOADS,
    backfill_bucket=BACKFILL_BUCKET,
    function_arn="arn:aws:lambda:us-east-1:123456789012:function:imgpipe-BackfillFunction-1",
    function_name="imgpipe-BackfillFunction-1",
    role_arn="arn:aws:iam::123456789012:role/imgpipe-BackfillBatchRole-1",
)
SUMMARY = re.compile(
    r"(?P<rerendered>\d+) re-rendered, (?P<current>\d+) already current, (?P<skipped>\d+) skipped, "
    r"(?P<rejected>\d+) rejected, (?P<failed>\d+) failed"
)
DRY_SUMMARY = re.compile(
    r"(?P<stale>\d+) would be re-rendered, (?P<current>\d+) already current, (?P<skipped>\d+) skipped"
)


def users(n: int) -> list[str]:
    return [f"0000000{i}-8b7d-4e6f-9a01-23456789abcd" for i in range(n)]


@pytest.fixture
def new_env(aws: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in NEW_SPEC.items():
        monkeypatch.setenv(name, value)
    aws.create_bucket(Bucket=BACKFILL_BUCKET)
    return NEW_SPEC


@pytest.fixture
def fn(new_env: dict[str, str]) -> ModuleType:
    """functions/backfill_avatars/app.py, imported with the new spec (after the stack update)."""
    return load_module(ROOT / "functions/backfill_avatars")


@pytest.fixture
def new_processor(new_env: dict[str, str]) -> ModuleType:
    """The processor as deployed by the same stack update (renders the new spec)."""
    return load_module(ROOT / "functions/process_image")


def invoker(fn: ModuleType) -> Callable[[dict[str, Any]], Mapping[str, Any]]:
    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        # A JSON round trip both ways, as Lambda's invoke does.
        response: Mapping[str, Any] = json.loads(
            json.dumps(fn.lambda_handler(json.loads(json.dumps(event)), FakeLambdaContext()))
        )
        return response

    return invoke


def args(**overrides: Any) -> argparse.Namespace:
    base = {"dry_run": False, "workers": 2, "yes": True, "inventory": False, "job_id": None, "no_wait": False}
    return argparse.Namespace(**{**base, **overrides})


class Driven:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def counts(self) -> Counter[str]:
        match = SUMMARY.search(self.out) or DRY_SUMMARY.search(self.out)
        assert match, self.out
        return Counter({k: int(v) for k, v in match.groupdict().items()})


Drive = Callable[..., Driven]


DRIVERS = ["one-machine", "batch-operations"]


@pytest.fixture(params=DRIVERS)
def drive(request: pytest.FixtureRequest, aws: Any, fn: ModuleType) -> Drive:
    """Run `imgpipe backfill`'s code path against moto: this machine driving the function, or an
    S3 Batch Operations job (emulated on a real s3control client, see batch_ops.py)."""
    return driver(request.param, aws, fn)


def driver(kind: str, aws: Any, fn: ModuleType) -> Drive:
    spec = AvatarSpec.from_environ()

    def one_machine(stop: threading.Event | None = None, **overrides: Any) -> Driven:
        out, err = io.StringIO(), io.StringIO()
        code = backfill_cmd.run_here(
            args(**overrides),
            s3=aws,
            bucket=UPLOADS,
            invoke=invoker(fn),
            spec=spec,
            out=out,
            err=err,
            stop=stop,
        )
        return Driven(code, out.getvalue(), err.getvalue())

    def batch_operations(**overrides: Any) -> Driven:
        s3control = boto3.client("s3control", region_name="us-east-1")
        service = BatchOperations(s3control, aws, invoker(fn))
        out, err = io.StringIO(), io.StringIO()
        code = backfill_cmd.run_job(
            args(**overrides),
            REFS,
            s3=aws,
            s3control=s3control,
            spec=spec,
            out=out,
            err=err,
            sleep=lambda _: None,
        )
        driven = Driven(code, out.getvalue(), err.getvalue())
        driven.service = service  # type: ignore[attr-defined]
        return driven

    return one_machine if kind == "one-machine" else batch_operations


def process(
    processor: ModuleType, user: str, data: bytes, upload_id: str, sequencer: str = SEQ[0]
) -> avatars.Outcome:
    obj = upload(processor.s3, data, upload_id, user=user)
    return avatars.handle_upload(processor.s3, processor.CONFIG, sequencer=sequencer, **obj)


def writes(client: Any) -> list[str]:
    """Every write request the client sends from now on."""
    seen: list[str] = []
    for operation in ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "PutObjectTagging"):
        client.meta.events.register(
            f"provide-client-params.s3.{operation}",
            lambda params, _op=operation, **_: seen.append(f"{_op} {params.get('Key', '')}"),
        )
    return seen


# ---------------------------------------------------------------- part 1: what is stale


def test_avatar_json_records_the_spec_that_made_it_and_its_original(aws: Any, app: ModuleType) -> None:
    obj = upload(aws, image_bytes((10, 20, 30)), "up-1")
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **obj)

    avatar = manifest(aws)["avatar"]
    assert avatar["originalVersionId"] == obj["version_id"]
    assert avatar["spec"] == {
        "digest": AvatarSpec.from_environ().digest(),
        "renditions": "128x128:cover,64x64:contain",
        "formats": "jpeg,webp",
        "jpegQuality": 80,
        "webpQuality": 75,
        "pipeline": imaging.PIPELINE_VERSION,
    }


# ---------------------------------------------------------------- the runs, both drivers


def test_a_spec_change_rerenders_exactly_the_stale_avatars_and_a_second_run_does_nothing(
    aws: Any, app: ModuleType, new_processor: ModuleType, fn: ModuleType, drive: Drive
) -> None:
    # Given three avatars made by the old spec, one already made by the new processor, one user
    # whose only upload was rejected
    old, fresh, rejected_only = users(3), users(4)[3], "0000000f-8b7d-4e6f-9a01-23456789abcd"
    before = {
        user: process(app, user, image_bytes((40 * i, 90, 200)), f"up-{i}") for i, user in enumerate(old)
    }
    process(new_processor, fresh, image_bytes((1, 2, 3)), "up-fresh")
    process(app, rejected_only, b"not an image" * 40, "up-bad")
    statuses = {user: manifest(aws, user)["latest"] for user in [*old, fresh, rejected_only]}

    # When the backfill runs
    first = drive()

    # Then exactly the three stale avatars were re-rendered, through the ordering rule
    assert first.code == 0, first.out + first.err
    assert first.counts() == Counter(rerendered=3, current=1, skipped=1, rejected=0, failed=0)
    digest = fn.CONFIG.rendering.digest()
    for user in old:
        doc = manifest(aws, user)
        assert doc["avatar"]["spec"]["digest"] == digest
        assert doc["avatar"]["version"] != before[user].version
        assert doc["latest"] == statuses[user]  # the upload's status (what its client was told) stays
        assert doc["sequencer"] == SEQ[0]
        assert {r["name"] for r in doc["avatar"]["renditions"]} == {"128x128", "64x64", "32x32"}
        assert stable_matches(aws, doc["avatar"]["version"], user)
    assert manifest(aws, rejected_only)["avatar"] is None

    # And a second run finds nothing to do and writes nothing
    snapshot = assets_snapshot(aws)
    seen = writes(fn.s3)
    second = drive()
    assert second.code == 0
    assert second.counts() == Counter(rerendered=0, current=4, skipped=1, rejected=0, failed=0)
    assert seen == []
    assert assets_snapshot(aws) == snapshot


@pytest.mark.parametrize("kind", DRIVERS)
def test_a_pipeline_version_bump_stales_every_avatar_and_a_pillow_upgrade_none(
    aws: Any, app: ModuleType, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Given avatars made by the processor, and a backfill function on the very same spec
    for i, user in enumerate(users(3)):
        process(app, user, image_bytes((60 * i, 20, 90)), f"up-{i}")
    aws.create_bucket(Bucket=BACKFILL_BUCKET)
    fn = load_module(ROOT / "functions/backfill_avatars")
    drive = driver(kind, aws, fn)
    before = {user: manifest(aws, user)["avatar"] for user in users(3)}
    assert drive().counts() == Counter(rerendered=0, current=3, skipped=0, rejected=0, failed=0)

    # When only Pillow's version changes, nothing is stale (new uploads just get new versions)
    monkeypatch.setattr(imaging.PIL, "__version__", "99.0.0")
    assert drive().counts() == Counter(rerendered=0, current=3, skipped=0, rejected=0, failed=0)
    assert all(manifest(aws, user)["avatar"] == before[user] for user in users(3))

    # When a code change bumps PIPELINE_VERSION, every avatar is re-rendered, once
    monkeypatch.setattr(imaging, "PIPELINE_VERSION", "bumped")
    assert drive().counts() == Counter(rerendered=3, current=0, skipped=0, rejected=0, failed=0)
    for user in users(3):
        avatar = manifest(aws, user)["avatar"]
        assert avatar["spec"] == {**before[user]["spec"], "pipeline": "bumped"}
        assert avatar["version"] != before[user]["version"]
        assert stable_matches(aws, avatar["version"], user)
    assert drive().counts() == Counter(rerendered=0, current=3, skipped=0, rejected=0, failed=0)
    assert fn.CONFIG.made_by.pipeline == "bumped"


def test_a_dry_run_changes_nothing(aws: Any, app: ModuleType, fn: ModuleType, drive: Drive) -> None:
    for i, user in enumerate(users(3)):
        process(app, user, image_bytes((10 * i, 50, 60)), f"up-{i}")
    snapshot = assets_snapshot(aws)
    seen = writes(fn.s3)

    result = drive(dry_run=True)

    assert result.code == 0
    assert seen == []
    assert assets_snapshot(aws) == snapshot
    service = getattr(result, "service", None)
    if service is None:  # one machine: each stale avatar is listed
        assert result.counts() == Counter(stale=3, current=0, skipped=0)
        for user in users(3):
            assert f"stale    {keys.upload_key(user)}" in result.out
    else:  # a job: only counted and priced, no manifest, no job
        assert "3 current originals" in result.err
        assert "projected cost" in result.out
        assert service.requests == []
        assert aws.list_objects_v2(Bucket=BACKFILL_BUCKET).get("KeyCount") == 0


def test_rejections_are_reported_recorded_and_not_decoded_again(
    aws: Any, app: ModuleType, monkeypatch: pytest.MonkeyPatch, new_env: dict[str, str]
) -> None:
    # Given an avatar of a 1.2 MP photo, and a stack update that also lowers the pixel limit to 1 MP
    big, small = users(2)
    process(app, big, image_bytes((200, 10, 10), size=(1200, 1000)), "up-big")
    process(app, small, image_bytes((10, 200, 10)), "up-small")
    shown = manifest(aws, big)
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "1000000")
    fn = load_module(ROOT / "functions/backfill_avatars")

    # When the backfill runs
    out, err = io.StringIO(), io.StringIO()
    code = backfill_cmd.run_here(
        args(), s3=aws, bucket=UPLOADS, invoke=invoker(fn), spec=AvatarSpec.from_environ(), out=out, err=err
    )

    # Then the refusal is reported (not a failure), the avatar shown and the upload's status stay,
    # the original is not tagged as a rejected upload, and avatar.json notes it for this spec
    assert code == 0, out.getvalue()
    assert "1 re-rendered, 0 already current, 0 skipped, 1 rejected, 0 failed" in out.getvalue()
    assert re.search(rf"rejected +{keys.upload_key(big)}  too_many_pixels: ", out.getvalue())
    doc = manifest(aws, big)
    assert doc["avatar"] == shown["avatar"]
    assert doc["latest"] == shown["latest"]
    assert doc["rerender"]["reason"] == "too_many_pixels"
    assert doc["rerender"]["spec"] == fn.CONFIG.rendering.digest()
    assert aws.get_object_tagging(Bucket=UPLOADS, Key=keys.upload_key(big))["TagSet"] == []

    # And a second run reports it again without reading the original
    originals_read: list[str] = []
    fn.s3.meta.events.register(
        "provide-client-params.s3.GetObject",
        lambda params, **_: originals_read.append(params["Key"]) if params["Bucket"] == UPLOADS else None,
    )
    out = io.StringIO()
    backfill_cmd.run_here(
        args(),
        s3=aws,
        bucket=UPLOADS,
        invoke=invoker(fn),
        spec=AvatarSpec.from_environ(),
        out=out,
        err=io.StringIO(),
    )
    assert "0 re-rendered, 1 already current, 0 skipped, 1 rejected, 0 failed" in out.getvalue()
    assert originals_read == []


def test_a_refused_rerender_is_a_permanent_failure_in_the_job_report(
    aws: Any, app: ModuleType, monkeypatch: pytest.MonkeyPatch, new_env: dict[str, str]
) -> None:
    user = users(1)[0]
    process(app, user, image_bytes((200, 10, 10), size=(1200, 1000)), "up-big")
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "1000000")
    fn = load_module(ROOT / "functions/backfill_avatars")
    s3control = boto3.client("s3control", region_name="us-east-1")
    BatchOperations(s3control, aws, invoker(fn))
    out = io.StringIO()

    code = backfill_cmd.run_job(
        args(),
        REFS,
        s3=aws,
        s3control=s3control,
        spec=AvatarSpec.from_environ(),
        out=out,
        err=io.StringIO(),
        sleep=lambda _: None,
    )

    assert code == 0, out.getvalue()
    assert "0 re-rendered, 0 already current, 0 skipped, 1 rejected, 0 failed" in out.getvalue()
    [report] = [
        o["Key"]
        for o in aws.list_objects_v2(Bucket=BACKFILL_BUCKET, Prefix="reports/")["Contents"]
        if o["Key"].endswith(".csv")
    ]
    row = aws.get_object(Bucket=BACKFILL_BUCKET, Key=report)["Body"].read().decode()
    assert ",failed,200,PermanentFailure,rejected too_many_pixels: " in row


def test_an_interrupted_run_resumes_where_it_stopped(aws: Any, app: ModuleType, fn: ModuleType) -> None:
    # Given six stale avatars, and a run stopped (as Ctrl-C stops it) after its second answer
    for i, user in enumerate(users(6)):
        process(app, user, image_bytes((30 * i, 70, 90)), f"up-{i}")
    stop = threading.Event()
    answered = 0
    invoke = invoker(fn)

    def stopping(event: dict[str, Any]) -> Mapping[str, Any]:
        nonlocal answered
        response = invoke(event)
        answered += 1
        if answered == 2:
            stop.set()
        return response

    out, err = io.StringIO(), io.StringIO()
    spec = AvatarSpec.from_environ()
    code = backfill_cmd.run_here(
        args(workers=1), s3=aws, bucket=UPLOADS, invoke=stopping, spec=spec, out=out, err=err, stop=stop
    )
    first = Driven(code, out.getvalue(), err.getvalue()).counts()

    # Then it stopped early, every avatar either done or untouched (none half done)
    assert code == 130
    assert 2 <= first["rerendered"] < 6
    digest = fn.CONFIG.rendering.digest()
    done = [u for u in users(6) if manifest(aws, u)["avatar"]["spec"]["digest"] == digest]
    assert len(done) == first["rerendered"]
    for user in done:
        assert stable_matches(aws, manifest(aws, user)["avatar"]["version"], user)

    # When the same command runs again, it renders only the rest
    out = io.StringIO()
    code = backfill_cmd.run_here(
        args(), s3=aws, bucket=UPLOADS, invoke=invoke, spec=spec, out=out, err=io.StringIO()
    )
    second = Driven(code, out.getvalue(), "").counts()
    assert code == 0
    assert second["rerendered"] == 6 - first["rerendered"]
    assert second["current"] == first["rerendered"]
    assert all(manifest(aws, u)["avatar"]["spec"]["digest"] == digest for u in users(6))


# ---------------------------------------------------------------- the unit under concurrency


def task(fn: ModuleType, user: str, **arguments: str) -> dict[str, Any]:
    event = backfill.task_event(
        [backfill.Task("t-1", UPLOADS, keys.upload_key(user))],
        job_id="job-1",
        invocation_id="inv-1",
        user_arguments=arguments,
    )
    return fn.lambda_handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


def test_an_upload_committed_while_the_rerender_works_is_never_overwritten(
    aws: Any, app: ModuleType, new_processor: ModuleType, fn: ModuleType
) -> None:
    # Given a stale avatar whose re-render is held just before its commit (renditions and stable
    # copies written)
    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    commit = Pause(fn.s3, "PutObject", lambda params: params["Key"] == keys.manifest_key(user))
    run = in_thread(lambda: task(fn, user))
    commit.wait()

    # When the user uploads a new picture, processed and committed meanwhile
    newer = process(new_processor, user, image_bytes((250, 250, 0)), "up-new", sequencer=SEQ[1])
    assert newer.status == "processed"
    commit.release()
    response = run.result(timeout=30)

    # Then the re-render gave up, and the newer avatar is what avatar.json and the stable URLs show
    assert response["results"][0]["resultCode"] == "Succeeded"
    assert response["results"][0]["resultString"] == "skipped superseded"
    doc = manifest(aws, user)
    assert (doc["latest"]["uploadId"], doc["sequencer"]) == ("up-new", SEQ[1])
    assert doc["avatar"]["version"] == newer.version
    assert stable_matches(aws, newer.version, user)


def test_a_rerender_committed_while_an_upload_is_processed_does_not_stop_the_upload(
    aws: Any, app: ModuleType, new_processor: ModuleType, fn: ModuleType
) -> None:
    # Given a stale avatar, and a newer upload held just before its commit
    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    obj = upload(aws, image_bytes((250, 250, 0)), "up-new", user=user)
    client = boto3.client("s3")
    commit = Pause(client, "PutObject", lambda params: params["Key"] == keys.manifest_key(user))
    run = in_thread(lambda: avatars.handle_upload(client, new_processor.CONFIG, sequencer=SEQ[1], **obj))
    commit.wait()

    # When the backfill re-renders the old avatar and commits first
    response = task(fn, user)
    assert response["results"][0]["resultString"].startswith("rerendered ")
    commit.release()
    newer = run.result(timeout=30)

    # Then the upload's conditional commit re-read, saw it is newer, and committed on top
    assert newer.status == "processed"
    doc = manifest(aws, user)
    assert (doc["latest"]["uploadId"], doc["avatar"]["version"]) == ("up-new", newer.version)
    assert stable_matches(aws, newer.version, user)


def test_an_erase_during_a_rerender_leaves_nothing_published(
    aws: Any, app: ModuleType, fn: ModuleType
) -> None:
    from imgpipe import erase

    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    commit = Pause(fn.s3, "PutObject", lambda params: params["Key"] == keys.manifest_key(user))
    run = in_thread(lambda: task(fn, user))
    commit.wait()
    erase.erase_avatar(aws, user=user, uploads_bucket=UPLOADS, assets_bucket=ASSETS)
    commit.release()

    assert run.result(timeout=30)["results"][0]["resultString"] == "skipped gone"
    assert aws.list_objects_v2(Bucket=ASSETS, Prefix=keys.user_prefix(user)).get("KeyCount") == 0


def test_an_avatar_behind_a_rejected_upload_is_rerendered_from_its_own_original(
    aws: Any, app: ModuleType, fn: ModuleType
) -> None:
    # Given an avatar, then a rejected upload (avatar.json: latest rejected, avatar the older one)
    user = users(1)[0]
    good = upload(aws, image_bytes((10, 200, 10)), "up-good", user=user)
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[0], **good)
    bad = upload(aws, b"not an image" * 40, "up-bad", user=user)
    avatars.handle_upload(aws, app.CONFIG, sequencer=SEQ[1], **bad)
    latest = manifest(aws, user)["latest"]

    response = task(fn, user)

    assert response["results"][0]["resultString"].startswith("rerendered ")
    doc = manifest(aws, user)
    assert doc["avatar"]["originalVersionId"] == good["version_id"]
    assert doc["avatar"]["spec"]["digest"] == fn.CONFIG.rendering.digest()
    assert doc["latest"] == latest
    assert doc["sequencer"] == SEQ[1]


# ---------------------------------------------------------------- the function on real event shapes


def with_task(event: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    event["tasks"][0]["s3Key"] = key
    if "s3Bucket" in event["tasks"][0]:
        event["tasks"][0]["s3Bucket"] = bucket
    else:
        event["tasks"][0]["s3BucketArn"] = f"arn:aws:s3:::{bucket}"
    return event


def test_the_function_answers_aws_s_schema_2_event(aws: Any, app: ModuleType, fn: ModuleType) -> None:
    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    event = with_task(load_event("backfill_batch_task"), UPLOADS, keys.upload_key(user))

    response = fn.lambda_handler(event, FakeLambdaContext())

    assert response["invocationSchemaVersion"] == "2.0"
    assert response["invocationId"] == event["invocationId"]
    assert response["treatMissingKeysAs"] == "PermanentFailure"
    [result] = response["results"]
    assert result["taskId"] == event["tasks"][0]["taskId"]
    assert result["resultCode"] == "Succeeded"
    assert result["resultString"] == f"rerendered {manifest(aws, user)['avatar']['version']}"


def test_check_mode_and_schema_1_events(aws: Any, app: ModuleType, fn: ModuleType) -> None:
    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    old_digest = app.CONFIG.rendering.digest()
    check = with_task(load_event("backfill_batch_task_check"), UPLOADS, keys.upload_key(user))
    assert (
        fn.lambda_handler(check, FakeLambdaContext())["results"][0]["resultString"]
        == f"stale {old_digest} pipeline {imaging.PIPELINE_VERSION}"
    )
    assert manifest(aws, user)["avatar"]["spec"]["digest"] == old_digest

    v1 = with_task(load_event("backfill_batch_task_schema_1"), UPLOADS, keys.upload_key(user))
    response = fn.lambda_handler(v1, FakeLambdaContext())
    assert response["invocationSchemaVersion"] == "1.0"
    assert response["results"][0]["resultString"].startswith("rerendered ")


def test_each_task_of_an_event_is_answered_on_its_own(aws: Any, app: ModuleType, fn: ModuleType) -> None:
    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    event = backfill.task_event(
        [
            backfill.Task("good", UPLOADS, keys.upload_key(user)),
            backfill.Task("other-bucket", "someone-elses-bucket", keys.upload_key(user)),
            backfill.Task("not-an-upload", UPLOADS, "avatars/x/avatar.json"),
        ],
        job_id="job-1",
        invocation_id="inv-1",
        user_arguments={},
    )

    results = {r["taskId"]: r for r in fn.lambda_handler(event, FakeLambdaContext())["results"]}

    assert results["good"]["resultCode"] == "Succeeded"
    assert results["other-bucket"]["resultCode"] == "PermanentFailure"
    assert results["other-bucket"]["resultString"].startswith("failed wrong_bucket: ")
    assert (results["not-an-upload"]["resultCode"], results["not-an-upload"]["resultString"]) == (
        "Succeeded",
        "skipped not_an_upload_key",
    )


def test_a_job_started_for_another_spec_fails_its_tasks_permanently(
    aws: Any, app: ModuleType, fn: ModuleType
) -> None:
    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    snapshot = assets_snapshot(aws)

    [result] = task(fn, user, spec="0123456789abcdef")["results"]

    assert result["resultCode"] == "PermanentFailure"
    assert result["resultString"].startswith("failed spec_changed: ")
    assert assets_snapshot(aws) == snapshot


def test_a_throttled_task_is_a_temporary_failure_and_its_redrive_succeeds(
    aws: Any, app: ModuleType, fn: ModuleType
) -> None:
    user = users(1)[0]
    process(app, user, image_bytes((10, 10, 200)), "up-old")
    throttled = {"left": 1}

    def slow_down(params: dict[str, Any], **_: Any) -> None:
        if params["Bucket"] == UPLOADS and throttled["left"]:
            throttled["left"] -= 1
            raise ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "GetObject",
            )

    fn.s3.meta.events.register("provide-client-params.s3.GetObject", slow_down)

    [first] = task(fn, user)["results"]
    [second] = task(fn, user)["results"]

    assert (first["resultCode"], first["resultString"].split(":")[0]) == (
        "TemporaryFailure",
        "failed SlowDown",
    )
    assert second["resultCode"] == "Succeeded"
    assert second["resultString"].startswith("rerendered ")


def test_the_job_is_created_as_the_stack_s_role_with_the_spec_and_confirmed_before_it_runs(
    aws: Any, app: ModuleType, fn: ModuleType
) -> None:
    for i, user in enumerate(users(2)):
        process(app, user, image_bytes((i, 9, 9)), f"up-{i}")
    s3control = boto3.client("s3control", region_name="us-east-1")
    service = BatchOperations(s3control, aws, invoker(fn))
    answers: list[str] = []
    out = io.StringIO()

    code = backfill_cmd.run_job(
        args(yes=False),
        REFS,
        s3=aws,
        s3control=s3control,
        spec=AvatarSpec.from_environ(),
        out=out,
        err=io.StringIO(),
        ask=lambda prompt: answers.append(prompt) or "y",
        sleep=lambda _: None,
    )

    assert code == 0, out.getvalue()
    assert answers
    assert "over 2 originals" in answers[0]
    [(_, create)] = [r for r in service.requests if r[0] == "CreateJob"]
    assert create["ConfirmationRequired"] is True
    assert create["RoleArn"] == REFS.role_arn
    invoke = create["Operation"]["LambdaInvoke"]
    assert invoke["FunctionArn"] == REFS.function_arn
    assert invoke["InvocationSchemaVersion"] == "2.0"
    assert invoke["UserArguments"] == {"spec": fn.CONFIG.rendering.digest(), "mode": "apply"}
    assert create["Manifest"]["Location"]["ObjectArn"].startswith(
        f"arn:aws:s3:::{BACKFILL_BUCKET}/manifests/"
    )
    assert create["Report"]["Bucket"] == f"arn:aws:s3:::{BACKFILL_BUCKET}"
    assert create["Report"]["Prefix"] == "reports"
    # Confirmed only after the prompt, never created running.
    assert [r[0] for r in service.requests].index("UpdateJobStatus") > [r[0] for r in service.requests].index(
        "CreateJob"
    )
    assert "2 re-rendered, 0 already current" in out.getvalue()


def test_a_declined_job_is_cancelled_and_runs_nothing(aws: Any, app: ModuleType, fn: ModuleType) -> None:
    process(app, users(1)[0], image_bytes((1, 9, 9)), "up-1")
    snapshot = assets_snapshot(aws)
    s3control = boto3.client("s3control", region_name="us-east-1")
    service = BatchOperations(s3control, aws, invoker(fn))

    code = backfill_cmd.run_job(
        args(yes=False),
        REFS,
        s3=aws,
        s3control=s3control,
        spec=AvatarSpec.from_environ(),
        out=io.StringIO(),
        err=io.StringIO(),
        ask=lambda _: "n",
        sleep=lambda _: None,
    )

    assert code == 2
    assert service.invocations == []
    assert [job["status"] for job in service.jobs.values()] == ["Cancelled"]
    assert assets_snapshot(aws) == snapshot
