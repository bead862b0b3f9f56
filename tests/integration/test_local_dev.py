"""`imgpipe dev`: starts the stack, prints where everything is, stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

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
        web_url = re.search(r"web page\s+(http://\S+)", output).group(1)
        api_url = re.search(r"API\s+(http://\S+)", output).group(1)
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
