"""The installed distribution is what packages that depend on `databases` 0.9 accept."""

from __future__ import annotations

import importlib.metadata

import databases


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def test_version_is_a_0_9_release() -> None:
    # ormar 0.21 requires databases>=0.9.0,<0.10.0: a patched 0.9 must stay inside it.
    assert (0, 9, 0) <= _release(databases.__version__) < (0, 10, 0)


def test_installed_metadata_matches_the_package() -> None:
    assert importlib.metadata.version("databases") == databases.__version__
