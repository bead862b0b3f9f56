"""The backfill's resources in template.yaml, read from the SAM-translated template (as
tests/unit/test_template.py reads the rest): the Batch Operations role may invoke one function,
read manifests and write reports, nothing else; the function renders as the processor does and
cannot touch the uploads bucket beyond reading; the job bucket is private."""

from __future__ import annotations

import fnmatch
from typing import Any

from imgpipe_local import backfill_job
from tests.unit.test_template import (
    ACCOUNT,
    ASSET_KEYS,
    CFN,
    RES,
    UPLOAD_KEY,
    UPLOADS,
    _build,
    allows,
    as_list,
    bucket_policy,
    resolved,
    s3,
)

BUCKET = resolved({"Ref": "BackfillBucket"})
FUNCTION_ARN = resolved({"Fn::GetAtt": ["BackfillFunction", "Arn"]})


def role_statements() -> list[dict[str, Any]]:
    statements = []
    for policy in RES["BackfillBatchRole"]["Properties"]["Policies"]:
        statements += as_list(resolved(policy["PolicyDocument"])["Statement"])
    return statements


def role_allows(action: str, resource: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in as_list(s["Resource"]))
        for s in role_statements()
    )


def test_only_batch_operations_can_assume_the_job_role() -> None:
    trust = RES["BackfillBatchRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "batchoperations.s3.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert "ManagedPolicyArns" not in RES["BackfillBatchRole"]["Properties"]


def test_the_job_role_invokes_only_the_backfill_function() -> None:
    assert role_allows("lambda:InvokeFunction", FUNCTION_ARN)
    processor = resolved({"Fn::GetAtt": ["ProcessImageFunction", "Arn"]})
    assert not role_allows("lambda:InvokeFunction", processor)
    assert not role_allows("lambda:InvokeFunction", f"{FUNCTION_ARN}:other")


def test_the_job_role_reads_manifests_and_writes_reports_where_the_command_puts_them() -> None:
    manifest = s3(BUCKET, f"{backfill_job.MANIFEST_PREFIX}20250101T000000Z-abcd.csv")
    inventory = s3(
        BUCKET, f"{backfill_job.INVENTORY_PREFIX}/{UPLOADS}/backfill/2025-01-01T01-00Z/manifest.json"
    )
    report = s3(BUCKET, f"{backfill_job.REPORT_PREFIX}/job-1/results/x.csv")
    assert role_allows("s3:GetObject", manifest)
    assert role_allows("s3:GetObject", inventory)
    assert role_allows("s3:PutObject", report)
    # and nothing else: no writes beside reports, no reads of reports, no avatar data at all
    assert not role_allows("s3:PutObject", manifest)
    assert not role_allows("s3:GetObject", report)
    for bucket, key in [(UPLOADS, UPLOAD_KEY)] + [(resolved({"Ref": "AssetsBucket"}), k) for k in ASSET_KEYS]:
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert not role_allows(action, s3(bucket, key)), (action, bucket, key)
    actions = {a for s in role_statements() for a in as_list(s["Action"])}
    assert actions == {
        "lambda:InvokeFunction",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObject",
        "s3:GetBucketLocation",
    }
    for statement in role_statements():
        for resource in as_list(statement["Resource"]):
            assert "*" not in resource.split("/", 1)[0], resource  # no wildcard bucket or function


def test_the_backfill_function_reads_originals_and_never_changes_them() -> None:
    assert allows("BackfillFunction", "s3:GetObjectVersion", s3(UPLOADS, UPLOAD_KEY))
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"):
        assert not allows("BackfillFunction", action, s3(UPLOADS, UPLOAD_KEY)), action
    for key in ASSET_KEYS:
        assert allows("BackfillFunction", "s3:PutObject", s3(resolved({"Ref": "AssetsBucket"}), key))
    assert not allows("BackfillFunction", "s3:PutObject", s3(BUCKET, "reports/x"))


def test_the_backfill_renders_the_processors_spec() -> None:
    backfill_env = resolved(RES["BackfillFunction"]["Properties"]["Environment"]["Variables"])
    processor_env = resolved(RES["ProcessImageFunction"]["Properties"]["Environment"]["Variables"])
    assert backfill_env == processor_env
    assert (
        RES["BackfillFunction"]["Properties"]["MemorySize"]
        == RES["ProcessImageFunction"]["Properties"]["MemorySize"]
    )
    # Invoked synchronously by Batch Operations: no asynchronous retries or destinations.
    assert not [
        c
        for c in RES.values()
        if c["Type"] == "AWS::Lambda::EventInvokeConfig"
        and c["Properties"]["FunctionName"] == {"Ref": "BackfillFunction"}
    ]


def test_backfill_concurrency_is_reserved_unless_set_to_0() -> None:
    for value, reserved in (("20", 20), ("0", None)):
        cfn, resolver = _build({"BackfillReservedConcurrency": value})
        got = resolver.resolve(cfn["Resources"]["BackfillFunction"]["Properties"]).get(
            "ReservedConcurrentExecutions"
        )
        assert (int(got) if got is not None else None) == reserved


def test_the_job_bucket_is_private_tls_only_and_expires_its_files() -> None:
    props = RES["BackfillBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert any(rule.get("ExpirationInDays") for rule in props["LifecycleConfiguration"]["Rules"])
    statements = bucket_policy("BackfillBucket")
    assert any(
        s["Effect"] == "Deny" and s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in statements
    )
    [allow] = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert as_list(allow["Action"]) == ["s3:PutObject"]
    assert as_list(allow["Resource"]) == [s3(BUCKET, "inventory/*")]
    assert allow["Condition"]["ArnLike"]["aws:SourceArn"] == s3(UPLOADS)
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT


def test_the_uploads_inventory_is_off_unless_asked_for_and_then_lands_where_the_command_looks() -> None:
    assert "InventoryConfigurations" not in resolved(RES["UploadsBucket"]["Properties"])
    cfn, resolver = _build({"BackfillInventory": "Weekly"})
    [config] = resolver.resolve(cfn["Resources"]["UploadsBucket"]["Properties"])["InventoryConfigurations"]
    assert config["Id"] == backfill_job.INVENTORY_ID
    assert config["IncludedObjectVersions"] == "Current"
    assert config["ScheduleFrequency"] == "Weekly"
    assert config["Destination"]["Prefix"] == backfill_job.INVENTORY_PREFIX
    assert config["Destination"]["Format"] == "CSV"
    assert config["Destination"]["BucketArn"] == resolver.resolve({"Fn::GetAtt": ["BackfillBucket", "Arn"]})


def test_the_outputs_give_the_command_what_it_needs() -> None:
    outputs = {name: resolved(o["Value"]) for name, o in CFN["Outputs"].items()}
    refs = backfill_job.StackRefs.from_outputs(outputs)
    assert refs.uploads_bucket == UPLOADS
    assert refs.function_arn == FUNCTION_ARN
    assert refs.role_arn == resolved({"Fn::GetAtt": ["BackfillBatchRole", "Arn"]})
