"""`imgpipe dev`: starts the stack, prints where everything is, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT

READY_TIMEOUT = 60


def test_dev_prints_urls_and_credentials_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgpipe_local",
            "dev",
            "--moto-port",
            "0",
            "--api-port",
            "0",
            "--cdn-port",
            "0",
            "--web-port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + READY_TIMEOUT
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Ctrl-C to stop" in line or not line:
                break
        output = "".join(lines)
        web_match = re.search(r"web page\s+(http://\S+)", output)
        api_match = re.search(r"API\s+(http://\S+)", output)
        assert web_match, output
        assert api_match, output
        web_url, api_url = web_match.group(1), api_match.group(1)
        assert "demo user  demo / " in output

        config = requests.get(f"{web_url}/config.json", timeout=10).json()
        assert config["apiUrl"] == api_url
        preflight = requests.options(
            f"{api_url}/avatars/key_upload",
            headers={"Origin": web_url, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == web_url

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    port = int(api_url.rsplit(":", 1)[1])
    with socket.socket() as probe:
        # As a server binds: connections we closed may linger in TIME_WAIT, a listener may not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_dev_explains_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "imgpipe_local",
                "dev",
                "--moto-port",
                "0",
                "--api-port",
                str(port),
                "--cdn-port",
                "0",
                "--web-port",
                "0",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "--api-port" in result.stderr


DEFAULT_PORTS = {"moto": 5100, "api": 3000, "cdn": 3100, "web": 8000}


def readme_ready_line() -> str:
    """The line the README's top says `make dev` prints, as a pattern (N: the seconds it took)."""
    top = "\n".join((ROOT / "README.md").read_text().splitlines()[:12])
    match = re.search(r"`make dev` prints `([^`]+)`", top)
    assert match, "the README's first lines no longer say what make dev prints"
    return re.escape(match.group(1)).replace("N", r"\d+(\.\d+)?")


def test_make_dev_as_the_readme_says_on_default_ports_stops_on_ctrl_c() -> None:
    # Given: the default ports are free (CI runs nothing else on them)
    for name, port in DEFAULT_PORTS.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pytest.fail(f"port {port} ({name}) is taken by something else; this test needs the defaults")
    # When: the README's first command runs, in its own process group as a terminal would
    process = subprocess.Popen(
        ["make", "dev"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Ctrl-C to stop" in line or not line:
                break
        output = "".join(lines)
        # Then: it prints what the README's first lines say it prints, and serves the page and
        # the API on the ports the README names
        assert re.search(readme_ready_line(), output), output
        assert "web page   http://127.0.0.1:8000" in output, output
        page = requests.get("http://127.0.0.1:8000/", timeout=10)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        preflight = requests.options(
            "http://127.0.0.1:3000/avatars/key_upload",
            headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8000"
        # And: Ctrl-C (SIGINT to the whole foreground group) stops everything cleanly
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        # make re-raises the SIGINT it received once its child has exited, as a shell expects of
        # Ctrl-C; the stack itself stopped cleanly: no traceback, no "make: ***" error line.
        assert process.returncode in (0, -signal.SIGINT), output + rest
        assert "stopping…" in rest
        assert "Traceback" not in output + rest
        assert "make: ***" not in output + rest
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for port in DEFAULT_PORTS.values():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))


def test_dev_names_a_busy_default_moto_port_and_how_to_choose_another() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "imgpipe_local", "dev", "--moto-port", str(port)]
            + [arg for name in ("api", "cdn", "web") for arg in (f"--{name}-port", "0")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} (moto) is already in use" in result.stderr
    assert "--moto-port" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
