"""A module-scoped loop, in a module of its own: pytest-asyncio 1.3 leaves a module loop
unclosed when one module has tests in both a module and the session loop."""

from __future__ import annotations

import pytest
from app import add, count

from databases import Database


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop(databases_db: Database) -> None:
    await add("module")
    assert await count() == 1
