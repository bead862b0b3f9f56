"""The layers ship their bytecode: a cold start loads every module of the layers without compiling it.

sam's python builder ships wheels without .pyc and /opt is read-only in Lambda, so each cold start
compiled boto3, botocore, Powertools… again (~430 ms of CPU, bench/README.md). layers/Makefile
compiles them at build time, `--invalidation-mode unchecked-hash`. Run by `make build` after
`sam build`:

- every .py of the arm64 layers as built has its .pyc: CPython 3.13's magic number, flagged
  unchecked-hash, carrying the hash of exactly the shipped source, named by its path in Lambda;
  nothing else sits in a __pycache__ (no other interpreter's cache tag, no optimisation level);
- this x86_64 machine cannot load the arm64 layers' extension modules (Pillow, cryptography,
  wrapt), so the same template is built again with Architecture=x86_64 (which also proves that
  parameter reaches the Makefile); its Python files and bytecode are byte for byte the arm64
  layers', and every function imports from it in a fresh interpreter that writes no bytecode,
  compiling nothing but its own handler module (sam's python builder builds the functions, 0.3 to 0.7
  ms to compile each).

What only Lambda can show: the aarch64 binaries loading, and the runtime putting /opt/python on
sys.path as these tests do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import subprocess
import sys
from pathlib import Path
from types import CodeType

import pytest

from imgpipe_local import template
from tests.build.test_sam_build import BUILD, FUNCTIONS, LAYERS, built_dir, shared_objects
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    not (BUILD / "template.yaml").exists(), reason="no .aws-sam/build: run `make build`"
)

SAM = ROOT / ".tools" / "sam" / "bin" / "sam"
X86_64 = ROOT / ".aws-sam" / "x86_64"
# Where Lambda extracts a layer's python/ folder; the bytecode names its sources there.
LAMBDA_SITE = "/opt/python"
# Bit 0 of a .pyc's flags: hash-based; bit 1: check the source (PEP 552). Unchecked: 0b01.
HASH_BASED_UNCHECKED = 0b01
# Stack parameters without a default; any valid value will do for an import.
PARAMETERS = {
    "UserPoolId": "us-east-1_Build0000",
    "UserPoolClientId": "buildclient",
    "AllowedOrigins": "https://app.example.com",
}
# What CloudFormation fills in that the local stack's loader leaves empty (it has no CloudFront).
DEPLOYED_VALUES = {"DISTRIBUTION_ID": "E2BUILD0000000"}
# What the Lambda runtime sets that the template does not.
LAMBDA_ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "build",
    "AWS_SECRET_ACCESS_KEY": "build",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
}

# Imports the handler module as Lambda does (code, then layers, first on sys.path) and reports
# every file importlib compiled from source: SourceLoader.source_to_code runs exactly when a
# module has no usable bytecode.
CHILD = r"""
import importlib._bootstrap_external as external, json, sys
compiled = []
source_to_code = external.SourceLoader.source_to_code
def recording(self, data, path, *args, **kwargs):
    compiled.append(path)
    return source_to_code(self, data, path, *args, **kwargs)
