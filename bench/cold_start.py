"""Cold import of every function in template.yaml: what a Lambda cold start pays before the handler runs.

Each sample is a fresh interpreter that imports one function's handler module as the Lambda
runtime would: the function's CodeUri, then its layers' python/ folders, first on sys.path; the
function's environment from the template (Globals included, intrinsics resolved by the local
stack's template loader) plus what Lambda itself sets (LAMBDA_TASK_ROOT among it, so Powertools
knows it runs in Lambda). Only the import of the handler module is timed, wall and CPU, not the
interpreter's start-up, which every function pays alike.

The functions and layers are what `sam build` makes of each tree, built with Architecture=x86_64
so that this machine can load their binaries (cached under .imgpipe-local/cold-start/). A build
whose layers use sam's python builder ships no .pyc (aws-lambda-builders unzips wheels without
them), and /opt is read-only in Lambda, so such a function compiles every module of its layers on
each cold start; a build with layers/Makefile ships their bytecode. The children run with -B (they
never write a .pyc, as Lambda cannot) and -S (nothing but the standard library besides the
build, whose .pyc the runtime keeps). Each child records every module it compiled from source.

Columns:
  deployed      the build, tracing on unless the function's environment turns it off (the
                template's Tracing: Active makes Powertools trace and import the X-Ray SDK);
  tracing off   the same with POWERTOOLS_TRACE_DISABLED=true (the local stack and the tests, or
                a deployment with tracing off);
  with .pyc     tracing off, the tree's own sources precompiled and the venv's packages: every
                module from bytecode, whatever the build ships.

Samples are taken round-robin (every function, column and tree in turn, the starting point
rotated), so load from other users of the machine falls on all of them alike. Medians.

    .venv/bin/python bench/cold_start.py                     # this tree, 10 runs each
    .venv/bin/python bench/cold_start.py --against /tmp/old  # and another checkout, interleaved
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".imgpipe-local" / "cold-start"
SAM = ROOT / ".tools" / "sam" / "bin" / "sam"
# Reported as present after the import: the heavy imports a handler may avoid.
WATCHED = {
    "boto3": "boto3",
    "aws_xray_sdk": "X-Ray SDK",
    "PIL": "Pillow",
    "jwt": "PyJWT",
    "pydantic": "pydantic",
}
# Parameters the template requires; any valid-looking value will do for an import.
PARAMETERS = {
    "UserPoolId": "us-east-1_Bench0000",
    "UserPoolClientId": "benchclient",
    "AllowedOrigins": "https://app.example.com",
}
# What CloudFormation fills in that the local stack's loader leaves empty (it has no CloudFront).
DEPLOYED_VALUES = {"DISTRIBUTION_ID": "E2BENCH0000000"}
# What the Lambda runtime sets that the template does not.
LAMBDA_ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
}
COLUMNS = ("deployed", "tracing off", "with .pyc")

CHILD = r"""
import importlib._bootstrap_external as external, importlib.util, json, sys, time
code_uri, module, path = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
compiled = []
source_to_code = external.SourceLoader.source_to_code
def recording(self, data, source_path, *args, **kwargs):
    compiled.append(source_path)  # runs exactly when a module has no usable bytecode
    return source_to_code(self, data, source_path, *args, **kwargs)
external.SourceLoader.source_to_code = recording
sys.path[:0] = [code_uri, *path]
wall, cpu = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location(module, f"{code_uri}/{module}.py")
mod = importlib.util.module_from_spec(spec)
sys.modules[module] = mod
spec.loader.exec_module(mod)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
import imgpipe
print(json.dumps({
    "wall_ms": wall * 1000, "cpu_ms": cpu * 1000, "compiled": len(compiled),
    "modules": sorted(name for name in json.loads(sys.argv[4]) if name in sys.modules),
    "imgpipe": imgpipe.__file__,
}))
"""


@dataclass(frozen=True)
class Target:
    tree: str
    function: str
    column: str
    code_uri: Path
    module: str
    path: tuple[Path, ...]  # after code_uri on sys.path: the layers, as Lambda orders them
    environment: tuple[tuple[str, str], ...]
    compiled: bool


def sam_build(tree: Path) -> Path:
    """`tree`'s template as `sam build` builds it for x86_64 (this machine), cached between runs."""
    if not SAM.exists():
        raise SystemExit(f"no sam CLI at {SAM}: run `make tools`")
    folder = CACHE / "sam" / hashlib.sha256(str(tree).encode()).hexdigest()[:12]
    print(f"sam build {tree} (Architecture=x86_64) into {folder}", file=sys.stderr)
    environment = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        # sam's python builder and layers/Makefile run `python3.13`: this interpreter's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    completed = subprocess.run(
        [
            str(SAM), "build", "--template-file", str(tree / "template.yaml"),
            "--build-dir", str(folder / "build"), "--cache-dir", str(folder / "cache"),
            "--cached", "--parallel", "--parameter-overrides", "Architecture=x86_64",
        ],
        cwd=tree, env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"sam build of {tree} failed:\n{completed.stdout}{completed.stderr}")
    return folder / "build"


