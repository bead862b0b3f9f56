"""The backfill's task protocol: S3 Batch Operations' Lambda invocation (schema 2.0), both sides.

BackfillFunction answers Batch Operations' events (`answer`); `imgpipe backfill` builds the very
same events for the runs it drives itself (`task_event`) and reads the answers (`read_answer`),
so a Batch Operations job and a run on one machine go through one contract and one unit
(`imgpipe.avatars.rerender_avatar`), and one test suite covers both.

The shapes are AWS's (S3 User Guide, "Invoke AWS Lambda function", schema 2.0): the event names
the job (`job.id`, `job.userArguments`) and its tasks (`taskId`, `s3Bucket`, `s3Key` URL-encoded,
`s3VersionId` or null); the answer echoes `invocationSchemaVersion` and `invocationId`, says what
a task left out of `results` counts as (`treatMissingKeysAs`), and gives each task a
`resultCode` (`Succeeded`, `TemporaryFailure` to be redriven, `PermanentFailure`) and a
`resultString` that the completion report carries.

A result string is `<outcome> <detail>`: the report stays readable, and the command reads the
outcome back from its first word:

    rerendered <version>              Succeeded
    current                           Succeeded: already made by this spec
    skipped <reason>                  Succeeded: nothing to do (no_avatar, superseded, gone, ...)
    stale <spec> pipeline <n> | none  Succeeded, mode=check only: would be re-rendered (what made it)
    rejected <code>: <message>        PermanentFailure: this spec cannot render the original
    failed <reason>: <message>        TemporaryFailure (retry may help) or PermanentFailure
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import quote

from aws_lambda_powertools.utilities.data_classes.s3_batch_operation_event import (
    S3BatchOperationEvent,
    S3BatchOperationResponseRecord,
)
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from imgpipe import avatars, keys
from imgpipe.avatar_store import S3Client, error_code

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "2.0"
# userArguments (Batch Operations passes at most 10, string to string).
ARG_SPEC = "spec"  # digest of the spec the run was started for; another one fails the task
ARG_MODE = "mode"  # "apply" (the default) or "check": report what would change, write nothing
MODES = ("apply", "check")
# A task the answer leaves out is a failure, never a silent success.
TREAT_MISSING_KEYS_AS = "PermanentFailure"

ResultCode = Literal["Succeeded", "TemporaryFailure", "PermanentFailure"]
Outcome = Literal["rerendered", "current", "skipped", "stale", "rejected", "failed"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

# S3 error codes a retry can clear: throttling, S3's own hiccups, a conditional write racing another.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "ConditionalRequestConflict",
}


@dataclass(frozen=True)
class Answer:
    """One task's result: what Batch Operations is told and what the command counts."""

    code: ResultCode
    outcome: Outcome
    detail: str = ""

    @property
    def result_string(self) -> str:
        return f"{self.outcome} {self.detail}".rstrip()

    @classmethod
    def parse(cls, code: str, result_string: str | None) -> Answer:
        """An answer read back from a response or a completion report; anything not written by
        `run_task` (a Lambda error, a timeout) is a failure carrying the text as its detail."""
        codes: tuple[ResultCode, ...] = get_args(ResultCode)
        result_code: ResultCode = next((c for c in codes if c == code), "PermanentFailure")
        word, _, detail = (result_string or "").partition(" ")
        outcome = next((o for o in OUTCOMES if o == word), None)
        if outcome is None:
            return cls(result_code, "failed", result_string or "no result string")
        return cls(result_code, outcome, detail)


# ---------------------------------------------------------------- the function's side


def answer(
    s3: S3Client,
    cfg: avatars.Config,
    event: S3BatchOperationEvent,
    *,
    on_answer: Callable[[Answer], None] | None = None,
) -> dict[str, Any]:
    """The response to one Batch Operations invocation: every task answered on its own."""
    arguments = event.job.user_arguments
    records = []
    for task in event.tasks:
        result = run_task(s3, cfg, bucket=task.s3_bucket, key=task.s3_key, arguments=arguments)
        level = logging.INFO if result.code == "Succeeded" else logging.WARNING
        logger.log(
            level,
            "backfill task answered",
            extra={"taskId": task.task_id, "key": task.s3_key, "result": result.result_string},
        )
        if on_answer is not None:
            on_answer(result)
        record = S3BatchOperationResponseRecord(task.task_id, result.code, result.result_string)
        records.append(record.asdict())
    return {
        "invocationSchemaVersion": event.invocation_schema_version,
        "treatMissingKeysAs": TREAT_MISSING_KEYS_AS,
        "invocationId": event.invocation_id,
        "results": records,
    }


