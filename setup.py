"""The optional C extension of `databases`; everything else is in pyproject.toml.

`databases._speedups` builds and reads result rows in C. Without a C compiler (or Python's
headers), or with `DATABASES_NO_SPEEDUPS=1`, the build says so in one line and makes a
pure-Python wheel: the package then runs the same code in Python
(databases/backends/common/record_base.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

SPEEDUPS = Extension("databases._speedups", ["databases/_speedups.c"], optional=True)


def why_no_compiler() -> str | None:
    """Why the extension cannot be built here, or None when it can be tried."""
    if os.environ.get("DATABASES_NO_SPEEDUPS") == "1":
        return "DATABASES_NO_SPEEDUPS=1"
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C compiler ({compiler.split()[0]!r} not found)"
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if not headers.exists():
        return f"no Python headers ({headers} not found)"
    return None


# Commands that compile: the line is printed once per build, not at every metadata step.
COMPILING = {"bdist_wheel", "build", "build_ext", "develop", "editable_wheel", "install"}

reason = why_no_compiler()
if reason is not None and COMPILING.intersection(sys.argv):
    print(
        f"databases: building without the C speedups: {reason}; the pure-Python package works"
        " the same, slower on large results",
        file=sys.stderr,
    )

setup(ext_modules=[] if reason is not None else [SPEEDUPS])
