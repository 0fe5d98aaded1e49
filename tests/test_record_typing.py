"""The row types that mypy is told about are the ones the rows have, on every backend.

`tests/typing_checks/records.py` states what mypy --strict infers (`scripts/check`
type-checks it); here its functions run against each test database, through `Database`,
a task's `Connection` and the force-rollback session's `SessionConnection`.
"""

from __future__ import annotations

import pytest

from databases import Database
from databases._force_rollback import SessionConnection
from databases.backends.common.records import Record as BundledRecord
from databases.core import Connection
from tests.typing_checks import records


@pytest.mark.asyncio
@pytest.mark.parametrize("force_rollback", [False, True])
async def test_rows_have_the_declared_types(database_url: str, force_rollback: bool) -> None:
    async with Database(database_url, force_rollback=force_rollback) as database:
        row = await database.fetch_one(records.QUERY)
        assert isinstance(row, BundledRecord)  # so the bundled rows' checks ran too
        await records.check_queries(database)
        async with database.connection() as connection:
            expected = SessionConnection if force_rollback else Connection
            assert type(connection) is expected
            await records.check_queries(connection)
