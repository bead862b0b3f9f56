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


def load_module(code_uri: str | Path, module: str = "app") -> ModuleType:
    path = Path(code_uri) / f"{module.replace('.', '/')}.py"
    name = f"imgpipe_fn_{Path(code_uri).name}_{module.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler module {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_handler(code_uri: str | Path, handler: str = "app.lambda_handler") -> Handler:
    """`handler` is the template's Handler property: '<module>.<function>'."""
    module, _, function = handler.rpartition(".")
    return getattr(load_module(code_uri, module), function)
