"""The app as `databases` 0.9's README wrote it, on Starlette 0.x:
`app.add_event_handler("startup", database.connect)` and
`app.add_event_handler("shutdown", database.disconnect)`.

Starlette 1.0 removed event handlers, so `test_starlette_event_handlers` runs this module as
a script in a subprocess whose `PYTHONPATH` puts Starlette 0.x (installed by
`scripts/install` into `.venv/compat/starlette0`) first:

    PYTHONPATH=.venv/compat/starlette0 LEGACY_APP_DATABASE_URL=sqlite:///x.db \\
        .venv/bin/python -m tests.loops._starlette_legacy_app SCENARIO [SCENARIO ...]

It runs each named scenario of `tests.loops.webapp` with force_rollback off and then on,
checking everything itself, and prints `ok <scenario> force_rollback=<flag>` after each.
On the first failure it prints the traceback and exits 1.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import traceback

import starlette
from starlette.applications import Starlette

from databases import Database
from tests import admin
from tests.loops import make_table, webapp

URL = os.environ["LEGACY_APP_DATABASE_URL"]

items = make_table("loops_web_legacy")


def make_app(database: Database) -> Starlette:
    app = Starlette(routes=webapp.starlette_routes(database, items))
    app.add_event_handler("startup", database.connect)
    app.add_event_handler("shutdown", database.disconnect)
    return app


# Module-global, created at import time, before any event loop exists.
DATABASES = {
    force_rollback: Database(URL, force_rollback=force_rollback) for force_rollback in (False, True)
}
APPS = {force_rollback: make_app(database) for force_rollback, database in DATABASES.items()}


def run(scenario: str, force_rollback: bool) -> None:
    case = webapp.Case(APPS[force_rollback], DATABASES[force_rollback], URL, items, force_rollback)
    try:
        if scenario in webapp.SYNC_SCENARIOS:
            webapp.run_scenario(scenario, case)
        else:
            asyncio.run(webapp.run_async_scenario(scenario, case))
    finally:
        admin.clear_tables(URL, items)


def main(scenarios: list[str]) -> int:
    # The point of the subprocess: Starlette 0.x, whose apps still have event handlers.
    print(f"starlette {starlette.__version__} from {os.path.dirname(starlette.__file__)}")
    if not starlette.__version__.startswith("0.") or not hasattr(Starlette, "add_event_handler"):
        print("expected Starlette 0.x, with Starlette.add_event_handler", file=sys.stderr)
        return 1
    unknown = set(scenarios) - set(webapp.SYNC_SCENARIOS) - set(webapp.ASYNC_SCENARIOS_ALL)
    if not scenarios or unknown:
        print(f"usage: {__doc__}\nunknown scenarios: {sorted(unknown)}", file=sys.stderr)
        return 2
    admin.create_tables(URL, items)
    try:
        for scenario in scenarios:
            for force_rollback in (False, True):
                run(scenario, force_rollback)
                print(f"ok {scenario} force_rollback={force_rollback}", flush=True)
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        # Connections a failure left behind are garbage; they must not block the drop.
        gc.collect()
        admin.drop_tables(URL, items)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
