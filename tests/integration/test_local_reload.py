"""Handlers stay warm and pick up edits to their code or their layers on the next request."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from tests.integration.local_support import serve_api, touch_newer, write_project

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  Lib:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: lib
  HelloFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hello
      Handler: app.lambda_handler
      Runtime: python3.13
      Layers: [!Ref Lib]
      Events:
        Hello:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /hello}
"""

HANDLER = """\
import reload_lib_greeting
import helper

COLD_STARTS = []

def lambda_handler(event, context):
    COLD_STARTS.append(1)
    return {"text": f"{reload_lib_greeting.WORD} {helper.NAME} v1", "invocations": len(COLD_STARTS)}
"""


def project(tmp_path: Path) -> Path:
    path = write_project(tmp_path, TEMPLATE, {"hello": HANDLER})
    (tmp_path / "hello" / "helper.py").write_text('NAME = "world"\n')
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "reload_lib_greeting.py").write_text('WORD = "hello"\n')
    return path


def test_handlers_stay_warm_between_requests(tmp_path: Path) -> None:
    with serve_api(project(tmp_path)) as api:
        first = requests.get(f"{api.url}/hello", timeout=10).json()
        second = requests.get(f"{api.url}/hello", timeout=10).json()

        assert (first["invocations"], second["invocations"]) == (1, 2)
        assert api.runtime.pools["HelloFunction"].loads == 1


def test_an_edited_handler_is_used_by_the_next_request(tmp_path: Path) -> None:
    with serve_api(project(tmp_path)) as api:
        assert requests.get(f"{api.url}/hello", timeout=10).json()["text"] == "hello world v1"

        touch_newer(tmp_path / "hello" / "app.py", HANDLER.replace("v1", "v2"))

        after = requests.get(f"{api.url}/hello", timeout=10).json()
        assert after == {"text": "hello world v2", "invocations": 1}


def test_an_edited_sibling_module_is_reloaded_too(tmp_path: Path) -> None:
    with serve_api(project(tmp_path)) as api:
        requests.get(f"{api.url}/hello", timeout=10)

        touch_newer(tmp_path / "hello" / "helper.py", 'NAME = "moon"\n')

        assert requests.get(f"{api.url}/hello", timeout=10).json()["text"] == "hello moon v1"


def test_an_edited_layer_module_is_reloaded(tmp_path: Path) -> None:
    with serve_api(project(tmp_path)) as api:
        requests.get(f"{api.url}/hello", timeout=10)

        touch_newer(tmp_path / "lib" / "reload_lib_greeting.py", 'WORD = "goodbye"\n')

        assert requests.get(f"{api.url}/hello", timeout=10).json()["text"] == "goodbye world v1"
        assert api.runtime.pools["HelloFunction"].loads == 2


def test_a_broken_edit_fails_the_request_and_the_fix_recovers(tmp_path: Path) -> None:
    with serve_api(project(tmp_path)) as api:
        requests.get(f"{api.url}/hello", timeout=10)

        touch_newer(tmp_path / "hello" / "app.py", "def lambda_handler(event, context:\n")
        broken = requests.get(f"{api.url}/hello", timeout=10)
        touch_newer(tmp_path / "hello" / "app.py", HANDLER.replace("v1", "v3"))
        fixed = requests.get(f"{api.url}/hello", timeout=10)

        assert broken.status_code == 500
        assert fixed.json()["text"] == "hello world v3"


TWO_FUNCTIONS = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  OneFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: one
      Handler: app.lambda_handler
      Runtime: python3.13
      Events:
        One:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /one}
  TwoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: two
      Handler: app.lambda_handler
      Runtime: python3.13
      Events:
        Two:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /two}
"""

USES_HELPER = """\
import os
import sys

import helper


def lambda_handler(event, context):
    return {"name": helper.NAME, "pid": os.getpid(), "path": sys.path[:2], "cwd": os.getcwd()}
"""


def test_each_function_runs_warm_in_a_process_of_its_own(tmp_path: Path) -> None:
    path = write_project(tmp_path, TWO_FUNCTIONS, {"one": USES_HELPER, "two": USES_HELPER})
    (tmp_path / "one" / "helper.py").write_text('NAME = "one"\n')
    (tmp_path / "two" / "helper.py").write_text('NAME = "two"\n')

    with serve_api(path) as api:
        one = [requests.get(f"{api.url}/one", timeout=10).json() for _ in range(2)]
        two = requests.get(f"{api.url}/two", timeout=10).json()

    assert [reply["name"] for reply in one] == ["one", "one"]
    assert two["name"] == "two"
    # Warm: the same process across invocations of a function, another one per function,
    # none of them this one; each with its CodeUri as /var/task would be: first on the path, cwd.
    assert one[0]["pid"] == one[1]["pid"] != two["pid"]
    assert os.getpid() not in {one[0]["pid"], two["pid"]}
    assert one[0]["path"][0] == one[0]["cwd"] == str(tmp_path / "one")
    assert "helper" not in sys.modules
