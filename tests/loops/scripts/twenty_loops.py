"""One database used from 20 event loops, then disconnected: run under
`python -X dev -W always`, it must print nothing to stderr.

    python -X dev -W always twenty_loops.py URL FORCE_ROLLBACK(0|1) TABLE

The loops: asyncio.run() loops one after another, asyncio.run() loops in threads at the
same time, an asyncio.Runner, and one loop closed by a bare `loop.close()` (no
`shutdown_asyncgens()`). Prints `ok` on stdout at the end, after `gc.collect()`.

Development mode makes asyncio log every callback slower than 100 ms; that says how busy
the machine is, not how the library behaves, so those log records (and only those) are
dropped.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading

import sqlalchemy

from databases import Database, DatabaseURL
from tests.loops import count_all, table_named

LOOPS = 20
THREADS = 6


class DropSlowCallbackNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Executing %s took"))


def main() -> None:
    logging.getLogger("asyncio").addFilter(DropSlowCallbackNotes())
    url, force_rollback, table_name = sys.argv[1:4]
    rollback = force_rollback == "1"
    table = table_named(table_name)
    dialect = DatabaseURL(url).dialect
    options: dict[str, object] = {"max_size": 3}
    if dialect != "sqlite":
        options["min_size"] = 1
    database = Database(url, force_rollback=rollback, **options)
    # SQLite has one writer: with force_rollback, loops that live at the same time each hold
    # a rollback transaction, so the loops in threads only read then.
    threads_write = not (rollback and dialect == "sqlite")

    async def job(tag: str, write: bool = True) -> None:
        count = count_all(table)
        if write:
            await asyncio.gather(
                *(database.execute(table.insert(), {"tag": tag, "value": n}) for n in range(3)),
                database.fetch_val(count),
                database.fetch_all(sqlalchemy.select(table.c.value).where(table.c.tag == tag)),
            )
            async with database.transaction():
                await database.execute(table.insert(), {"tag": tag, "value": 10})
                async with database.transaction():
                    await database.execute(table.insert(), {"tag": tag, "value": 11})
            try:
                async with database.transaction():
                    await database.execute(table.insert(), {"tag": tag, "value": 12})
                    raise LookupError("roll back")
            except LookupError:
                pass
        else:
            await asyncio.gather(database.fetch_val(count), database.fetch_one(count))
        values = [row.value async for row in database.iterate(table.select())]
        assert len(values) >= (5 if write else 0), values
        async with database.connection() as connection:
            await connection.fetch_val(count)

    asyncio.run(database.connect())  # 1
    for n in range(8):  # 2-9
        asyncio.run(job(f"run-{n}"))

    errors: list[BaseException] = []

    def in_thread(k: int) -> None:
        try:
            asyncio.run(job(f"thread-{k}", write=threads_write))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_thread, args=(k,)) for k in range(THREADS)]  # 10-15
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

    # 16: closed without shutdown_asyncgens(); the next loop releases its state.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(job("bare"))
    finally:
        loop.close()

    with asyncio.Runner() as runner:  # 17
        runner.run(job("runner-a"))
        runner.run(job("runner-b"))

    for n in range(2):  # 18-19
        asyncio.run(job(f"late-{n}"))

    asyncio.run(database.disconnect())  # 20
    gc.collect()
    print("ok", flush=True)


if __name__ == "__main__":
    main()
