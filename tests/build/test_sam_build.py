"""What `sam build` left in .aws-sam/build: every function and layer, built for Lambda on arm64.

Run by `make build` right after `sam build`. The seed shipped a sharp binary built for the wrong
platform; these tests read the ELF header of every shared library in the layers, so an x86_64
wheel (a missing BuildArchitecture, a pip that ignored --platform) fails the build.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imgpipe_local.template import load_yaml
from tests.conftest import ROOT

BUILD = ROOT / ".aws-sam" / "build"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# ELF e_machine values (System V ABI): what the loader on a Lambda arm64 host accepts, and what it does not.
EM_AARCH64 = 183
EM_X86_64 = 62

pytestmark = pytest.mark.skipif(
    not (BUILD / "template.yaml").exists(), reason="no .aws-sam/build: run `make build`"
)


SOURCE = load_yaml(ROOT / "template.yaml")
BUILT = load_yaml(BUILD / "template.yaml") if (BUILD / "template.yaml").exists() else {"Resources": {}}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


FUNCTIONS = sorted(resources(SOURCE, "AWS::Serverless::Function"))
LAYERS = sorted(resources(SOURCE, "AWS::Serverless::LayerVersion"))


def built_dir(name: str) -> Path:
    props = BUILT["Resources"][name]["Properties"]
    return BUILD / str(props.get("CodeUri") or props["ContentUri"])


def elf_machine(path: Path) -> int | None:
    """e_machine of an ELF file, None for anything else."""
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def shared_objects(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and re.search(r"\.so(\.\d+)*$", p.name)]


def requirement_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"\[.*\]", "", name).strip().lower().replace("-", "_")] = version.strip()
    return pins


def test_every_function_and_layer_of_the_template_was_built() -> None:
    assert set(resources(BUILT, "AWS::Serverless::Function")) == set(FUNCTIONS)
    assert set(resources(BUILT, "AWS::Serverless::LayerVersion")) == set(LAYERS)
    for name in FUNCTIONS + LAYERS:
        assert built_dir(name).is_dir(), f"{name}: {built_dir(name)} missing"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_package_holds_its_handler_and_no_vendored_libraries(name: str) -> None:
    # Given the function's Handler "app.lambda_handler"
    module, _, function = SOURCE["Resources"][name]["Properties"]["Handler"].rpartition(".")
    code = built_dir(name)
    # Then its built folder has that module defining that function
    handler = code / f"{module}.py"
    assert handler.is_file(), f"{name}: no {module}.py in {code}"
    assert re.search(rf"^def {function}\(", handler.read_text(), re.M), f"{name}: no {function} in {handler}"
    # and dependencies come from the layers, not from a copy in every function
    assert not shared_objects(code), f"{name} vendors binaries; they belong in a layer"
    assert not list(code.glob("*.dist-info")), f"{name} vendors packages; they belong in a layer"


@pytest.mark.parametrize("name", LAYERS)
def test_layer_is_built_by_the_layers_makefile_on_the_architecture_parameter(name: str) -> None:
    # sam build resolves the metadata's intrinsics with the parameters it is given; by default
    # arm64, which the ELF headers below confirm. layers/Makefile runs in the folder named after
    # the architecture (sam passes it none), and its target for this layer is build-<name>.
    metadata = load_yaml(ROOT / "template.yaml")["Resources"][name]["Metadata"]
    assert metadata["BuildMethod"] == "makefile"
    assert metadata["BuildArchitecture"] == {"Ref": "Architecture"}
    assert metadata["WorkingDirectory"] == {"Fn::Sub": "layers/platforms/${Architecture}"}
    assert SOURCE["Parameters"]["Architecture"]["Default"] == "arm64"
    makefile = ROOT / SOURCE["Resources"][name]["Properties"]["ContentUri"] / "Makefile"
    assert makefile.resolve() == ROOT / "layers" / "Makefile"
    assert re.search(rf"^build-{name}:", makefile.read_text(), re.M), f"{makefile} has no build-{name} target"


@pytest.mark.parametrize("name", LAYERS)
def test_layer_contents_sit_in_a_single_python_folder(name: str) -> None:
    layer = built_dir(name)
    assert [p.name for p in layer.iterdir()] == ["python"], f"{name}: Lambda adds only python/ to sys.path"
    assert not (layer / "python" / "python").exists(), f"{name}: nested python/ folder"


@pytest.mark.parametrize("name", LAYERS)
def test_layer_ships_the_pinned_versions(name: str) -> None:
    source = ROOT / SOURCE["Resources"][name]["Properties"]["ContentUri"]
    site = built_dir(name) / "python"
    shipped: dict[str, str] = {}
    for dist_info in site.glob("*.dist-info"):
        package, _, version = dist_info.name.removesuffix(".dist-info").rpartition("-")
        shipped[package.lower().replace("-", "_")] = version
    pins = requirement_pins(source / "requirements.txt")
    assert pins, f"{name}: requirements.txt pins nothing"
    for package, version in pins.items():
        assert shipped.get(package) == version, f"{name}: {package} {shipped.get(package)}, pinned {version}"


@pytest.mark.parametrize("name", LAYERS)
def test_every_binary_in_the_layer_is_aarch64(name: str) -> None:
    binaries = shared_objects(built_dir(name))
    machines = {path.relative_to(BUILD): elf_machine(path) for path in binaries}
    x86 = [str(p) for p, m in machines.items() if m == EM_X86_64]
    other = [f"{p} ({m})" for p, m in machines.items() if m != EM_AARCH64]
    assert not x86, f"x86_64 binaries in {name}: {x86[:5]}"
    assert not other, f"non-aarch64 binaries in {name}: {other[:5]}"
    # CPython extension modules say their platform in the name too.
    tagged = [p.name for p in binaries if ".cpython-" in p.name]
    assert all(n.endswith("-aarch64-linux-gnu.so") for n in tagged), tagged
    assert all("cpython-313-" in n for n in tagged), f"{name}: extension modules not for CPython 3.13"


def test_pillow_layer_has_the_native_codecs_on_aarch64() -> None:
    site = built_dir("PillowLayer") / "python"
    for module in ("_imaging", "_webp", "_imagingcms"):
        [ext] = site.glob(f"PIL/{module}.cpython-313-aarch64-linux-gnu.so")
        assert elf_machine(ext) == EM_AARCH64
    bundled = list((site / "pillow.libs").glob("libjpeg*.so*"))
    assert bundled, "Pillow's bundled libjpeg is missing"
    assert {elf_machine(p) for p in bundled} == {EM_AARCH64}


def test_shared_layer_has_the_project_package_and_aarch64_crypto() -> None:
    site = built_dir("SharedLayer") / "python"
    assert (site / "imgpipe" / "__init__.py").is_file()
    assert (site / "imgpipe" / "keys.py").is_file()
    rust = list(site.glob("cryptography/hazmat/bindings/_rust*.so"))
    assert rust, "cryptography's compiled core is missing"
    assert {elf_machine(p) for p in rust} == {EM_AARCH64}


def test_processor_with_its_layers_fits_lambdas_unzipped_limit() -> None:
    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    total = size(built_dir("ProcessImageFunction")) + sum(size(built_dir(n)) for n in LAYERS)
    assert total < LAMBDA_UNZIPPED_LIMIT, f"{total / 2**20:.0f} MiB unzipped"


def test_pillow_layer_libwebp_offers_the_simple_decoder_imaging_calls() -> None:
    # imgpipe.webp_simple calls WebPDecodeRGBAInto in the libwebp that PIL._webp loads. This
    # machine cannot load an aarch64 library, so the ELF says it: one libwebp, AArch64, needed
    # by the plugin, exporting both symbols the module binds.
    site = built_dir("PillowLayer") / "python"
    [libwebp] = [p for p in (site / "pillow.libs").glob("libwebp-*.so*") if p.name.startswith("libwebp-")]
    assert elf_machine(libwebp) == EM_AARCH64
    [plugin] = site.glob("PIL/_webp.cpython-313-aarch64-linux-gnu.so")
    needed = subprocess.run(["readelf", "-d", str(plugin)], capture_output=True, text=True, check=True).stdout
    assert f"[{libwebp.name}]" in needed
    symbols = subprocess.run(
        ["readelf", "--dyn-syms", "-W", str(libwebp)], capture_output=True, text=True, check=True
    ).stdout
    defined = {line.split()[-1] for line in symbols.splitlines() if " FUNC " in line and " UND " not in line}
    assert {"WebPDecodeRGBAInto", "WebPGetDecoderVersion"} <= defined
