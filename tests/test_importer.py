"""import_from_string: the lookup behind Database.SUPPORTED_BACKENDS."""

from __future__ import annotations

import collections
import os.path
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from databases.importer import ImportFromStringError, import_from_string


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path whose test modules are forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _write(directory: Path, relative: str, source: str) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def test_imports_stdlib_attribute() -> None:
    assert import_from_string("os.path:join") is os.path.join


def test_imports_nested_attribute() -> None:
    assert import_from_string("os:path.join") is os.path.join
    assert import_from_string("collections:OrderedDict.move_to_end") is (
        collections.OrderedDict.move_to_end
    )


def test_imports_class_from_package_module(module_dir: Path) -> None:
    _write(module_dir, "pkg_ok/__init__.py", "")
    _write(module_dir, "pkg_ok/backend.py", "class Backend:\n    class Inner:\n        pass\n")
    backend = import_from_string("pkg_ok.backend:Backend")
    assert backend.__name__ == "Backend"
    assert import_from_string("pkg_ok.backend:Backend.Inner") is backend.Inner


def test_non_string_passes_through() -> None:
    # Upstream compatibility: a class placed directly in SUPPORTED_BACKENDS still works.
    sentinel = object()
    assert import_from_string(sentinel) is sentinel  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "import_str",
    [
        "os.path",
        ":join",
        "os.path:",
        "",
        ":",
        "os..path:join",
        ".os:path",
    ],
)
def test_bad_format(import_str: str) -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(import_str)
    # Word for word what 0.9 says.
    assert str(info.value) == (
        f'Import string "{import_str}" must be in format "<module>:<attribute>".'
    )


@pytest.mark.parametrize(
    ("import_str", "attribute", "module"),
    [("os.path:join:extra", "join:extra", "os.path"), ("os:path.", "path.", "os")],
)
def test_attribute_path_is_everything_after_the_first_colon(
    import_str: str, attribute: str, module: str
) -> None:
    # As in 0.9: a second colon or a trailing dot is part of the attribute path.
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(import_str)
    assert str(info.value) == f'Attribute "{attribute}" not found in module "{module}".'


def test_missing_module() -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("no_such_module_xyz:attr")
    assert str(info.value) == 'Could not import module "no_such_module_xyz".'


def test_missing_submodule_of_existing_package() -> None:
    with pytest.raises(ImportFromStringError, match=re.escape('module "os.no_such_sub"')):
        import_from_string("os.no_such_sub:attr")


def test_missing_parent_package_counts_as_missing_module() -> None:
    with pytest.raises(ImportFromStringError, match=re.escape('module "no_such_pkg_xyz.sub"')):
        import_from_string("no_such_pkg_xyz.sub:attr")


def test_missing_attribute() -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("os.path:no_such_attr")
    assert str(info.value) == 'Attribute "no_such_attr" not found in module "os.path".'
    assert isinstance(info.value.__cause__, AttributeError)


def test_missing_nested_attribute_names_full_path() -> None:
    message = '"path.no_such_attr" not found in module "os"'
    with pytest.raises(ImportFromStringError, match=re.escape(message)):
        import_from_string("os:path.no_such_attr")


def test_missing_import_inside_module_is_reraised(module_dir: Path) -> None:
    _write(module_dir, "broken_backend_mod.py", "import no_such_dependency_xyz\n")
    with pytest.raises(ModuleNotFoundError) as info:
        import_from_string("broken_backend_mod:Backend")
    assert not isinstance(info.value, ImportFromStringError)
    assert info.value.name == "no_such_dependency_xyz"


def test_missing_import_inside_package_module_is_reraised(module_dir: Path) -> None:
    _write(module_dir, "pkg_broken/__init__.py", "")
    _write(module_dir, "pkg_broken/backend.py", "from pkg_broken import missing_sibling\n")
    with pytest.raises(ImportError):
        import_from_string("pkg_broken.backend:Backend")


def test_other_error_inside_module_is_reraised(module_dir: Path) -> None:
    _write(module_dir, "crashing_mod.py", "raise RuntimeError('boom at import')\n")
    with pytest.raises(RuntimeError, match="boom at import"):
        import_from_string("crashing_mod:anything")


def test_import_error_is_an_exception() -> None:
    assert issubclass(ImportFromStringError, Exception)
