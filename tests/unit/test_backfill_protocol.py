"""The backfill's pure parts: what avatar.json says about staleness, and the Batch Operations
task protocol both drivers speak (imgpipe.avatar_doc, imgpipe.backfill, the command's helpers)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from imgpipe import avatar_doc, avatars, backfill, imaging
from imgpipe.avatar_doc import MadeBy
from imgpipe.backfill import Answer, Task
from imgpipe.spec import AvatarSpec
from imgpipe_local import backfill_job

DIGEST = AvatarSpec().digest()
NOW = MadeBy(DIGEST, "2")


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1,
        "user": "u1",
        "latest": {"uploadId": "up-2", "state": "ready", "originalVersionId": "v2"},
        "avatar": {
            "version": "abc",
            "spec": {"digest": "0ld0ld0ld0ld0ld0", "pipeline": "2"},
            "originalVersionId": "v2",
        },
        "sequencer": "0A",
    }
    return {**base, **overrides}


def made(digest: str, pipeline: str | None) -> dict[str, Any]:
    """A document whose avatar records this spec digest and pipeline revision (None: no pipeline)."""
    spec = {"digest": digest} if pipeline is None else {"digest": digest, "pipeline": pipeline}
    return doc(avatar={"version": "abc", "spec": spec, "originalVersionId": "v2"})


def test_the_spec_record_names_what_changes_pixels_and_nothing_else() -> None:
    record = AvatarSpec().rendering.record()
    assert record == {
        "digest": DIGEST,
        "renditions": "512x512:cover,256x256:cover,128x128:cover",
        "formats": "jpeg,webp",
        "jpegQuality": 82,
        "webpQuality": 80,
    }
    assert AvatarSpec(max_image_pixels=2_000_000).rendering.record() == record
    assert AvatarSpec(webp_quality=81).rendering.digest() != DIGEST


def test_a_stale_avatar_is_rerendered_from_its_own_original_under_the_documents_sequencer() -> None:
    plan = avatar_doc.rerender_plan(doc(), NOW)
    assert (plan.skip, plan.source_version, plan.sequencer, plan.guard_version) == (None, "v2", "0A", "v2")
    assert plan.recorded == MadeBy("0ld0ld0ld0ld0ld0", "2")


def test_an_avatar_behind_a_rejected_upload_keeps_its_source_and_guards_on_the_latest() -> None:
    behind = doc(latest={"uploadId": "up-3", "state": "rejected", "originalVersionId": "v3"}, sequencer="0B")
    plan = avatar_doc.rerender_plan(behind, NOW)
    assert (plan.source_version, plan.sequencer, plan.guard_version) == ("v2", "0B", "v3")


@pytest.mark.parametrize(
    ("document", "skip"),
    [
        (None, "no_avatar"),
        (doc(avatar=None), "no_avatar"),
        (made(DIGEST, "2"), "current"),
        (doc(rerender={"spec": DIGEST, "pipeline": "2", "state": "rejected", "reason": "x"}), "rejected"),
        # Written before avatars named their original, behind a rejected upload: unknown source.
        (
            doc(avatar={"version": "abc"}, latest={"state": "rejected", "originalVersionId": "v3"}),
            "source_unknown",
        ),
    ],
)
def test_what_a_backfill_leaves_alone(document: dict[str, Any] | None, skip: str) -> None:
    assert avatar_doc.rerender_plan(document, NOW).skip == skip


@pytest.mark.parametrize(
    "document",
    [
        made(DIGEST, "1"),  # a deliberate PIPELINE_VERSION bump since
        made(DIGEST, None),  # recorded before avatar.json named the pipeline: unknown, so stale
        made("another-spec-dig", "2"),
    ],
    ids=["older-pipeline", "no-pipeline", "other-spec"],
)
def test_an_avatar_made_by_another_spec_or_pipeline_is_stale(document: dict[str, Any]) -> None:
    plan = avatar_doc.rerender_plan(document, NOW)
    assert (plan.skip, plan.source_version) == (None, "v2")


def test_a_refusal_noted_for_another_spec_or_pipeline_does_not_stop_this_one() -> None:
    for spec, pipeline in (("another-spec-dig", "2"), (DIGEST, "1"), (DIGEST, None)):
        noted = doc(rerender={"spec": spec, "pipeline": pipeline, "state": "rejected"})
        assert avatar_doc.rerender_plan(noted, NOW).skip is None


def test_a_document_from_before_the_spec_was_recorded_is_stale_and_its_source_is_the_latest() -> None:
    plan = avatar_doc.rerender_plan(doc(avatar={"version": "abc"}), NOW)
    assert (plan.skip, plan.source_version, plan.recorded) == (None, "v2", None)


def test_what_made_an_avatar_is_this_spec_and_this_code_s_pipeline_not_pillow() -> None:
    cfg = avatars.config_from_spec(uploads_bucket="u", assets_bucket="a", spec=AvatarSpec())
    assert cfg.made_by == MadeBy(DIGEST, imaging.PIPELINE_VERSION)
    assert cfg.spec_record() == {**AvatarSpec().rendering.record(), "pipeline": imaging.PIPELINE_VERSION}
    assert f"pipeline={imaging.PIPELINE_VERSION};pillow=" in cfg.options.fingerprint()


def test_a_rerender_replaces_only_the_avatar_and_drops_an_old_refusal() -> None:
    current = doc(rerender={"spec": "x", "state": "rejected"})
    new = avatar_doc.rerendered_doc(current, {"version": "new"})
    assert new == {**doc(), "avatar": {"version": "new"}}
    refused = avatar_doc.rerender_rejected_doc(doc(), made_by=NOW, reason="r", message="m", at="t")
    assert refused["avatar"] == doc()["avatar"]
    assert refused["latest"] == doc()["latest"]
    assert refused["rerender"] == {
        "spec": DIGEST,
        "pipeline": "2",
        "state": "rejected",
        "reason": "r",
        "message": "m",
        "at": "t",
    }


def test_a_rerender_without_a_document_is_gone_and_never_passes_a_newer_upload() -> None:
    assert avatar_doc.skip_reason("0A", None, rerender=True) == "gone"
    assert avatar_doc.skip_reason("0A", {"sequencer": "0A"}, rerender=True) is None
    assert avatar_doc.skip_reason("0A", {"sequencer": "0B"}, rerender=True) == "stale"


# ---------------------------------------------------------------- the task protocol


def test_a_task_event_is_batch_operations_schema_2_with_the_key_url_encoded() -> None:
    event = backfill.task_event(
        [Task("t1", "bucket", "avatars/a b+c@d/original")],
        job_id="j",
        invocation_id="i",
        user_arguments={"spec": DIGEST},
    )
    assert event == {
        "invocationSchemaVersion": "2.0",
        "invocationId": "i",
        "job": {"id": "j", "userArguments": {"spec": DIGEST}},
        "tasks": [
            {
                "taskId": "t1",
                "s3Key": "avatars/a%20b%2Bc%40d/original",
                "s3VersionId": None,
                "s3Bucket": "bucket",
            }
        ],
    }


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        ("Succeeded", "rerendered 9b2e61f0c3a4d5e6", Answer("Succeeded", "rerendered", "9b2e61f0c3a4d5e6")),
        ("Succeeded", "current", Answer("Succeeded", "current", "")),
        (
            "PermanentFailure",
            "rejected too_complex: no",
            Answer("PermanentFailure", "rejected", "too_complex: no"),
        ),
        # What AWS writes for a function error: not ours, so a failure carrying the text.
        (
            "PermanentFailure",
            'Lambda returned function error: {"errorMessage": "Task timed out after 3.00 seconds"}',
            Answer(
                "PermanentFailure",
                "failed",
                'Lambda returned function error: {"errorMessage": "Task timed out after 3.00 seconds"}',
            ),
        ),
        ("Bogus", "current", Answer("PermanentFailure", "current", "")),
    ],
)
def test_answers_read_back_from_result_strings(code: str, text: str, expected: Answer) -> None:
    assert Answer.parse(code, text) == expected


def test_a_task_missing_from_the_response_counts_as_treat_missing_keys_as() -> None:
    assert backfill.read_answer({"results": [], "treatMissingKeysAs": "PermanentFailure"}, "t").code == (
        "PermanentFailure"
    )
    # Batch Operations' default when the answer does not say.
    assert backfill.read_answer({"results": []}, "t").code == "Succeeded"
    found = {
        "results": [{"taskId": "t", "resultCode": "TemporaryFailure", "resultString": "failed SlowDown: x"}]
    }
    assert backfill.read_answer(found, "t") == Answer("TemporaryFailure", "failed", "SlowDown: x")


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("ConditionalRequestConflict", 409), True),
        (avatars.CommitConflict("x"), True),
        (EndpointConnectionError(endpoint_url="https://s3"), True),
        (client_error("AccessDenied", 403), False),
        (client_error("NoSuchBucket", 404), False),
        (ParamValidationError(report="bad"), False),
    ],
)
def test_what_a_redrive_can_fix(error: BaseException, transient: bool) -> None:
    assert backfill.is_transient(error) is transient


# ---------------------------------------------------------------- manifests and cost


def test_the_manifest_is_batch_operations_csv_with_url_encoded_keys() -> None:
    body, count = backfill_job.manifest_csv("uploads", ["avatars/u1/original", "avatars/a b@c/original"])
    assert count == 2
    assert body == b"uploads,avatars/u1/original\nuploads,avatars/a%20b%40c/original\n"


def test_the_cost_estimate_adds_up_the_assumed_prices() -> None:
    costs = backfill_job.estimate(1_000_000, stale=1_000_000)
    assert costs["batch_operations"] == pytest.approx(1.25)
    assert costs["lambda_requests"] == pytest.approx(0.20)
    assert costs["lambda_compute"] == pytest.approx(1_000_000 * 0.5 * 0.0000133334)
    assert costs["s3_requests"] == pytest.approx(14 * 5.0 + 10 * 0.4)
    nothing_stale = backfill_job.estimate(1_000_000, stale=0)
    assert nothing_stale["s3_requests"] == pytest.approx(0.4)
