"""`imgpipe backfill` against a running local stack, as a user runs it: the command in a process of
its own finds the stack through its config.json and drives the stack's BackfillFunction (its
worker processes) through the Lambda API, with S3 Batch Operations' event per original.

Avatars are made by the stack's processor with the old spec; `LocalStack.update` then deploys the
new spec to every function, data kept, as `sam deploy` would.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgpipe import keys
from imgpipe.spec import AvatarSpec
from imgpipe_local import samples
from imgpipe_local.stack import LocalStack, Ports
from tests.conftest import ROOT
from tests.integration.test_backfill import Driven

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

IMGPIPE = Path(sys.executable).with_name("imgpipe")
OLD = {"Renditions": "128x128:cover,64x64:cover", "JpegQuality": "80"}
NEW = {"Renditions": "128x128:cover,64x64:cover,32x32:contain", "JpegQuality": "70"}


def users(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


@pytest.fixture(scope="module")
def started() -> Iterator[LocalStack]:
    with LocalStack(root=ROOT, ports=LocalStack.free_ports(), parameters=OLD) as stack:
        yield stack


@pytest.fixture
def stack(started: LocalStack) -> LocalStack:
    """The module's stack, emptied, on the old spec, with no added AWS latency."""
    started.wait_idle()
    s3 = started.client("s3")
    for bucket in (started.outputs["UploadsBucketName"], started.outputs["AssetsBucketName"]):
        listing = s3.list_object_versions(Bucket=bucket)
        for item in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
            s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    started.update(OLD)
    assert started.runtime is not None
    started.runtime.set_aws_latency(0)
    return started


def upload(stack: LocalStack, user: str, data: bytes, upload_id: str) -> str:
    """Store an original as the presigned POST does; the stack's processor picks it up."""
    put = stack.client("s3").put_object(
        Bucket=stack.outputs["UploadsBucketName"],
        Key=keys.upload_key(user),
        Body=data,
        ContentType="image/jpeg",
        Metadata={"upload-id": upload_id},
    )
    return str(put["VersionId"])


def populate(stack: LocalStack, names: list[str], size: tuple[int, int] = (800, 600)) -> None:
    for i, user in enumerate(names):
        upload(stack, user, samples.photo_jpeg(*size, quality=80 + i % 10), f"up-{user}")
    stack.wait_idle(timeout=120)


def manifest(stack: LocalStack, user: str) -> dict[str, Any]:
    body = stack.client("s3").get_object(
        Bucket=stack.outputs["AssetsBucketName"], Key=keys.manifest_key(user)
    )
    return dict(json.loads(body["Body"].read()))


def digest(stack: LocalStack) -> str:
    """The digest of the spec the stack's functions render now."""
    assert stack.template is not None
    return AvatarSpec.from_environ(stack.template.functions["BackfillFunction"].environment).digest()


def assets(stack: LocalStack) -> dict[str, str]:
    listing = stack.client("s3").list_objects_v2(Bucket=stack.outputs["AssetsBucketName"])
    return {item["Key"]: item["ETag"] for item in listing.get("Contents", [])}


def stable_copies_show(stack: LocalStack, user: str, version: str) -> bool:
    s3 = stack.client("s3")
    for rendition in manifest(stack, user)["avatar"]["renditions"]:
        head = s3.head_object(Bucket=stack.outputs["AssetsBucketName"], Key=rendition["stableUrl"])
        if head["Metadata"].get("imgpipe-version") != version:
            return False
    return True


