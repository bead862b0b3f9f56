"""Time per 1,000 avatars of a backfill on this machine (issue 10's note).

N users each get a 1,920x1,440 JPEG original processed by the processor with the old spec (moto
in-process, no S3 latency: this measures the machine's work), then `imgpipe backfill`'s one-machine
driver re-renders them through BackfillFunction's handler with a new spec (a third rendition,
another JPEG quality), then runs again (everything current). Reports wall and CPU time per 1,000.

    .venv/bin/python bench/backfill.py [N] [WORKERS]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def photo(i: int) -> bytes:
    image = Image.linear_gradient("L").resize((1920, 1440)).convert("RGB")
    image.putpixel((i % 1920, 0), (i % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "UPLOADS_BUCKET": "bench-uploads",
        "ASSETS_BUCKET": "bench-assets",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    os.environ.update(env)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    from imgpipe import avatars, keys
    from imgpipe.spec import AvatarSpec
    from imgpipe_local import backfill_cmd
    from imgpipe_local.handlers import load_module
    from tests.conftest import FakeLambdaContext

    with mock_aws():
        s3: Any = boto3.client("s3")
        for bucket in ("bench-uploads", "bench-assets"):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket="bench-uploads", VersioningConfiguration={"Status": "Enabled"})
        processor = load_module(ROOT / "functions/process_image")
        data = photo(0)
        for i in range(n):
            user = f"{i:08d}-0000-4000-8000-000000000000"
            put = s3.put_object(
                Bucket="bench-uploads", Key=keys.upload_key(user), Body=data, Metadata={"upload-id": f"u{i}"}
            )
            avatars.handle_upload(
                s3,
                processor.CONFIG,
                key=keys.upload_key(user),
                version_id=put["VersionId"],
                sequencer="0A",
                size=len(data),
                etag=None,
            )
        os.environ.update(
            {"RENDITIONS": "512x512:cover,256x256:cover,128x128:cover,64x64:cover", "JPEG_QUALITY": "78"}
        )
        fn = load_module(ROOT / "functions/backfill_avatars")
        invoke = lambda event: fn.lambda_handler(event, FakeLambdaContext())  # noqa: E731
        args = argparse.Namespace(dry_run=False, workers=workers)
        for label in ("re-render", "all current"):
            out, wall, used = io.StringIO(), time.perf_counter(), cpu()
            code = backfill_cmd.run_here(
                args,
                s3=s3,
                bucket="bench-uploads",
                invoke=invoke,
                spec=AvatarSpec.from_environ(),
                out=out,
                err=io.StringIO(),
            )
            wall, used = time.perf_counter() - wall, cpu() - used
            print(
                f"{label:12s} n={n} workers={workers}: {wall / n * 1000:6.1f} s wall, "
                f"{used / n * 1000:6.1f} s CPU per 1,000 avatars "
                f"(exit {code}; {out.getvalue().splitlines()[0]})"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
