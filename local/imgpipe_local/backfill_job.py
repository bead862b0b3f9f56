"""A backfill as an S3 Batch Operations job: manifest, job, progress, completion report.

- The manifest names every current original: a CSV written to the stack's backfill bucket from a
  listing of the uploads bucket (one LIST per 1,000 users), or, when the stack delivers an S3
  Inventory of the uploads bucket (`BackfillInventory`), the newest inventory's manifest.json
  as it is (no listing at all).
- The job invokes BackfillFunction (schema 2.0) once per original as the stack's
  BackfillBatchRole, with the spec it is meant to reach in its userArguments, and writes a
  completion report of every task under `reports/` in the backfill bucket.
- It is created with ConfirmationRequired: Batch Operations reads the manifest and counts the
  tasks first, and nothing runs until the job is confirmed (`confirm`) or is cancelled.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus

from imgpipe import backfill
from imgpipe.backfill import Answer

MANIFEST_PREFIX = "manifests/"
REPORT_PREFIX = "reports"
INVENTORY_PREFIX = "inventory"
INVENTORY_ID = "backfill"
CSV_FORMAT = "S3BatchOperations_CSV_20180820"
INVENTORY_FORMAT = "S3InventoryReport_CSV_20161130"
REPORT_FORMAT = "Report_CSV_20180820"
# A job waits in Suspended for its confirmation once Batch Operations has read its manifest.
AWAITING_CONFIRMATION = "Suspended"
FINISHED = {"Complete", "Failed", "Cancelled"}
PRIORITY = 10

# Prices assumed by `estimate` (US East (N. Virginia) list prices, as published on the S3 and
# Lambda pricing pages): S3 Batch Operations $0.25 per job and $1.00 per million tasks; Lambda
# arm64 $0.0000133334 per GB-second and $0.20 per million requests; S3 Standard $0.005 per 1,000
# PUT/COPY/POST/LIST and $0.0004 per 1,000 GET/HEAD requests.
PRICE_JOB = 0.25
PRICE_TASK = 1.00 / 1e6
PRICE_GB_SECOND_ARM = 0.0000133334
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_PUT = 0.005 / 1000
PRICE_GET = 0.0004 / 1000


@dataclass(frozen=True)
class StackRefs:
    """What a backfill job needs of a deployed stack (its outputs)."""

    uploads_bucket: str
    backfill_bucket: str
    function_arn: str
    function_name: str
    role_arn: str

    @property
    def account_id(self) -> str:
        return self.function_arn.split(":")[4]

    @property
    def partition(self) -> str:
        return self.function_arn.split(":")[1]

    def bucket_arn(self, bucket: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}"

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> StackRefs:
        names = {
            "uploads_bucket": "UploadsBucketName",
            "backfill_bucket": "BackfillBucketName",
            "function_arn": "BackfillFunctionArn",
            "function_name": "BackfillFunctionName",
            "role_arn": "BackfillRoleArn",
        }
        missing = [output for output in names.values() if not outputs.get(output)]
        if missing:
            raise SystemExit(f"the stack has no {', '.join(missing)} output: deploy this version first")
        return cls(**{field: outputs[output] for field, output in names.items()})


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


# ---------------------------------------------------------------- manifests


@dataclass(frozen=True)
class ManifestRef:
    bucket: str
    key: str
    etag: str
    format: str
    count: int | None  # originals listed (None for an inventory: Batch Operations counts them)


def manifest_csv(bucket: str, upload_keys: Iterable[str]) -> tuple[bytes, int]:
    """Batch Operations' CSV manifest: `bucket,key` per line, the key URL-encoded as it requires."""
    lines = [f"{bucket},{quote(key, safe='/')}\n" for key in upload_keys]
    return "".join(lines).encode(), len(lines)


def write_manifest(s3: Any, refs: StackRefs, upload_keys: Iterable[str]) -> ManifestRef:
    body, count = manifest_csv(refs.uploads_bucket, upload_keys)
    key = f"{MANIFEST_PREFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}.csv"
    put = s3.put_object(Bucket=refs.backfill_bucket, Key=key, Body=body, ContentType="text/csv")
    return ManifestRef(refs.backfill_bucket, key, put["ETag"].strip('"'), CSV_FORMAT, count)


def inventory_manifest(s3: Any, refs: StackRefs) -> ManifestRef | None:
    """The newest inventory of the uploads bucket delivered to the backfill bucket, if the stack
    keeps one (BackfillInventory) and it has been delivered at least once."""
    configs = s3.list_bucket_inventory_configurations(Bucket=refs.uploads_bucket)
    wanted = [
        c
        for c in configs.get("InventoryConfigurationList", [])
        if c.get("Id") == INVENTORY_ID
        and c.get("IsEnabled")
        and c.get("IncludedObjectVersions") == "Current"
        and c["Destination"]["S3BucketDestination"]["Bucket"] == refs.bucket_arn(refs.backfill_bucket)
    ]
    if not wanted:
        return None
    prefix = f"{INVENTORY_PREFIX}/{refs.uploads_bucket}/{INVENTORY_ID}/"
    manifests = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=refs.backfill_bucket, Prefix=prefix)
        for item in page.get("Contents", ())
        if item["Key"].endswith("/manifest.json") and "/hive/" not in item["Key"]
    ]
    if not manifests:
        return None
    # Delivery folders are named by date and time (YYYY-MM-DDTHH-MMZ): the greatest is the newest.
    key = max(manifests)
    head = s3.head_object(Bucket=refs.backfill_bucket, Key=key)
    return ManifestRef(refs.backfill_bucket, key, head["ETag"].strip('"'), INVENTORY_FORMAT, None)


# ---------------------------------------------------------------- the job


