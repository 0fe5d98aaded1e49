"""The installed distribution is what packages that depend on `databases` 0.9 accept, and
its public classes are documented."""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

import databases


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def test_version_is_a_0_9_release() -> None:
    # ormar 0.21 requires databases>=0.9.0,<0.10.0: a patched 0.9 must stay inside it.
    assert (0, 9, 0) <= _release(databases.__version__) < (0, 10, 0)


def test_installed_metadata_matches_the_package() -> None:
    assert importlib.metadata.version("databases") == databases.__version__


PUBLIC_CLASSES = [
    "databases.core:Database",
    "databases.core:Connection",
    "databases.core:Transaction",
    "databases.core:DatabaseURL",
    "databases.events:DatabaseEvents",
]


@pytest.mark.parametrize("path", PUBLIC_CLASSES)
def test_every_public_method_has_a_docstring(path: str) -> None:
    """The API reference (docs/reference.md) is made from the docstrings."""
    module_name, _, class_name = path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    public_dunders = {"__aenter__", "__aexit__", "__await__", "__call__"}
    undocumented = []
    for name, member in vars(cls).items():
        if name.startswith("_") and name not in public_dunders:
            continue
        function = member.fget if isinstance(member, property) else getattr(member, "func", member)
        if isinstance(function, (classmethod, staticmethod)):
            function = function.__func__
        if (callable(function) or isinstance(member, property)) and not function.__doc__:
            undocumented.append(name)
    assert undocumented == [], f"{path}: no docstring on {undocumented}"
