"""Disposable PostgreSQL and MariaDB servers, each in a temporary directory of its own.

Started on a free loopback port with the fastest settings (no fsync, small buffers), so a
test may stop, restart or kill connections of its server without disturbing the shared
ones at 5432/3306. Administration goes through `tests.admin` (plain drivers), never
through `databases`. Every wait is bounded: a server that does not come up or go down in
time fails the test with its log.

Run as root (as in CI), PostgreSQL's tools run as the `postgres` OS user (initdb refuses
root) and mariadbd gets `--user=root`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing

from tests import admin

# Seconds a server may take to start or stop, and an admin command to finish.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 60.0
# MariaDB's default `wait_timeout` (seconds).
DEFAULT_WAIT_TIMEOUT = 28800

__all__ = ["DisposableMariaDB", "DisposablePostgres", "Server", "ServerError", "free_port"]


class ServerError(RuntimeError):
    """A disposable server could not be set up, started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _run(command: list[str], what: str, log: str | None = None) -> None:
    """Run a command to its end (bounded); a ServerError with its output if it fails."""
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what}: no answer within {COMMAND_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        detail = f"{done.stdout}{done.stderr}".strip()
        if log is not None:
            detail += "\n" + _tail(log)
        raise ServerError(f"{what} failed (exit {done.returncode}):\n{detail}")


def _is_root() -> bool:
    return os.geteuid() == 0


class _DisposableServer:
    """What both disposable servers share: URLs, restarting, running SQL as the admin."""

    user: str
    database: str
    host = "127.0.0.1"
    # The URL scheme of `url()` by default (`databases`' default driver for the server).
    dialect: str
    port: int

    def url(self, scheme: str | None = None, port: int | None = None, **query: typing.Any) -> str:
        """A URL of this server for `databases` (`scheme` picks the driver; `port` another
        way in, such as a proxy's)."""
        address = f"{self.host}:{port or self.port}"
        url = f"{scheme or self.dialect}://{self.user}@{address}/{self.database}"
        if query:
            url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
        return url

    @property
    def admin_url(self) -> str:
        return self.url()

    def start(self) -> None:
        raise NotImplementedError()

    def stop(self, mode: str = "fast") -> None:
        raise NotImplementedError()

    def is_running(self) -> bool:
        raise NotImplementedError()

    def restart(self, mode: str = "fast") -> None:
        """Stop (every connection goes) and start again on the same port."""
        self.stop(mode)
        self.start()

    def ensure_running(self) -> None:
        if not self.is_running():
            self.start()

    def fetch_all(self, sql: str) -> list[tuple[typing.Any, ...]]:
        return admin.raw_fetch_all(self.admin_url, sql)

    def execute(self, sql: str) -> None:
        admin.raw_execute(self.admin_url, sql)


class DisposablePostgres(_DisposableServer):
    """A PostgreSQL cluster of the test's own: `initdb` into a temp dir, `pg_ctl` on a free port.

    Login `postgres` without a password (`-A trust`), database `postgres`.
    """

    user = "postgres"
    database = "postgres"
    dialect = "postgresql"
    # The server's id of the connection that runs it.
    connection_id_sql = "SELECT pg_backend_pid()"

    @staticmethod
    def sleep_sql(seconds: float) -> str:
        return f"SELECT pg_sleep({seconds})"

    def __init__(self, bindir: str | None = None) -> None:
        self._bindir = bindir or self.find_bindir()
        self.port = free_port(self.host)
        self._dir = tempfile.mkdtemp(prefix="databases-faults-pg-")
        self._data = os.path.join(self._dir, "data")
        self._log = os.path.join(self._dir, "server.log")
        self._as_postgres: list[str] = []
        if _is_root():
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
            entry = pwd.getpwnam("postgres")
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
        self._initialised = False

    @staticmethod
    def find_bindir() -> str:
        """Where initdb and pg_ctl are: `$FAULTS_PG_BINDIR`, Debian's newest, or the PATH."""
        configured = os.environ.get("FAULTS_PG_BINDIR")
        if configured:
            return configured
        found = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"),
            key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
        )
        if found:
            return os.path.dirname(found[-1])
        initdb = shutil.which("initdb")
        if initdb is None:
            raise ServerError(
                "The fault tests need PostgreSQL's initdb and pg_ctl: install the "
                "postgresql package or set FAULTS_PG_BINDIR."
            )
        return os.path.dirname(initdb)

    def _tool(self, name: str, *args: str) -> list[str]:
        return [*self._as_postgres, os.path.join(self._bindir, name), *args]

    def _server_options(self) -> str:
        return " ".join(
            (
                f"-c listen_addresses={self.host}",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self._dir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=100",
            )
        )

    def start(self) -> None:
        """initdb on first use, then start the server and wait until it answers."""
        if not self._initialised:
            _run(
                self._tool(
                    "initdb",
                    "-D",
                    self._data,
                    "-A",
                    "trust",
                    "-U",
                    self.user,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ),
                "initdb",
            )
            self._initialised = True
        _run(
            self._tool(
                "pg_ctl",
                "-D",
                self._data,
                "-l",
                self._log,
                "-o",
                self._server_options(),
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "start",
            ),
            "pg_ctl start",
            self._log,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends sessions cleanly, `immediate` as if it crashed."""
        if not self.is_running():
            return
        _run(
            self._tool(
                "pg_ctl", "-D", self._data, "-m", mode, "-w", "-t", str(int(STOP_TIMEOUT)), "stop"
            ),
            "pg_ctl stop",
            self._log,
        )

    def is_running(self) -> bool:
        if not self._initialised:
            return False
        status = subprocess.run(
            self._tool("pg_ctl", "-D", self._data, "status"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return status.returncode == 0

    def terminate_backends(self, application_name: str | None = None) -> int:
        """End every client session but the asking one (only those of `application_name`, if
        given); how many were ended."""
        condition = "pid <> pg_backend_pid() AND backend_type = 'client backend'"
        if application_name is not None:
            condition += f" AND application_name = '{application_name}'"
        rows = self.fetch_all(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {condition}"
        )
        return int(rows[0][0])

    def kill_connections(self) -> int:
        """`terminate_backends()` under the name both servers share."""
        return self.terminate_backends()

    def client_count(self) -> int:
        """Client sessions open now, the asking one excluded."""
        rows = self.fetch_all(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return int(rows[0][0])

    def set_idle_timeout(self, seconds: float | None) -> None:
        """End sessions idle (outside a transaction) longer than `seconds` (PostgreSQL's
        `idle_session_timeout`, for sessions opened from now on); `None`: never."""
        if seconds is None:
            self.execute("ALTER SYSTEM RESET idle_session_timeout")
        else:
            self.execute(f"ALTER SYSTEM SET idle_session_timeout = '{int(seconds * 1000)}ms'")
        self.execute("SELECT pg_reload_conf()")

    def close(self) -> None:
        """Stop the server at once and remove its directory."""
        with contextlib.suppress(ServerError):
            self.stop("immediate")
        shutil.rmtree(self._dir, ignore_errors=True)


class DisposableMariaDB(_DisposableServer):
    """A MariaDB of the test's own: `mariadb-install-db` into a temp dir, `mariadbd` on a
    free port with its own socket. Login `root` without a password, database `faults`."""

    user = "root"
    database = "faults"
    dialect = "mysql"
    # The server's id of the connection that runs it.
    connection_id_sql = "SELECT CONNECTION_ID()"

    @staticmethod
    def sleep_sql(seconds: float) -> str:
        return f"SELECT SLEEP({seconds})"

    def __init__(self) -> None:
        for tool in ("mariadb-install-db", "mariadbd"):
            if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
                raise ServerError(
                    f"The fault tests need MariaDB's {tool}: install the mariadb-server package."
                )
        self.port = free_port(self.host)
        self._dir = tempfile.mkdtemp(prefix="databases-faults-mariadb-")
        self._data = os.path.join(self._dir, "data")
        self._log = os.path.join(self._dir, "server.log")
        self._socket = os.path.join(self._dir, "mariadb.sock")
        self._process: subprocess.Popen[bytes] | None = None
        self._initialised = False

    def _user_options(self) -> list[str]:
        return ["--user=root"] if _is_root() else []

    def start(self) -> None:
        """Install the system tables on first use, then start mariadbd and wait for it."""
        if self._process is not None and self._process.poll() is None:
            return
        if not self._initialised:
            _run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={self._data}",
                    *self._user_options(),
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
                "mariadb-install-db",
            )
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    mariadbd,
                    "--no-defaults",
                    *self._user_options(),
                    f"--datadir={self._data}",
                    f"--port={self.port}",
                    f"--bind-address={self.host}",
                    f"--socket={self._socket}",
                    f"--pid-file={os.path.join(self._dir, 'mariadbd.pid')}",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=16M",
                    "--innodb-log-file-size=4M",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--max-connections=100",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(self.host, self.port):
            if self._process.poll() is not None:
                raise ServerError(f"mariadbd exited at start:\n{_tail(self._log)}")
            if time.monotonic() > deadline:
                self._kill()
                raise ServerError(f"mariadbd did not listen within {START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        if not self._initialised:
            admin.raw_execute(
                f"mysql://{self.user}@{self.host}:{self.port}/",
                f"CREATE DATABASE {self.database}",
            )
            self._initialised = True

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` shuts down cleanly (SIGTERM), `immediate` kills it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if mode == "immediate" else signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _client_ids(self) -> list[int]:
        rows = self.fetch_all(
            "SELECT id FROM information_schema.processlist "
            "WHERE id <> CONNECTION_ID() AND command <> 'Daemon' AND user <> 'system user'"
        )
        return [int(row[0]) for row in rows]

    def kill_connections(self) -> int:
        """Kill every client connection but the asking one; how many were killed."""
        ids = self._client_ids()
        for connection_id in ids:
            with contextlib.suppress(Exception):  # gone meanwhile
                self.execute(f"KILL CONNECTION {connection_id}")
        return len(ids)

    def client_count(self) -> int:
        """Client connections open now, the asking one excluded."""
        return len(self._client_ids())

    def set_wait_timeout(self, seconds: int) -> None:
        """The idle time after which the server drops a connection (new connections)."""
        self.execute(f"SET GLOBAL wait_timeout = {int(seconds)}")

    def set_idle_timeout(self, seconds: float | None) -> None:
        """`set_wait_timeout()` under the name both servers share; `None`: the default."""
        self.set_wait_timeout(DEFAULT_WAIT_TIMEOUT if seconds is None else max(1, int(seconds)))

    def close(self) -> None:
        """Kill the server and remove its directory."""
        self.stop("immediate")
        shutil.rmtree(self._dir, ignore_errors=True)


# Either server: they share their methods (`kill_connections()`, `set_idle_timeout()`, ...).
Server = typing.Union[DisposablePostgres, DisposableMariaDB]
