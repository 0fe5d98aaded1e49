"""The fault kit: disposable servers and a TCP proxy, so tests can break things for real.

- `servers`: a PostgreSQL (`initdb` + `pg_ctl`) and a MariaDB (`mariadb-install-db` +
  `mariadbd`) of the test's own, in a temporary directory on a free loopback port, which
  may be stopped, restarted and have their connections killed. The shared test servers
  are never touched.
- `proxy`: a loopback TCP proxy in a thread of its own that can cut, stall and black-hole
  the connections going through it, whatever event loop the test runs.
- `conftest`: fixtures that start each server once per session, only for a test that asks.
"""