external.SourceLoader.source_to_code = recording
path = json.loads(sys.argv[1])
sys.path[:0] = path
import app
from_layers = [
    name for name, module in sys.modules.items()
    if any(str(getattr(module, "__file__", None) or "").startswith(p + "/") for p in path[1:])
]
print(json.dumps({"compiled": compiled, "from_layers": from_layers}))
"""


def read_pyc(path: Path) -> tuple[bytes, int, bytes, CodeType]:
    """magic, flags, source hash and code object of a hash-based .pyc (PEP 552 header)."""
    data = path.read_bytes()
    code = marshal.loads(data[16:])
    assert isinstance(code, CodeType), path
    return data[:4], int.from_bytes(data[4:8], "little"), data[8:16], code


def python_files(site: Path) -> dict[str, str]:
    """The SHA-256 of every .py and .pyc under `site`, by relative path."""
    return {
        str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in site.rglob("*")
        if p.is_file() and p.suffix in {".py", ".pyc"}
    }


@pytest.fixture(scope="module")
def x86_64_build() -> Path:
    """The template built as for `Architecture=x86_64`, cached between runs like the arm64 build."""
    build = X86_64 / "build"
    environment = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        # sam and layers/Makefile run `python3.13`: this interpreter's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    completed = subprocess.run(
        [
            str(SAM), "build", "--template-file", str(ROOT / "template.yaml"),
            "--build-dir", str(build), "--cache-dir", str(X86_64 / "cache"), "--cached", "--parallel",
            "--parameter-overrides", "Architecture=x86_64",
        ],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return build


def test_the_bytecode_is_cpython_313s() -> None:
    # The tests below compare with this interpreter's magic number and cache tag: Lambda's only if
    # this is 3.13 (the magic number changes with every minor release, never within one).
    assert sys.version_info[:2] == (3, 13)
    assert sys.implementation.cache_tag == "cpython-313"


@pytest.mark.parametrize("name", LAYERS)
def test_every_module_of_the_layer_ships_unchecked_bytecode_of_its_exact_source(name: str) -> None:
    site = built_dir(name) / "python"
    sources = sorted(site.rglob("*.py"))
    assert len(sources) > 50, f"{name}: {len(sources)} modules"
    wrong = []
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        if not pyc.is_file():
            wrong.append(f"{source.relative_to(site)}: no {pyc.name}")
            continue
        magic, flags, source_hash, code = read_pyc(pyc)
        expected_name = f"{LAMBDA_SITE}/{source.relative_to(site)}"
        if magic != importlib.util.MAGIC_NUMBER:
            wrong.append(f"{pyc.relative_to(site)}: magic {magic!r}")
        elif flags != HASH_BASED_UNCHECKED:
            wrong.append(f"{pyc.relative_to(site)}: flags {flags:#04b}, not unchecked-hash")
        elif source_hash != importlib.util.source_hash(source.read_bytes()):
            wrong.append(f"{pyc.relative_to(site)}: compiled from another source")
        elif code.co_filename != expected_name:
            wrong.append(f"{pyc.relative_to(site)}: names {code.co_filename}, not {expected_name}")
    assert not wrong, f"{len(wrong)} of {len(sources)} modules in {name}: {wrong[:5]}"


@pytest.mark.parametrize("name", LAYERS)
def test_the_layer_holds_no_other_bytecode(name: str) -> None:
    # A .pyc for another interpreter or optimisation level is dead weight; one without its source
    # would be a module nobody can read in a traceback.
    site = built_dir(name) / "python"
    stray = []
    for pyc in site.rglob("*.pyc"):
        stem, _, suffix = pyc.name.partition(".")
        if pyc.parent.name != "__pycache__" or suffix != f"{sys.implementation.cache_tag}.pyc":
            stray.append(str(pyc.relative_to(site)))
        elif not (pyc.parent.parent / f"{stem}.py").is_file():
            stray.append(f"{pyc.relative_to(site)} (no source)")
    others = [p for p in site.rglob("__pycache__/*") if p.suffix != ".pyc"]
    assert not stray + others, f"{name}: {(stray + others)[:5]}"


@pytest.mark.parametrize("name", LAYERS)
def test_the_x86_64_build_ships_the_arm64_layers_python_byte_for_byte(x86_64_build: Path, name: str) -> None:
    # What the import test below loads is what ships for arm64: only the binaries differ.
    arm64, x86_64 = built_dir(name) / "python", x86_64_build / name / "python"
    assert python_files(x86_64) == python_files(arm64)
    assert shared_objects(x86_64), f"{name}: no binaries in the x86_64 build"
    assert all(".cpython-" not in p.name or "-x86_64-linux-gnu" in p.name for p in shared_objects(x86_64))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_compiles_no_module_of_the_layers(x86_64_build: Path, function: str) -> None:
    # Given the function and its layers as sam built them, as the template configures it (tracing
    # as deployed: Powertools then imports the X-Ray SDK too)
    built = template.load(x86_64_build / "template.yaml", PARAMETERS).functions[function]
    path = [str(built.code_uri), *(str(layer / "python") for layer in built.layers)]
    before = set(x86_64_build.rglob("*"))
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **LAMBDA_ENVIRONMENT,
        **{name: value or DEPLOYED_VALUES.get(name, value) for name, value in built.environment.items()},
        "AWS_LAMBDA_FUNCTION_NAME": built.name,
        "LAMBDA_TASK_ROOT": str(built.code_uri),
    }
    # When a fresh interpreter that never writes bytecode (/opt is read-only) imports its handler,
    # with nothing but the standard library besides (-S: no site-packages to fall back on)
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", CHILD, json.dumps(path)],
        env=environment, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    # Then it compiled its handler module alone: everything from the layers came from their .pyc
    assert result["compiled"] == [str(built.code_uri / "app.py")]
    assert "imgpipe" in result["from_layers"], result["from_layers"]
    assert len(result["from_layers"]) > 20, result["from_layers"]
    # and wrote nothing
    assert set(x86_64_build.rglob("*")) == before