def backfill(stack: LocalStack, *args: str) -> Driven:
    result = subprocess.run(
        [str(IMGPIPE), "backfill", "--dev", stack.web_url, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Driven(result.returncode, result.stdout, result.stderr)


# ---------------------------------------------------------------- runs


def test_a_spec_change_rerenders_exactly_the_stale_avatars_and_a_second_run_does_nothing(
    stack: LocalStack,
) -> None:
    # Given four avatars made by the old spec and a user whose only upload was rejected
    old = users(4)
    populate(stack, old)
    upload(stack, "only-rejected", samples.not_an_image(), "up-bad")
    stack.wait_idle()
    before = {user: manifest(stack, user) for user in old}
    # When the new spec is deployed, one user uploads again (rendered with it), and the backfill runs
    stack.update(NEW)
    upload(stack, "fresh", samples.photo_jpeg(600, 800), "up-fresh")
    stack.wait_idle()
    first = backfill(stack, "--workers", "2")

    # Then exactly the four stale avatars were re-rendered, the upload's status kept
    assert first.code == 0, first.out + first.err
    assert first.counts() == Counter(rerendered=4, current=1, skipped=1, rejected=0, failed=0)
    for user in old:
        doc = manifest(stack, user)
        assert doc["avatar"]["spec"]["digest"] == digest(stack)
        assert doc["avatar"]["version"] != before[user]["avatar"]["version"]
        assert (doc["latest"], doc["sequencer"]) == (before[user]["latest"], before[user]["sequencer"])
        assert [(r["name"], r["format"]) for r in doc["avatar"]["renditions"]][-2:] == [
            ("32x32", "jpeg"),
            ("32x32", "webp"),
        ]
        assert stable_copies_show(stack, user, doc["avatar"]["version"])
    assert manifest(stack, "only-rejected")["avatar"] is None
    assert "[########################] 6/6" in first.err  # the progress line's last state

    # And a second run finds everything current and writes nothing
    snapshot = assets(stack)
    second = backfill(stack)
    assert second.code == 0, second.out + second.err
    assert second.counts() == Counter(rerendered=0, current=5, skipped=1, rejected=0, failed=0)
    assert assets(stack) == snapshot


def test_a_dry_run_lists_the_stale_avatars_and_changes_nothing(stack: LocalStack) -> None:
    populate(stack, users(3))
    stack.update(NEW)
    snapshot = assets(stack)

    result = backfill(stack, "--dry-run")

    assert result.code == 0, result.out + result.err
    assert result.counts() == Counter(stale=3, current=0, skipped=0)
    for user in users(3):
        assert re.search(rf"stale +{keys.upload_key(user)}  [0-9a-f]{{16}}", result.out)
    assert assets(stack) == snapshot


def test_ctrl_c_stops_the_run_between_avatars_and_the_same_command_finishes_it(stack: LocalStack) -> None:
    # Given six stale avatars, each re-render made slower by 150 ms per S3 call
    names = users(6)
    populate(stack, names)
    stack.update(NEW)
    assert stack.runtime is not None
    stack.runtime.pools["BackfillFunction"].retire(latency_ms=150)
    new = digest(stack)

    # When the command gets a real SIGINT once two avatars are done
    process = subprocess.Popen(
        [str(IMGPIPE), "backfill", "--dev", stack.web_url, "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while sum(manifest(stack, u)["avatar"]["spec"]["digest"] == new for u in names) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no avatar re-rendered in 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then it finished the avatar in flight, reported, and exited 130; each avatar is done or untouched
    first = Driven(process.returncode, out, err)
    assert first.code == 130, out + err
    assert "interrupted: run the same command again" in err
    done = [u for u in names if manifest(stack, u)["avatar"]["spec"]["digest"] == new]
    assert 2 <= first.counts()["rerendered"] == len(done) < len(names)
    for user in done:
        assert stable_copies_show(stack, user, manifest(stack, user)["avatar"]["version"])

    # When the same command runs again, it renders only the rest
    second = backfill(stack, "--workers", "1")
    assert second.code == 0, second.out + second.err
    assert second.counts()["rerendered"] == len(names) - len(done)
    assert second.counts()["current"] == len(done)
    assert all(manifest(stack, u)["avatar"]["spec"]["digest"] == new for u in names)


def rendition_versions(stack: LocalStack, user: str) -> set[str]:
    """The versions with renditions under the user's versioned keys (a re-render writes its own
    before it commits avatar.json)."""
    prefix = f"{keys.user_prefix(user)}v/"
    listing = stack.client("s3").list_objects_v2(Bucket=stack.outputs["AssetsBucketName"], Prefix=prefix)
    return {item["Key"][len(prefix) :].split("/")[0] for item in listing.get("Contents", [])}


def test_a_second_ctrl_c_quits_at_once_and_the_avatar_in_flight_still_finishes(stack: LocalStack) -> None:
    # Given three stale avatars, each re-render slowed to seconds (500 ms per S3 call)
    names = users(3)
    populate(stack, names)
    shown = manifest(stack, names[1])["avatar"]["version"]
    stack.update(NEW)
    assert stack.runtime is not None
    stack.runtime.pools["BackfillFunction"].retire(latency_ms=500)
    new = digest(stack)
    process = subprocess.Popen(
        [str(IMGPIPE), "backfill", "--dev", stack.web_url, "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # When Ctrl-C comes twice while the second avatar's re-render has written its renditions
        # but not yet committed
        deadline = time.monotonic() + 120
        while rendition_versions(stack, names[1]) == {shown}:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=2)  # its commit alone is 0.5 s away, its end ~1.5 s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then the command quit at once, without a summary
    assert process.returncode == 130, out + err
    assert "quit: the avatars in flight finish in the function" in err
    assert "re-rendered" not in out
    # And the re-render it left finishes in the function; the next run does only what is left
    deadline = time.monotonic() + 60
    while manifest(stack, names[1])["avatar"]["spec"]["digest"] != new:
        assert time.monotonic() < deadline, "the re-render in flight never finished"
        time.sleep(0.1)
    again = backfill(stack)
    assert again.code == 0, again.out + again.err
    assert (again.counts()["current"], again.counts()["rerendered"]) == (2, 1)


def test_a_refused_rerender_is_reported_recorded_and_not_a_failure(stack: LocalStack) -> None:
    # Given an avatar of a 1.9 MP photo and a small one, then a spec that also lowers the pixel limit
    big, small = "big", "small"
    populate(stack, [big], size=(1600, 1200))
    populate(stack, [small])
    shown = manifest(stack, big)
    stack.update({**NEW, "MaxImagePixels": "1000000"})

    result = backfill(stack)

    assert result.code == 0, result.out + result.err
    assert result.counts() == Counter(rerendered=1, current=0, skipped=0, rejected=1, failed=0)
    assert re.search(rf"rejected +{keys.upload_key(big)}  too_many_pixels: ", result.out)
    doc = manifest(stack, big)
    assert (doc["avatar"], doc["latest"]) == (shown["avatar"], shown["latest"])
    assert doc["rerender"]["reason"] == "too_many_pixels"

    # And the next run reports it again from avatar.json, writing nothing
    snapshot = assets(stack)
    again = backfill(stack)
    assert again.counts() == Counter(rerendered=0, current=1, skipped=0, rejected=1, failed=0)
    assert assets(stack) == snapshot


def test_an_upload_committed_while_a_rerender_works_is_never_overwritten(stack: LocalStack) -> None:
    # Given a stale avatar, a warm processor on the new spec, and a backfill whose every S3 call
    # waits 1 s (its re-render reads, renders, writes its renditions, then commits 1 s later; the
    # processor takes ~0.2 s from upload to commit here)
    user = "racer"
    populate(stack, [user])
    old_version = manifest(stack, user)["avatar"]["version"]
    stack.update(NEW)
    populate(stack, ["warm-up"])
    assert stack.runtime is not None
    stack.runtime.pools["BackfillFunction"].retire(latency_ms=1000)
    process = subprocess.Popen(
        [str(IMGPIPE), "backfill", "--dev", stack.web_url, "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # When the re-render's renditions are written (its commit still ahead), the user uploads
        deadline = time.monotonic() + 120
        while rendition_versions(stack, user) == {old_version}:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        version_id = upload(stack, user, samples.photo_jpeg(640, 480), "up-new")
        stack.wait_idle()
        committed = manifest(stack, user)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then the upload committed first and the re-render gave up: the newer avatar is what
    # avatar.json and the stable URLs show
    assert committed["latest"]["uploadId"] == "up-new"
    result = Driven(process.returncode, out, err)
    assert result.code == 0, out + err
    assert result.counts()["rerendered"] == 0
    assert result.counts()["skipped"] == 1  # superseded
    doc = manifest(stack, user)
    assert doc == committed
    assert doc["avatar"]["originalVersionId"] == version_id
    assert stable_copies_show(stack, user, doc["avatar"]["version"])


# ---------------------------------------------------------------- the README, as written


def test_the_readme_says_backfill_dry_run_works_against_make_dev(tmp_path: Path) -> None:
    """The README's local backfill line, run exactly as written, against a stack on the default
    ports (named `readme_says`: it binds them, as `make dev` does)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Re-rendering stored avatars") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block
    [line] = [
        line
        for line in block.group(1).splitlines()
        if line.startswith(".venv/bin/imgpipe backfill") and "--stack-name" not in line
    ]
    assert shutil.which("bash")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")

    with LocalStack(root=ROOT, ports=Ports(), parameters=OLD) as stack:
        populate(stack, users(2))
        stack.update(NEW)
        result = subprocess.run(
            ["bash", "-e", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 would be re-rendered, 0 already current" in result.stdout
