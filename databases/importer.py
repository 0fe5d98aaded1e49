"""Resolve ``"package.module:attr"`` strings, as used by ``Database.SUPPORTED_BACKENDS``."""

from __future__ import annotations

import importlib
from typing import Any, Optional

__all__ = ["ImportFromStringError", "import_from_string"]


class ImportFromStringError(Exception):
    """The import string is malformed or names something that does not exist."""


def _is_requested_module(missing: Optional[str], module_str: str) -> bool:
    # "a.b.c" reports "a" missing when package "a" itself is absent: that is still the
    # module the caller asked for, unlike some unrelated import made inside it.
    if missing is None:
        return False
    return module_str == missing or module_str.startswith(missing + ".")


def import_from_string(import_str: str) -> Any:
    """Import ``module:attribute`` and return the attribute (nested with dots)."""
    if not isinstance(import_str, str):
        # Upstream passed already-imported objects through, so a backend class placed
        # directly in SUPPORTED_BACKENDS works; keep that.
        return import_str

    # As in 0.9: split at the first colon; whatever follows is the attribute path, so
    # "mod:a:b" looks for an attribute "a:b" and reports it missing.
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str or not all(module_str.split(".")):
        raise ImportFromStringError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>".'
        )

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if not _is_requested_module(exc.name, module_str):
            # The module exists but fails on an import of its own: that error is the
            # useful one, so it is not disguised as "module not found".
            raise
        raise ImportFromStringError(f'Could not import module "{module_str}".') from exc

    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError as exc:
        raise ImportFromStringError(
            f'Attribute "{attrs_str}" not found in module "{module_str}".'
        ) from exc
    return instance
