"""Modules that mypy --strict checks (pyproject.toml's `files`) and tests run."""