def create_job(
    s3control: Any, refs: StackRefs, manifest: ManifestRef, *, spec_digest: str, token: str | None = None
) -> str:
    """Create the job, waiting for confirmation; its id."""
    spec: dict[str, Any] = {"Format": manifest.format}
    if manifest.format == CSV_FORMAT:
        spec["Fields"] = ["Bucket", "Key"]
    response = s3control.create_job(
        AccountId=refs.account_id,
        ConfirmationRequired=True,
        Operation={
            "LambdaInvoke": {
                "FunctionArn": refs.function_arn,
                "InvocationSchemaVersion": backfill.SCHEMA_VERSION,
                "UserArguments": {backfill.ARG_SPEC: spec_digest, backfill.ARG_MODE: "apply"},
            }
        },
        Report={
            "Bucket": refs.bucket_arn(refs.backfill_bucket),
            "Prefix": REPORT_PREFIX,
            "Format": REPORT_FORMAT,
            "Enabled": True,
            "ReportScope": "AllTasks",
        },
        Manifest={
            "Spec": spec,
            "Location": {
                "ObjectArn": f"{refs.bucket_arn(manifest.bucket)}/{manifest.key}",
                "ETag": manifest.etag,
            },
        },
        Priority=PRIORITY,
        RoleArn=refs.role_arn,
        # Idempotent: the same token never creates a second job (a retried call after a timeout).
        ClientRequestToken=token or str(uuid.uuid4()),
        Description=f"imgpipe backfill to spec {spec_digest}",
    )
    job_id: str = response["JobId"]
    return job_id


@dataclass(frozen=True)
class JobStatus:
    status: str
    total: int
    succeeded: int
    failed: int
    elapsed_seconds: int
    failure_reasons: tuple[str, ...] = ()

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def describe(s3control: Any, account_id: str, job_id: str) -> JobStatus:
    job = s3control.describe_job(AccountId=account_id, JobId=job_id)["Job"]
    summary = job.get("ProgressSummary", {})
    return JobStatus(
        status=job["Status"],
        total=int(summary.get("TotalNumberOfTasks", 0)),
        succeeded=int(summary.get("NumberOfTasksSucceeded", 0)),
        failed=int(summary.get("NumberOfTasksFailed", 0)),
        elapsed_seconds=int(summary.get("Timers", {}).get("ElapsedTimeInActiveSeconds", 0)),
        failure_reasons=tuple(r.get("FailureReason", "") for r in job.get("FailureReasons", [])),
    )


def confirm(s3control: Any, account_id: str, job_id: str) -> None:
    s3control.update_job_status(
        AccountId=account_id, JobId=job_id, RequestedJobStatus="Ready", StatusUpdateReason="confirmed"
    )


def cancel(s3control: Any, account_id: str, job_id: str) -> None:
    s3control.update_job_status(
        AccountId=account_id, JobId=job_id, RequestedJobStatus="Cancelled", StatusUpdateReason="declined"
    )


def wait_for(
    s3control: Any,
    account_id: str,
    job_id: str,
    done: Callable[[JobStatus], bool],
    *,
    on_status: Callable[[JobStatus], None] | None = None,
    interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> JobStatus:
    """Poll the job until `done(status)` (or it has finished)."""
    while True:
        status = describe(s3control, account_id, job_id)
        if on_status is not None:
            on_status(status)
        if done(status) or status.finished:
            return status
        sleep(interval)


# ---------------------------------------------------------------- the completion report


def report_rows(
    s3: Any, bucket: str, job_id: str, prefix: str = REPORT_PREFIX
) -> Iterator[tuple[str, Answer]]:
    """(upload key, answer) for every task of the job's completion report.

    The report's manifest.json lists one CSV per task status. Its ReportSchema names the columns
    "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage", though AWS's
    own examples put the HTTP status before the error code: both middle columns are skipped.
    """
    manifest_key = f"{prefix}/job-{job_id}/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    for result in manifest.get("Results", []):
        body = s3.get_object(Bucket=result["Bucket"], Key=result["Key"])["Body"].read().decode()
        for row in csv.reader(io.StringIO(body)):
            if len(row) < 7:
                continue
            key, task_status, message = unquote_plus(row[1]), row[3], row[-1]
            code = "Succeeded" if task_status == "succeeded" else "PermanentFailure"
            yield key, Answer.parse(code, message)


# ---------------------------------------------------------------- cost


@dataclass(frozen=True)
class CostModel:
    """What one task costs: measured per re-render (README: requests counted against moto, duration
    at the function's memory), and for an avatar that is already current (one GET)."""

    memory_gb: float = 1.0
    rerender_seconds: float = 0.5
    current_seconds: float = 0.05
    rerender_puts: int = 14  # 12 rendition writes (6 versioned + 6 stable), avatar.json, the listing
    rerender_gets: int = 10  # avatar.json twice, the original, 6 stable-copy HEADs, the original's HEAD
    current_gets: int = 1


def estimate(tasks: int, stale: int, model: CostModel = CostModel()) -> dict[str, float]:
    """Projected USD of a job of `tasks` originals of which `stale` need re-rendering."""
    current = tasks - stale
    gb_seconds = model.memory_gb * (stale * model.rerender_seconds + current * model.current_seconds)
    return {
        "batch_operations": PRICE_JOB + tasks * PRICE_TASK,
        "lambda_compute": gb_seconds * PRICE_GB_SECOND_ARM,
        "lambda_requests": tasks * PRICE_LAMBDA_REQUEST,
        "s3_requests": stale * model.rerender_puts * PRICE_PUT
        + (stale * model.rerender_gets + current * model.current_gets) * PRICE_GET,
    }
