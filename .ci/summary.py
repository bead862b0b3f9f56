"""Summarise a `make test` run: each stage's status and time, each pytest suite's counts, a total.

Reads test-artifacts/stages.txt (written by the Makefile's test loop) and the junit XML files
pytest wrote beside it. Standard library only: it must run even when `make setup` failed.
Exits non-zero when any stage failed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

COUNTS = ("tests", "failures", "errors", "skipped")


def suite_counts(path: Path) -> dict[str, int]:
    # Our own pytest output, not untrusted XML.
    root = ET.parse(path).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    return {key: sum(int(s.get(key, 0)) for s in suites) for key in COUNTS}


def _failed(xml: Path) -> bool:
    counts = suite_counts(xml)
    return counts["failures"] + counts["errors"] > 0


def main(artifacts: str) -> int:
    folder = Path(artifacts)
    stages = [line.split() for line in (folder / "stages.txt").read_text().splitlines() if line.strip()]
    print("\n=== make test summary")
    for name, status, seconds in stages:
        print(f"  {name:<12} {status:<7} {int(seconds):>5d} s")
    total = dict.fromkeys(COUNTS, 0)
    for xml in sorted(folder.glob("junit-*.xml")):
        counts = suite_counts(xml)
        failed = counts["failures"] + counts["errors"]
        passed = counts["tests"] - failed - counts["skipped"]
        name = xml.stem.removeprefix("junit-")
        print(f"  {name:<24} {passed} passed, {failed} failed, {counts['skipped']} skipped")
        for key in COUNTS:
            total[key] += counts[key]
    failed = total["failures"] + total["errors"]
    passed = total["tests"] - failed - total["skipped"]
    broken = [name for name, status, _ in stages if status != "ok"]
    print(f"  stages failed: {', '.join(broken) if broken else 'none'}")
    # A stage that failed outside pytest (lint, sam build, demo, a collection error) counts as
    # one failure, so the closing line never reads "0 failed" for a failed run.
    failed_suites = {xml.stem.removeprefix("junit-") for xml in folder.glob("junit-*.xml") if _failed(xml)}
    failed += sum(1 for name in broken if name not in failed_suites)
    # The plain closing line CI reads: 'N passed, N failed, N skipped'.
    print(f"total: {passed} passed, {failed} failed, {total['skipped']} skipped")
    return 1 if broken or failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "test-artifacts"))
