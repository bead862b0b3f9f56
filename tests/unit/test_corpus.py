"""Every file of the shared hostile-image corpus through `imaging.process()`.

Each file must end as a Result whose outputs decode to what they claim, or as an
ImageRejected - never another exception, never a hang, never unbounded memory. The
corpus runs in a child process (this file run as a script) under an address-space
limit like a Lambda's memory size, with a per-file alarm as a safety net and an overall
timeout for the run; the parent checks the child's per-file verdicts.
"""

from __future__ import annotations

import collections
import io
import json
import resource
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

MEMORY_LIMIT = 1536 * 1024 * 1024
PER_FILE_SECONDS = 20
# The corpus takes ~20 s on one core of the 2-core CI box: a generous ceiling, not a benchmark.
RUN_TIMEOUT_SECONDS = 280


class _Timeout(Exception):
    pass


def _check_result(result: object) -> None:
    import base64

    from PIL import Image

    from imgpipe import imaging

    assert isinstance(result, imaging.Result)
    assert result.outputs
    for out in result.outputs:
        with Image.open(io.BytesIO(out.data), formats=[out.format.upper()]) as im:
            im.load()
            assert im.size == (out.width, out.height), (out.filename, im.size)
            assert not im.getexif(), out.filename
            assert "icc_profile" not in im.info, out.filename
    prefix = "data:image/webp;base64,"
    assert result.placeholder.startswith(prefix)
    assert len(result.placeholder) < 1024
    with Image.open(io.BytesIO(base64.b64decode(result.placeholder[len(prefix) :]))) as im:
        im.load()


def _child(corpus: Path) -> int:
    """Runs in the child: one JSON line per file on stdout."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    from imgpipe import imaging

    def alarm(_signum: int, _frame: object) -> None:
        raise _Timeout

    signal.signal(signal.SIGALRM, alarm)
    options = imaging.Options()
    for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
        verdict: dict[str, object] = {"path": str(path.relative_to(corpus))}
        signal.alarm(PER_FILE_SECONDS)
        try:
            result = imaging.process(path.read_bytes(), options)
            _check_result(result)
            verdict |= {"status": "accepted", "format": result.source_format}
        except imaging.ImageRejected as rejected:
            verdict |= {"status": "rejected", "reason": rejected.reason}
        except _Timeout:
            verdict |= {"status": "error", "error": f"took over {PER_FILE_SECONDS}s"}
        except BaseException as exc:  # the verdict the test exists to catch: report, keep going
            verdict |= {"status": "error", "error": "".join(traceback.format_exception(exc))[-1500:]}
        finally:
            signal.alarm(0)
        print(json.dumps(verdict), flush=True)
    return 0


@pytest.mark.corpus
def test_corpus_ends_in_results_or_rejections(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import CORPUS

    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    files = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file())

    # When the child runs the whole corpus under its memory limit and timeouts
    child = subprocess.run(
        [sys.executable, __file__, str(CORPUS)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )

    # Then every file has a verdict, and every verdict is a Result or an ImageRejected
    assert child.returncode == 0, child.stderr[-3000:]
    verdicts = [json.loads(line) for line in child.stdout.splitlines()]
    assert [v["path"] for v in verdicts] == files
    errors = [v for v in verdicts if v["status"] == "error"]
    assert not errors, "\n\n".join(f"{v['path']}:\n{v['error']}" for v in errors[:10])

    accepted = collections.Counter(v["format"] for v in verdicts if v["status"] == "accepted")
    rejected = collections.Counter(v["reason"] for v in verdicts if v["status"] == "rejected")
    with capsys.disabled():
        print(f"\ncorpus: {len(verdicts)} files")
        print(f"  accepted {sum(accepted.values())} {dict(accepted.most_common())}")
        print(f"  rejected {sum(rejected.values())} {dict(rejected.most_common())}")
    # Every allow-listed format has decodable members in the corpus; losing them all would
    # mean the allow-list or a decoder broke, not that the corpus is hostile.
    assert {"jpeg", "png", "gif", "webp"} <= set(accepted)


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
