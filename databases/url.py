"""Parsing and rewriting of database URLs such as ``postgresql+asyncpg://user:pw@host/db``."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Optional, Tuple, Union
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

__all__ = ["DatabaseURL"]

_MASK = "********"

# Keywords replace() understands. ``fragment`` is not in the documented list but upstream
# accepted it (it forwarded unknown names to SplitResult._replace), so it stays allowed.
_RAW_PARTS = frozenset({"scheme", "netloc", "path", "query", "fragment"})
_DERIVED_PARTS = frozenset({"dialect", "driver", "username", "password", "hostname", "port"})
_REPLACE_KEYWORDS = _RAW_PARTS | _DERIVED_PARTS | {"database"}


def _split_netloc(netloc: str) -> Tuple[Optional[str], Optional[str], str, Optional[str]]:
    """Split a netloc into its raw (still quoted) user, password, host and port texts.

    Working on the raw text, rather than on urlsplit's decoded attributes, lets replace()
    keep untouched parts byte-for-byte (including an invalid port it was not asked about).
    """
    userinfo: Optional[str]
    if "@" in netloc:
        # The host cannot contain "@", so the last one ends the userinfo even when an
        # unencoded "@" sits in the password.
        userinfo, _, hostport = netloc.rpartition("@")
    else:
        userinfo, hostport = None, netloc

    user: Optional[str] = None
    password: Optional[str] = None
    if userinfo is not None:
        if ":" in userinfo:
            user, _, password = userinfo.partition(":")
        else:
            user = userinfo

    port: Optional[str] = None
    if hostport.startswith("["):
        # Bracketed IPv6 literal: only a colon after the closing bracket starts the port.
        close = hostport.find("]")
        if close != -1 and hostport[close + 1 : close + 2] == ":":
            hostport, port = hostport[: close + 1], hostport[close + 2 :]
    elif ":" in hostport:
        hostport, _, port = hostport.rpartition(":")
    return user, password, hostport, port


def _mask_unparsed_password(text: str) -> str:
    """Mask what may be a password in text that did not parse as ``scheme://user:pw@host``
    (``postgresql//user:pw@host`` has no scheme, so urlsplit finds no netloc).

    Everything from the first colon that does not start ``://`` up to the last ``@`` is
    masked: more than the password at worst, never less.
    """
    at = text.rfind("@")
    if at == -1:
        return text
    start = 0
    while True:
        colon = text.find(":", start, at)
        if colon == -1:
            return text
        if not text.startswith("//", colon + 1):
            return f"{text[: colon + 1]}{_MASK}{text[at:]}"
        start = colon + 1


def _join_netloc(
    user: Optional[str], password: Optional[str], host: str, port: Optional[str]
) -> str:
    netloc = host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if user is not None or password is not None:
        userinfo = user or ""
        if password is not None:
            userinfo = f"{userinfo}:{password}"
        netloc = f"{userinfo}@{netloc}"
    return netloc


def _unsplit(scheme: str, netloc: str, path: str, query: str, fragment: str) -> str:
    """Build URL text that always keeps the ``//`` authority marker.

    urllib's urlunsplit drops ``//`` for an empty netloc with schemes it does not know
    (``sqlite:///file`` would come back as ``sqlite:/file``), which changes the meaning for
    SQLAlchemy-style URLs, so the text is assembled here instead.
    """
    text = f"{scheme}://{netloc}" if scheme else f"//{netloc}"
    if path and not path.startswith("/"):
        # Without the slash a relative path would be read back as the host.
        path = "/" + path
    text += path
    if query:
        text += "?" + query
    if fragment:
        text += "#" + fragment
    return text


def _as_text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"DatabaseURL.replace(): {name} must be a str, got {type(value).__name__}")
    return value


class DatabaseURL:
    """An immutable database URL; parsed once, derived values computed on first use."""

    def __init__(self, url: Union[str, DatabaseURL]) -> None:
        """Parse `url`, a `str` or another `DatabaseURL`; anything else is a TypeError."""
        if isinstance(url, DatabaseURL):
            self._url: str = url._url
        elif isinstance(url, str):
            self._url = str(url)
        else:
            raise TypeError(
                "Invalid type for DatabaseURL: expected str or DatabaseURL, "
                f"got {type(url).__name__}"
            )

    @cached_property
    def components(self) -> SplitResult:
        """The `urllib.parse.urlsplit()` result of the URL."""
        return urlsplit(self._url)

    @property
    def scheme(self) -> str:
        """The whole scheme: `postgresql+asyncpg` in `postgresql+asyncpg://...`."""
        return self.components.scheme

    @property
    def dialect(self) -> str:
        """The scheme before `+`: `postgresql`, `mysql`, `sqlite`."""
        return self.scheme.split("+", 1)[0]

    @property
    def driver(self) -> str:
        """The scheme after `+` (`asyncpg`), or `""` when the URL names none."""
        _, _, driver = self.scheme.partition("+")
        return driver

    @cached_property
    def _netloc_parts(self) -> Tuple[Optional[str], Optional[str], str, Optional[str]]:
        return _split_netloc(self.components.netloc)

    @property
    def userinfo(self) -> Optional[bytes]:
        """`user:password` as given (still quoted), in bytes, or None without `@`."""
        netloc = self.components.netloc
        if "@" not in netloc:
            return None
        return netloc.rpartition("@")[0].encode("utf-8")

    @property
    def username(self) -> Optional[str]:
        """The user name, unquoted, or None."""
        user = self._netloc_parts[0]
        return None if user is None else unquote(user)

    @property
    def password(self) -> Optional[str]:
        """The password, unquoted, or None. `repr()` and error messages never show it."""
        password = self._netloc_parts[1]
        return None if password is None else unquote(password)

    @property
    def hostname(self) -> Optional[str]:
        """The host, else the `host` or `unix_sock` query option (a socket directory)."""
        # libpq and asyncpg accept a unix socket directory as ``?host=``; upstream also
        # honoured ``?unix_sock=``. Backends read the host from here either way.
        options = self._options
        return self.components.hostname or options.get("host") or options.get("unix_sock")

    @cached_property
    def port(self) -> Optional[int]:
        """The port as a number, or None; a ValueError names a bad one."""
        # Parsed here rather than via SplitResult.port so the error names the URL (without
        # its password) and reads the same on every Python version.
        text = self._netloc_parts[3]
        if not text:
            return None
        if not (text.isascii() and text.isdigit()):
            raise ValueError(
                f"Invalid port {text!r} in database URL {self.obscure_password!r}: "
                "the port must be a whole number"
            )
        port = int(text)
        if port > 65535:
            raise ValueError(
                f"Invalid port {text!r} in database URL {self.obscure_password!r}: "
                "the port must be between 0 and 65535"
            )
        return port

    @property
    def netloc(self) -> str:
        """`user:password@host:port` as written in the URL."""
        return self.components.netloc

    @property
    def database(self) -> str:
        """The path without its leading `/`, unquoted: the database name (SQLite: the
        file)."""
        path = self.components.path
        if path.startswith("/"):
            path = path[1:]
        return unquote(path)

    @cached_property
    def _options(self) -> dict[str, str]:
        return dict(parse_qsl(self.components.query))

    @property
    def options(self) -> dict[str, str]:
        """The query options as a new dict (changing it leaves the URL alone)."""
        # A copy, so a caller popping keys cannot corrupt the cached parse.
        return dict(self._options)

    def replace(self, **kwargs: Any) -> DatabaseURL:
        """Return a new URL with some parts changed.

        Raw parts (``scheme``, ``netloc``, ``path``, ``query``, ``fragment``) are applied
        first; the finer keywords then edit the result, so ``netloc=`` plus ``port=`` means
        "this netloc, with this port". ``username``/``password`` take plain text and are
        percent-quoted; passing ``None`` removes them (or the port).
        """
        unknown = set(kwargs) - _REPLACE_KEYWORDS
        if unknown:
            names = ", ".join(sorted(unknown))
            raise TypeError(f"DatabaseURL.replace() got unexpected keyword(s): {names}")

        parts = self.components
        scheme = _as_text("scheme", kwargs["scheme"]) if "scheme" in kwargs else parts.scheme
        netloc = _as_text("netloc", kwargs["netloc"]) if "netloc" in kwargs else parts.netloc
        path = _as_text("path", kwargs["path"]) if "path" in kwargs else parts.path
        query = _as_text("query", kwargs["query"]) if "query" in kwargs else parts.query
        fragment = (
            _as_text("fragment", kwargs["fragment"]) if "fragment" in kwargs else parts.fragment
        )

        if "dialect" in kwargs or "driver" in kwargs:
            base_dialect, _, base_driver = scheme.partition("+")
            dialect = _as_text("dialect", kwargs.get("dialect", base_dialect))
            driver = _as_text("driver", kwargs.get("driver", base_driver))
            scheme = f"{dialect}+{driver}" if driver else dialect

        if _DERIVED_PARTS.intersection(kwargs) - {"dialect", "driver"}:
            user, password, host, port = _split_netloc(netloc)
            if "username" in kwargs:
                new_user = kwargs["username"]
                user = None if new_user is None else quote(_as_text("username", new_user), safe="")
            if "password" in kwargs:
                new_pw = kwargs["password"]
                password = None if new_pw is None else quote(_as_text("password", new_pw), safe="")
            if "hostname" in kwargs:
                host = _as_text("hostname", kwargs["hostname"])
                if ":" in host and not host.startswith("["):
                    # An IPv6 literal (as the hostname property returns it) needs brackets
                    # back, or its colons would be read as a port separator.
                    host = f"[{host}]"
            if "port" in kwargs:
                new_port = kwargs["port"]
                port = None if new_port is None else str(new_port)
            netloc = _join_netloc(user, password, host, port)

        if "database" in kwargs:
            database = _as_text("database", kwargs["database"])
            # Only the characters that would end the path are escaped: the rest is taken
            # as written, like upstream, so an already-encoded name is not encoded twice.
            path = "/" + database.replace("?", "%3F").replace("#", "%23")

        return self.__class__(_unsplit(scheme, netloc, path, query, fragment))

    @cached_property
    def obscure_password(self) -> str:
        """The URL text with its password masked, for logs and reprs."""
        user, password, _, _ = self._netloc_parts
        if password is None:
            return _mask_unparsed_password(self._url)
        netloc = self.components.netloc
        hostport = netloc.rpartition("@")[2]
        masked = f"{user or ''}:{_MASK}@{hostport}"
        # Splice into the original text so everything else reads exactly as given; the
        # netloc contains "@" here, so its first occurrence is the one after "scheme://".
        start = self._url.find(netloc)
        if start == -1:  # urlsplit normalised the text (stripped whitespace etc.)
            parts = self.components
            return _unsplit(parts.scheme, masked, parts.path, parts.query, parts.fragment)
        return self._url[:start] + masked + self._url[start + len(netloc) :]

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.obscure_password!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DatabaseURL):
            return self._url == other._url
        if isinstance(other, str):
            return self._url == other
        return NotImplemented

    def __hash__(self) -> int:
        # Equal to the hash of the text, matching __eq__ against plain strings.
        return hash(self._url)
