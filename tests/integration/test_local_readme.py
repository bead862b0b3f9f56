"""The README's local-stack recipes, run exactly as written against a stack on the default ports.

Named `readme_says` like the `make dev` test: both bind 5100/3000/3100/8000, which another
checkout running the same tests at the same moment would hold.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from imgpipe_local import samples
from imgpipe_local.stack import LocalStack, Ports
from tests.conftest import ROOT

README = ROOT / "README.md"


def code_block(after_heading: str) -> str:
    """The first ```sh block under `after_heading` in the README, as a reader would copy it."""
    text = README.read_text()
    section = text[text.index(after_heading) :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, f"no sh block under {after_heading!r} in the README"
    return match.group(1)


def require_default_ports() -> None:
    for port in (Ports.moto, Ports.api, Ports.cdn, Ports.web):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pytest.fail(f"port {port} is taken by something else; the README's commands use the defaults")


def test_the_readme_says_curl_flow_works_against_the_local_stack(tmp_path: Path) -> None:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    assert not missing, f"the README's curl flow needs {missing}"
    require_default_ports()
    # Given: the project's root as the README's reader has it (.venv) and a photo named me.jpg
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "me.jpg").write_bytes(samples.photo_jpeg(600, 800))
    script = code_block("### Try it with curl")

    # When: the block runs in bash, as pasted, while the stack `make dev` runs is up
    with LocalStack(root=ROOT, ports=Ports()):
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    # Then: S3 took the upload (204) and avatar.json reports it ready, as the README says
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "204", result.stdout
    final = json.loads(result.stdout[result.stdout.index("{") :])
    assert final["state"] == "ready", result.stdout
    assert re.fullmatch(r"avatars/[0-9a-f-]+/v/[0-9a-f]+/512x512\.jpg", final["avatar"])
    assert json.loads((tmp_path / "upload.json").read_text())["key"].endswith("/original")
