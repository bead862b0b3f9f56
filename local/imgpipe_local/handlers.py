"""Load a Lambda handler from its CodeUri folder, as the Lambda runtime would.

Every function's module is called `app`, so each is loaded under a name of its own
instead of through sys.path, where the first `app` imported would shadow the rest.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


def module_name(code_uri: str | Path, module: str = "app") -> str:
    """The sys.modules name a function's handler module is loaded under."""
    return f"imgpipe_fn_{Path(code_uri).name}_{module.replace('.', '_')}"


def load_module(code_uri: str | Path, module: str = "app") -> ModuleType:
    """Execute `<code_uri>/<module>.py` afresh (a second call re-imports it)."""
    path = Path(code_uri) / f"{module.replace('.', '/')}.py"
    name = module_name(code_uri, module)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"cannot load handler module {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    # Lambda runs with the CodeUri folder on sys.path, so a handler may import its siblings.
    folder = str(Path(code_uri).resolve())
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(folder)
    return mod


def load_handler(code_uri: str | Path, handler: str = "app.lambda_handler") -> Handler:
    """`handler` is the template's Handler property: '<module>.<function>'."""
    module, _, function = handler.rpartition(".")
    loaded: Handler = getattr(load_module(code_uri, module), function)
    return loaded
