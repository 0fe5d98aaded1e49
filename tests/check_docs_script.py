"""scripts/check_docs.py as a module, for the tests (scripts/ is not a package)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "scripts" / "check_docs.py"


def _load() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("check_docs", PATH)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {PATH}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up.
    sys.modules["check_docs"] = module
    spec.loader.exec_module(module)
    return module


check_docs = sys.modules.get("check_docs") or _load()
