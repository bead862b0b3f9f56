from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
FUNCTIONS = ROOT / "functions"


def _find_corpus() -> Path:
    """The shared Pillow corpus: $IMGPIPE_CORPUS, else `shared/corpus/pillow` beside a parent folder.

    A clone sits next to `shared/` (../shared); a git worktree or a CI checkout may sit deeper.
    """
    if os.environ.get("IMGPIPE_CORPUS"):
        return Path(os.environ["IMGPIPE_CORPUS"])
    candidates = [folder / "shared" / "corpus" / "pillow" for folder in ROOT.parents]
    return next((path for path in candidates if path.is_dir()), candidates[0])


CORPUS = _find_corpus()


def load_event(name: str) -> dict[str, Any]:
    """An events/<name>.json sample, the same file `sam local invoke -e` takes."""
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class FakeLambdaContext:
    function_name: str = "test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()
