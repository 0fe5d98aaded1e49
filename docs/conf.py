"""Sphinx settings of the documentation site (scripts/docs builds it)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import databases  # noqa: E402

project = "databases"
author = "The databases maintainers"
copyright = "2026, the databases maintainers"  # noqa: A001
release = databases.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
# `name` in docstrings is code, as in the Markdown pages.
default_role = "literal"

# The reference documents the public API from its docstrings, in source order, with the
# signatures' types.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_mock_imports = ["asyncpg", "aiomysql", "pymysql", "aiopg", "psycopg", "asyncmy"]

# Strict builds (scripts/docs) report every reference that leads nowhere. Types of other
# projects are not linked (the site is built offline, without their inventories).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(sqlalchemy|asyncio|typing|collections|types|enum|contextlib|urllib|opentelemetry|_pytest|pytest)\..*"),
    (r"py:.*", r"(_T|T|Any|Self|TracebackType|ClauseElement|Dialect|Iterator|AsyncGenerator|Tracer|TracerProvider)"),
    # Internal types in signatures (constructors users do not call).
    (r"py:.*", r"(.*\._.*|OwningDatabase|LoopState|ConnectionRole)"),
]

html_theme = "furo"
html_title = f"databases {release}"
