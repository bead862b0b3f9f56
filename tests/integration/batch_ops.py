"""S3 Batch Operations, emulated behind a real boto3 s3control client, for tests.

moto (5.2.5, the newest release) implements none of Batch Operations: CreateJob, DescribeJob and
UpdateJobStatus answer 404. This stands in for the service on a real client: botocore still
validates every request against the s3control API model (a wrong shape fails as it would
against AWS), then a `before-call` hook answers it from the behaviour AWS documents:

- CreateJob reads the manifest from S3 (moto) and refuses an ETag that does not match; with
  ConfirmationRequired the job waits in `Suspended` with its tasks counted.
- UpdateJobStatus(Ready) runs every task: one Lambda invocation each with the schema-2.0 event
  (job.userArguments, tasks[].s3Bucket / s3Key URL-encoded / s3VersionId), a TemporaryFailure
  redriven (`redrives` more times), a task missing from `results` counted as
  `treatMissingKeysAs`, a function error counted as a failure; then the completion report
  (manifest.json + one CSV per task status, AWS's column order) under <prefix>/job-<id>/.
- DescribeJob reports Status and ProgressSummary.

What it cannot show: IAM (the role's grants are checked on the template instead), Lambda
throttling and concurrency, and Batch Operations' real scheduling.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from botocore.awsrequest import AWSResponse

Invoke = Callable[[dict[str, Any]], Mapping[str, Any]]


def _bucket_and_key(arn: str) -> tuple[str, str]:
    bucket, _, key = arn.split(":::", 1)[1].partition("/")
    return bucket, key


class BatchOperations:
    def __init__(self, s3control: Any, s3: Any, invoke: Invoke, *, redrives: int = 2) -> None:
        self.s3 = s3
        self.invoke = invoke
        self.redrives = redrives
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.invocations: list[dict[str, Any]] = []
        events = s3control.meta.events
        for operation, handler in [
            ("CreateJob", self._create_job),
            ("DescribeJob", self._describe_job),
            ("UpdateJobStatus", self._update_job_status),
        ]:
            # The call's parameters as given, kept for the answer; botocore validates them in between.
            events.register(f"provide-client-params.s3-control.{operation}", self._keep)
            events.register(f"before-call.s3-control.{operation}", self._answering(handler))

    @staticmethod
    def _keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["emulated-params"] = dict(params)

    @staticmethod
    def _answering(
        handler: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Callable[..., tuple[Any, dict[str, Any]]]:
        def answer(context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
            parsed = handler(context["emulated-params"])
            parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200})
            return AWSResponse("https://s3-control.emulated", 200, {}, None), parsed

        return answer

    # ---------------------------------------------------------------- the API

    def _create_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(("CreateJob", params))
        manifest = params["Manifest"]
        bucket, key = _bucket_and_key(manifest["Location"]["ObjectArn"])
        head = self.s3.head_object(Bucket=bucket, Key=key)
        if head["ETag"].strip('"') != manifest["Location"]["ETag"].strip('"'):
            raise AssertionError("the manifest's ETag does not match the object (AWS fails the job)")
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        fmt = manifest["Spec"]["Format"]
        if fmt != "S3BatchOperations_CSV_20180820":
            raise AssertionError(f"this emulator reads CSV manifests only, not {fmt}")
        fields = manifest["Spec"]["Fields"]
        tasks = [dict(zip(fields, row, strict=True)) for row in csv.reader(io.StringIO(body)) if row]
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = {
            "params": params,
            "tasks": tasks,
            "status": "Suspended" if params["ConfirmationRequired"] else "Ready",
            "succeeded": 0,
            "failed": 0,
        }
        if not params["ConfirmationRequired"]:
            self._run(job_id)
        return {"JobId": job_id}

    def _describe_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(("DescribeJob", params))
        job = self.jobs[params["JobId"]]
        return {
            "Job": {
                "JobId": params["JobId"],
                "Status": job["status"],
                "ProgressSummary": {
                    "TotalNumberOfTasks": len(job["tasks"]),
                    "NumberOfTasksSucceeded": job["succeeded"],
                    "NumberOfTasksFailed": job["failed"],
                    "Timers": {"ElapsedTimeInActiveSeconds": 1},
                },
            }
        }

    def _update_job_status(self, params: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(("UpdateJobStatus", params))
        job = self.jobs[params["JobId"]]
        assert job["status"] == "Suspended", "only a job awaiting confirmation can be confirmed or cancelled"
        if params["RequestedJobStatus"] == "Cancelled":
            job["status"] = "Cancelled"
        else:
            self._run(params["JobId"])
        return {"JobId": params["JobId"], "Status": job["status"]}

    # ---------------------------------------------------------------- running a job

    def _run(self, job_id: str) -> None:
        job = self.jobs[job_id]
        operation = job["params"]["Operation"]["LambdaInvoke"]
        assert operation["InvocationSchemaVersion"] == "2.0"
        rows: list[list[str]] = []
        for number, task in enumerate(job["tasks"]):
            succeeded, message = self._task(job_id, number, task, operation)
            job["succeeded" if succeeded else "failed"] += 1
            status = "succeeded" if succeeded else "failed"
            error = "" if succeeded else "PermanentFailure"
            # AWS's completion reports carry the key as it was in the manifest (URL-encoded).
            rows.append(
                [task["Bucket"], task["Key"], task.get("VersionId", ""), status, "200", error, message]
            )
        job["status"] = "Complete"
        self._report(job_id, rows)

    def _task(
        self, job_id: str, number: int, task: dict[str, str], operation: dict[str, Any]
    ) -> tuple[bool, str]:
        task_id = f"task-{number}"
        code, message = "PermanentFailure", ""
        for _ in range(1 + self.redrives):
            event = {
                "invocationSchemaVersion": "2.0",
                "invocationId": uuid.uuid4().hex,
                "job": {"id": job_id, "userArguments": operation.get("UserArguments", {})},
                "tasks": [
                    {
                        "taskId": task_id,
                        "s3Key": quote(unquote(task["Key"]), safe="/"),
                        "s3VersionId": task.get("VersionId") or None,
                        "s3Bucket": task["Bucket"],
                    }
                ],
            }
            self.invocations.append(event)
            try:
                response = self.invoke(event)
            except Exception as error:  # a function error: the attempt failed
                code, message = "TemporaryFailure", f"Lambda returned function error: {error}"
                continue
            assert response["invocationId"] == event["invocationId"]
            results = {r["taskId"]: r for r in response.get("results", [])}
            result = results.get(task_id)
            if result is None:
                code, message = response.get("treatMissingKeysAs", "Succeeded"), ""
            else:
                code, message = result["resultCode"], result.get("resultString") or ""
            if code != "TemporaryFailure":
                break
        return code == "Succeeded", message

    def _report(self, job_id: str, rows: list[list[str]]) -> None:
        report = self.jobs[job_id]["params"]["Report"]
        if not report.get("Enabled"):
            return
        bucket, _ = _bucket_and_key(report["Bucket"])
        prefix = f"{report['Prefix']}/job-{job_id}"
        results = []
        for status in ("succeeded", "failed"):
            chosen = [row for row in rows if row[3] == status]
            if not chosen:
                continue
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(chosen)
            body = out.getvalue().encode()
            key = f"{prefix}/results/{hashlib.sha1(body).hexdigest()}.csv"
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
            results.append(
                {
                    "TaskExecutionStatus": status,
                    "Bucket": bucket,
                    "MD5Checksum": hashlib.md5(body).hexdigest(),
                    "Key": key,
                }
            )
        manifest = {
            "Format": "Report_CSV_20180820",
            "ReportCreationDate": "2024-01-01T00:00:00.000Z",
            "Results": results,
            "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
        }
        self.s3.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=json.dumps(manifest).encode())
