"""Which backend class serves a database URL, and how each event loop gets its instance."""

from __future__ import annotations

import typing

from databases.errors import UnsupportedDatabaseURLError
from databases.importer import import_from_string
from databases.interfaces import DatabaseBackend
from databases.url import DatabaseURL

BackendClass = typing.Callable[..., DatabaseBackend]

# Other names a URL may give a dialect by: `postgres://` as 0.9 accepted it.
DIALECT_ALIASES = {"postgres": "postgresql"}


def find_backend_class(url: DatabaseURL, registered: typing.Mapping[str, str]) -> BackendClass:
    """The class `registered` names for `url`: its whole scheme first, then its dialect."""
    if not url.scheme:
        raise UnsupportedDatabaseURLError(
            f"Invalid database URL {url.obscure_password!r}: expected "
            "'<dialect>[+<driver>]://...', e.g. 'postgresql://user:password@host/name' "
            "or 'sqlite:///file.db'."
        )
    import_string = registered.get(url.scheme)
    if import_string is None and url.driver:
        # Never another driver than the one asked for; 0.9's `postgres` names PostgreSQL.
        dialect = DIALECT_ALIASES.get(url.dialect, url.dialect)
        import_string = registered.get(f"{dialect}+{url.driver}")
        if import_string is None and url.dialect in registered:
            drivers = sorted(s for s in registered if s.startswith(dialect + "+"))
            raise UnsupportedDatabaseURLError(
                f"Unsupported driver {url.driver!r} for {url.dialect!r} in database URL "
                f"scheme {url.scheme!r}. Supported: {', '.join([dialect, *drivers])}. "
                "Register another backend in Database.SUPPORTED_BACKENDS."
            )
    if import_string is None:
        import_string = registered.get(url.dialect)
    if import_string is None:
        supported = ", ".join(sorted(registered))
        raise UnsupportedDatabaseURLError(
            f"Unsupported database URL scheme {url.scheme!r}. Supported schemes: "
            f"{supported}. Register another backend in Database.SUPPORTED_BACKENDS."
        )
    backend_class: BackendClass = import_from_string(import_string)
    return backend_class


def backend_for_new_loop(
    template: DatabaseBackend,
    backend_class: BackendClass,
    url: DatabaseURL,
    options: dict[str, typing.Any],
) -> DatabaseBackend:
    """A backend for one more event loop: the template's own copy where it offers one (it
    may share what loops can share), else a new instance of its class."""
    backend = template.for_new_loop()
    if backend is None:
        backend = backend_class(url, **options)
    return backend