def targets(tree: Path, label: str, only: list[str] | None) -> list[Target]:
    # The local stack's loader runs the SAM translator: Globals and intrinsics resolve as in AWS.
    from imgpipe_local import template

    sources = template.load(tree / "template.yaml", PARAMETERS).functions
    built = template.load(sam_build(tree) / "template.yaml", PARAMETERS).functions
    found = []
    for logical_id, function in sorted(built.items()):
        if only and logical_id not in only:
            continue
        module = function.handler.rpartition(".")[0]
        declared = {k: v or DEPLOYED_VALUES.get(k, v) for k, v in function.environment.items()}
        base = {
            **LAMBDA_ENVIRONMENT,
            **declared,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "LAMBDA_TASK_ROOT": str(function.code_uri),
        }
        off = {**base, "POWERTOOLS_TRACE_DISABLED": "true"}
        source = sources[logical_id]
        for column, environment, compiled in (
            ("deployed", base, False),
            ("tracing off", off, False),
            ("with .pyc", off, True),
        ):
            found.append(
                Target(
                    tree=label,
                    function=logical_id,
                    column=column,
                    # Precompiled: the sources themselves (the venv holds the dependencies with .pyc).
                    code_uri=source.code_uri if compiled else function.code_uri,
                    module=module,
                    path=tuple(source.layers) if compiled else tuple(p / "python" for p in function.layers),
                    environment=tuple(sorted(environment.items())),
                    compiled=compiled,
                )
            )
    return found


def sample(target: Target) -> dict[str, object]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(target.environment)}
    # The build alone (-S: no site-packages) and no .pyc written (-B: Lambda cannot).
    flags = ["-I"] if target.compiled else ["-I", "-S", "-B"]
    completed = subprocess.run(
        [
            sys.executable,
            *flags,
            "-c",
            CHILD,
            str(target.code_uri),
            target.module,
            json.dumps([str(p) for p in target.path]),
            json.dumps(sorted(WATCHED)),
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{target.function} ({target.tree}, {target.column}) failed:\n{completed.stderr}")
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    if not any(str(result["imgpipe"]).startswith(str(p)) for p in target.path):
        raise RuntimeError(f"{target.function} imported imgpipe from {result['imgpipe']}, not its layer")
    return result


def _median(results: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(str(r[key])) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per function and column")
    parser.add_argument("--against", type=Path, help="another checkout, measured in the same round-robin")
    parser.add_argument("--function", action="append", help="logical id(s) to measure (default: all)")
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    args = parser.parse_args()

    sys.path[:0] = [str(ROOT / "local"), str(ROOT / "layers" / "shared")]
    trees = [(ROOT, "this tree")]
    if args.against:
        trees.append((args.against.resolve(), args.against.name))
    everything = [t for tree, label in trees for t in targets(tree, label, args.function)]
    samples: list[list[dict[str, object]]] = [[] for _ in everything]
    order = list(range(len(everything)))
    for run in range(args.runs):
        shift = run % len(order)
        for index in order[shift:] + order[:shift]:
            samples[index].append(sample(everything[index]))
        print(f"run {run + 1}/{args.runs}", file=sys.stderr)

    print(f"Cold import of each handler module: median of {args.runs} fresh processes, wall (CPU).\n")
    print(f"| function | tree | {' | '.join(COLUMNS)} | compiled (deployed) | heavy imports (deployed) |")
    print(f"|---|---|{'---:|' * len(COLUMNS)}---:|---|")
    rows: dict[tuple[str, str], dict[str, str]] = {}
    heavy: dict[tuple[str, str], str] = {}
    compiled: dict[tuple[str, str], int] = {}
    for target, results in zip(everything, samples, strict=True):
        cell = f"{_median(results, 'wall_ms'):.0f} ms ({_median(results, 'cpu_ms'):.0f})"
        rows.setdefault((target.function, target.tree), {})[target.column] = cell
        if target.column == "deployed":
            modules = set(map(str, results[0]["modules"]))  # type: ignore[call-overload]
            heavy[(target.function, target.tree)] = ", ".join(v for k, v in WATCHED.items() if k in modules)
            # Modules compiled from source at import: the same in every sample of a target.
            compiled[(target.function, target.tree)] = int(str(results[0]["compiled"]))
    for (function, tree), cells in rows.items():
        columns = " | ".join(cells.get(c, "") for c in COLUMNS)
        key = (function, tree)
        print(f"| {function} | {tree} | {columns} | {compiled.get(key, '')} | {heavy.get(key) or '—'} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {"function": t.function, "tree": t.tree, "column": t.column, "samples": s}
                    for t, s in zip(everything, samples, strict=True)
                ],
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
