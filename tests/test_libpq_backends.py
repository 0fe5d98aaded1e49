"""The psycopg 3 (`postgresql+psycopg://`) and aiopg (`postgresql+aiopg://`) backends: what
they do apart from the shared suite, which runs on them when TEST_DATABASE_URLS lists them.

Tests of a running server take the `postgresql+psycopg` and `postgresql+aiopg` URLs of
TEST_DATABASE_URLS; the others build URLs that are never connected.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import uuid
import warnings

import pytest
import sqlalchemy as sa

from databases import Database, DatabaseURL
from databases.backends._libpq_common import begin_statement
from databases.backends._libpq_pool import STATUS_IDLE
from databases.backends.aiopg import AiopgBackend
from databases.backends.common import _sqlalchemy_compat as compat
from databases.backends.psycopg import PsycopgBackend
from tests import admin
from tests.loops import run_in_bare_loop
from tests.settings import application_name_options

# Tests that need no server build their URLs on this one, never connected.
UNUSED_URL = "postgresql://localhost/unused"
# Tests that need the server run on the psycopg and aiopg URLs of TEST_DATABASE_URLS.
libpq_urls = pytest.mark.dialects("postgresql+psycopg", "postgresql+aiopg")
DRIVERS = {"psycopg": PsycopgBackend, "aiopg": AiopgBackend}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def url_for(driver: str, query: str = "") -> str:
    return str(DatabaseURL(UNUSED_URL).replace(driver=driver, query=query))


def server_connections(url: str, app: str) -> int:
    [(count,)] = admin.raw_fetch_all(
        url, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
    )
    return int(count)


def test_schemes_choose_their_driver(driver: str) -> None:
    dialect = Database(url_for(driver)).dialect
    assert dialect.name == "postgresql"
    assert dialect.driver == {"psycopg": "psycopg", "aiopg": "psycopg2"}[driver]


@pytest.mark.parametrize(
    ("query", "options", "expected"),
    [
        ("min_size=1&max_size=20", {}, {"min_size": 1, "max_size": 20}),
        ("max_size=20", {"max_size": 3}, {"max_size": 3}),
        ("ssl=true", {}, {"sslmode": "require"}),
        ("ssl=false", {}, {"sslmode": "disable"}),
        ("ssl=verify-full", {}, {"sslmode": "verify-full"}),
    ],
)
def test_url_options_become_pool_sizes_and_libpq_options(
    driver: str, query: str, options: dict[str, object], expected: dict[str, object]
) -> None:
    backend = DRIVERS[driver](url_for(driver, query), **options)
    assert backend._get_connection_kwargs() == expected


def test_ssl_follows_the_one_rule_with_libpq_modes(driver: str) -> None:
    backend = DRIVERS[driver](url_for(driver, "ssl=TRUE"))
    assert backend._get_connection_kwargs() == {"sslmode": "require"}
    with pytest.raises(ValueError, match="verify-full"):
        DRIVERS[driver](url_for(driver, "ssl=sometimes"))


def test_per_loop_instances_share_the_setup(driver: str) -> None:
    template = DRIVERS[driver](url_for(driver, "max_size=3"), application_name="x")
    backend = template.for_new_loop()
    assert type(backend) is DRIVERS[driver]
    assert backend._dialect is template._dialect
    assert backend._get_connection_kwargs() == {"max_size": 3, "application_name": "x"}


def test_begin_statement_takes_asyncpg_options() -> None:
    assert begin_statement({}) == "BEGIN"
    assert (
        begin_statement({"isolation": "serializable", "readonly": True, "deferrable": True})
        == "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE"
    )
    with pytest.raises(ValueError, match="isolation"):
        begin_statement({"isolation": "chaos"})
    with pytest.raises(TypeError, match="nosuch"):
        begin_statement({"nosuch": 1})


@pytest.mark.needs_session("counts its connections on the server")
@libpq_urls
@pytest.mark.asyncio
async def test_pool_opens_min_size_and_never_more_than_max_size(database_url: str) -> None:
    app = f"dbl_libpq_{uuid.uuid4().hex[:12]}"
    database = Database(
        database_url, min_size=2, max_size=2, **application_name_options(database_url, app)
    )
    async with database:
        assert server_connections(database_url, app) == 2
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with database.connection() as connection:
                await connection.fetch_val("SELECT 1")
                held.set()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await held.wait()
        await asyncio.sleep(0.05)
        third = asyncio.create_task(database.fetch_val("SELECT 3"))
        await asyncio.sleep(0.2)
        assert not third.done(), "a third connection was opened past max_size"
        release.set()
        assert await third == 3
        await asyncio.gather(*holders)
        assert server_connections(database_url, app) == 2
    assert server_connections(database_url, app) == 0


@libpq_urls
@pytest.mark.asyncio
async def test_a_connection_comes_back_to_the_pool_out_of_any_transaction(
    database_url: str,
) -> None:
    backend = DRIVERS[admin.driver_name(database_url)](database_url, min_size=1, max_size=1)
    await backend.connect()
    try:
        connection = backend.connection()
        await connection.acquire()
        raw = connection.raw_connection
        await connection._run("BEGIN")
        await connection.release()
        await connection.acquire()
        assert connection.raw_connection is raw
        assert backend._transaction_status(raw) == STATUS_IDLE
        await connection.release()
    finally:
        await backend.disconnect()


@pytest.mark.needs_session("counts its connections on the server")
@libpq_urls
def test_a_closed_loops_connections_are_closed_without_it(database_url: str) -> None:
    """A loop closed without disconnect(): disconnect() from another loop drops its
    connections at once, on the server too, and nothing warns about unclosed ones."""
    app = f"dbl_libpq_{uuid.uuid4().hex[:12]}"
    database = Database(
        database_url, min_size=1, max_size=2, **application_name_options(database_url, app)
    )

    async def query() -> None:
        await database.connect()
        assert await database.fetch_val(sa.select(sa.literal(1))) == 1

    run_in_bare_loop(query())
    assert server_connections(database_url, app) >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        # Not asyncio.run(): it would drop the thread's current loop (pytest-asyncio's,
        # left by an earlier test), whose collection warns about that loop, not ours.
        run_in_bare_loop(database.disconnect())
        gc.collect()
    assert database.loop_states() == []
    for _ in range(50):
        if server_connections(database_url, app) == 0:
            break
        run_in_bare_loop(asyncio.sleep(0.05))
    assert server_connections(database_url, app) == 0


@libpq_urls
@pytest.mark.asyncio
async def test_percent_signs_in_sql_and_values(database_url: str) -> None:
    async with Database(database_url) as database:
        assert await database.fetch_val("SELECT '100%'") == "100%"
        assert await database.fetch_val("SELECT :v || '%'", {"v": "5%"}) == "5%%"
        assert await database.fetch_val(sa.select(sa.literal("a%b"))) == "a%b"


def test_modules_import_without_their_driver_and_say_what_to_install() -> None:
    """Existing suites import `databases.backends.aiopg` where aiopg is not installed."""
    script = (
        "import sys\n"
        "sys.modules['aiopg'] = sys.modules['psycopg'] = None\n"
        "from databases import Database\n"
        "import databases.backends.aiopg, databases.backends.psycopg\n"
        "for scheme, extra in [('aiopg', 'aiopg'), ('psycopg', 'psycopg')]:\n"
        "    try:\n"
        "        Database(f'postgresql+{scheme}://localhost/db')\n"
        "    except ImportError as error:\n"
        "        assert f'databases[{extra}]' in str(error), error\n"
        "    else:\n"
        "        raise AssertionError(scheme)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_psycopg_rows_are_decoded_with_sqlalchemys_adapters() -> None:
    """A canary: the installed SQLAlchemy's psycopg dialect offers the adapters map that
    makes psycopg decode rows as SQLAlchemy's engine does."""
    database = Database("postgresql+psycopg://localhost/unused")
    adapters = compat.psycopg_adapters(database.dialect)
    assert adapters is not None


def test_without_sqlalchemys_psycopg_adapters_the_backend_says_what_to_do() -> None:
    """Never rows that differ from SQLAlchemy's: a clear error names the way out."""
    with pytest.raises(RuntimeError, match=r"use postgresql:// \(asyncpg\)"):
        compat.psycopg_adapters(sa.create_engine("sqlite://").dialect)
