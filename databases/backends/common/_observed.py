"""A statement's driver call, told to the database's listeners and noted on its errors.

Driver errors keep their types (an application catches `asyncpg.UniqueViolationError`);
on Python 3.11+ they gain the SQL as a note (`add_note`), never the parameter values.
"""

from __future__ import annotations

import time
import typing
from collections.abc import AsyncGenerator, Awaitable

from databases.events import BackendInfo, DatabaseEvents

_T = typing.TypeVar("_T")

# SQL longer than this is cut in the note: a multi-row INSERT can be megabytes.
NOTE_MAX_CHARS = 2000
NOTE_PREFIX = "SQL: "


def note_sql(error: BaseException, sql: str) -> None:
    """Add `sql` to `error`'s notes (once; nothing before Python 3.11)."""
    add_note = getattr(error, "add_note", None)
    if add_note is None:
        return
    if any(str(note).startswith(NOTE_PREFIX) for note in getattr(error, "__notes__", ())):
        return  # noted by the statement it passed through first
    if len(sql) > NOTE_MAX_CHARS:
        sql = f"{sql[:NOTE_MAX_CHARS]}... ({len(sql)} characters)"
    add_note(f"{NOTE_PREFIX}{sql}")


async def observed(
    events: DatabaseEvents,
    backend: BackendInfo,
    sql: str,
    parameters: typing.Sequence[typing.Any],
    many: bool,
    call: typing.Callable[..., Awaitable[_T]],
    *args: typing.Any,
) -> _T:
    """`await call(*args)`, which runs `sql`: noted on error, and reported to `events`.

    The statement methods run the driver call themselves, with only the note, when nobody
    listens: this coroutine would cost them a frame."""
    if not events.watching_statements:
        try:
            return await call(*args)
        except Exception as error:
            note_sql(error, sql)
            raise
    started = events._statement_started(backend, sql, parameters, many)
    begin = time.perf_counter()
    try:
        result = await call(*args)
    except BaseException as error:
        if isinstance(error, Exception):
            note_sql(error, sql)
        events._statement_failed(started, time.perf_counter() - begin, error)
        raise
    events._statement_finished(started, time.perf_counter() - begin)
    return result


async def observed_batches(
    events: DatabaseEvents,
    backend: BackendInfo,
    sql: str,
    parameters: typing.Sequence[typing.Any],
    batches: AsyncGenerator[_T, None],
) -> AsyncGenerator[_T, None]:
    """The items of `batches` (an iteration of `sql`), reported as one statement that
    ends when the iteration does, however it ends."""
    started = None
    if events.watching_statements:
        started = events._statement_started(backend, sql, parameters, False)
    begin = time.perf_counter()
    try:
        async for batch in batches:
            yield batch
    except GeneratorExit:
        # Left early by the caller: the statement ended as asked.
        if started is not None:
            events._statement_finished(started, time.perf_counter() - begin)
        raise
    except BaseException as error:
        if isinstance(error, Exception):
            note_sql(error, sql)
        if started is not None:
            events._statement_failed(started, time.perf_counter() - begin, error)
        raise
    else:
        if started is not None:
            events._statement_finished(started, time.perf_counter() - begin)
    finally:
        await batches.aclose()
