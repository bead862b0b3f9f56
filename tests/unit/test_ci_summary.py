"""`make test`'s closing summary (.ci/summary.py): counts from pytest's junit XML, failed stages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

SUMMARY = ROOT / ".ci" / "summary.py"


def junit(tests: int, failures: int = 0, errors: int = 0, skipped: int = 0) -> str:
    # The shape pytest writes: <testsuites><testsuite .../></testsuites>
    return (
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="{tests}" '
        f'failures="{failures}" errors="{errors}" skipped="{skipped}" time="1.0"/></testsuites>'
    )


def run(folder) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SUMMARY), str(folder)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture
def artifacts(tmp_path):
    (tmp_path / "junit-unit.xml").write_text(junit(10, skipped=2))
    (tmp_path / "junit-integration.xml").write_text(junit(5))
    return tmp_path


def test_all_green_ends_with_the_plain_closing_line_and_exit_0(artifacts):
    (artifacts / "stages.txt").write_text("lint ok 3\nunit ok 40\nintegration ok 30\n")
    result = run(artifacts)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "total: 13 passed, 0 failed, 2 skipped"
    assert "unit                     8 passed, 0 failed, 2 skipped" in result.stdout


def test_failed_tests_count_and_fail_the_run(artifacts):
    (artifacts / "junit-integration.xml").write_text(junit(5, failures=1, errors=1))
    (artifacts / "stages.txt").write_text("unit ok 40\nintegration FAILED 30\n")
    result = run(artifacts)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "total: 11 passed, 2 failed, 2 skipped"


def test_a_stage_failing_outside_pytest_is_never_reported_as_0_failed(artifacts):
    (artifacts / "stages.txt").write_text("lint FAILED 3\nunit ok 40\nintegration ok 30\nbuild FAILED 9\n")
    result = run(artifacts)
    assert result.returncode == 1
    assert "stages failed: lint, build" in result.stdout
    assert result.stdout.splitlines()[-1] == "total: 13 passed, 2 failed, 2 skipped"