def run_task(
    s3: S3Client, cfg: avatars.Config, *, bucket: str, key: str, arguments: Mapping[str, str]
) -> Answer:
    """Bring the avatar of the user whose original is `bucket`/`key` (decoded) to `cfg`'s spec."""
    digest = cfg.rendering.digest()
    expected = arguments.get(ARG_SPEC)
    if expected and expected != digest:
        # The stack's spec changed after the run started: finishing with another spec than the
        # one the run was started (and counted) for would leave a mix nobody asked for.
        return Answer(
            "PermanentFailure",
            "failed",
            f"spec_changed: this function renders spec {digest}, the run was started for {expected}; "
            "start the backfill again",
        )
    mode = arguments.get(ARG_MODE) or "apply"
    if mode not in MODES:
        return Answer("PermanentFailure", "failed", f"bad_argument: mode must be one of {', '.join(MODES)}")
    if bucket != cfg.uploads_bucket:
        return Answer("PermanentFailure", "failed", f"wrong_bucket: {bucket} is not the uploads bucket")
    user = keys.user_from_upload_key(key)
    if user is None:
        return Answer("Succeeded", "skipped", "not_an_upload_key")
    try:
        return _check(s3, cfg, user) if mode == "check" else _apply(s3, cfg, user)
    except (ClientError, BotoCoreError, avatars.CommitConflict, avatars.SettleConflict) as error:
        retry = is_transient(error)
        logger.warning("backfill task failed", extra={"user": user, "retry": retry}, exc_info=error)
        code: ResultCode = "TemporaryFailure" if retry else "PermanentFailure"
        return Answer(code, "failed", f"{_error_name(error)}: {error}")


def _check(s3: S3Client, cfg: avatars.Config, user: str) -> Answer:
    plan = avatars.check_avatar(s3, cfg, user)
    if plan.skip is None:
        recorded = plan.recorded
        made = f"{recorded.spec} pipeline {recorded.pipeline}" if recorded else "none"
        return Answer("Succeeded", "stale", made)
    if plan.skip == "current":
        return Answer("Succeeded", "current")
    if plan.skip == "rejected":
        note = plan.rejected or {}
        return Answer("Succeeded", "rejected", f"{note.get('reason')}: {note.get('message')}")
    return Answer("Succeeded", "skipped", plan.skip)


def _apply(s3: S3Client, cfg: avatars.Config, user: str) -> Answer:
    outcome = avatars.rerender_avatar(s3, cfg, user)
    if outcome.status == "processed":
        return Answer("Succeeded", "rerendered", outcome.version or "")
    if outcome.status == "rejected":
        # Permanent: the report lists it as failed with its reason, and it is never redriven.
        return Answer("PermanentFailure", "rejected", f"{outcome.reason}: {outcome.message}")
    if outcome.reason == "current":
        return Answer("Succeeded", "current")
    # "stale" here: a newer upload committed meanwhile, rendered by the processor with this spec.
    reason = "superseded" if outcome.reason in ("stale", "duplicate") else outcome.reason
    return Answer("Succeeded", "skipped", reason or "")


def is_transient(error: BaseException) -> bool:
    """Whether retrying the task later can succeed where it just failed."""
    if isinstance(error, avatars.CommitConflict | avatars.SettleConflict):
        return True
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return error_code(error) in _TRANSIENT_CODES or status >= 500 or status in (409, 429)
    # Connection, timeout and read errors; a request we built wrongly is a bug, not bad luck.
    return isinstance(error, BotoCoreError) and not isinstance(error, ParamValidationError)


def _error_name(error: BaseException) -> str:
    return error_code(error) if isinstance(error, ClientError) else type(error).__name__


# ---------------------------------------------------------------- the caller's side


@dataclass(frozen=True)
class Task:
    task_id: str
    bucket: str
    key: str
    version_id: str | None = None


def task_event(
    tasks: Iterable[Task], *, job_id: str, invocation_id: str, user_arguments: Mapping[str, str]
) -> dict[str, Any]:
    """The event Batch Operations sends for `tasks` (keys URL-encoded, as it sends them)."""
    return {
        "invocationSchemaVersion": SCHEMA_VERSION,
        "invocationId": invocation_id,
        "job": {"id": job_id, "userArguments": dict(user_arguments)},
        "tasks": [
            {
                "taskId": task.task_id,
                "s3Key": quote(task.key, safe="/"),
                "s3VersionId": task.version_id,
                "s3Bucket": task.bucket,
            }
            for task in tasks
        ],
    }


def read_answer(response: Mapping[str, Any], task_id: str) -> Answer:
    """Task `task_id`'s answer in a function's response, as Batch Operations reads it."""
    for result in response.get("results") or ():
        if result.get("taskId") == task_id:
            return Answer.parse(str(result.get("resultCode")), result.get("resultString"))
    # Batch Operations' own default when the answer does not say is Succeeded.
    missing = str(response.get("treatMissingKeysAs") or "Succeeded")
    return Answer.parse(missing, "failed missing_result: the response has no result for this task")
