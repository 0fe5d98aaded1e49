"""DatabaseURL: parsing, rewriting and display, without any database."""

from __future__ import annotations

from urllib.parse import SplitResult, quote

import pytest

from databases import Database
from databases.errors import UnsupportedDatabaseURLError
from databases.url import DatabaseURL


def test_components_is_the_urlsplit_result_computed_once() -> None:
    url = DatabaseURL("postgresql://user:pw@localhost:5432/name?a=1#frag")
    components = url.components
    assert isinstance(components, SplitResult)
    assert components == SplitResult("postgresql", "user:pw@localhost:5432", "/name", "a=1", "frag")
    assert url.components is components


def test_basic_properties() -> None:
    url = DatabaseURL("postgresql+asyncpg://username:password@localhost:123/mydatabase")
    assert url.scheme == "postgresql+asyncpg"
    assert url.dialect == "postgresql"
    assert url.driver == "asyncpg"
    assert url.userinfo == b"username:password"
    assert url.username == "username"
    assert url.password == "password"
    assert url.hostname == "localhost"
    assert url.port == 123
    assert url.netloc == "username:password@localhost:123"
    assert url.database == "mydatabase"
    assert url.options == {}


def test_absent_parts() -> None:
    url = DatabaseURL("postgresql://localhost/name")
    assert url.driver == ""
    assert url.userinfo is None
    assert url.username is None
    assert url.password is None
    assert url.port is None

    url = DatabaseURL("sqlite://")
    assert url.hostname is None
    assert url.database == ""
    assert url.netloc == ""


def test_username_without_password() -> None:
    url = DatabaseURL("mysql://root@localhost/db")
    assert url.userinfo == b"root"
    assert url.username == "root"
    assert url.password is None


def test_empty_password_is_not_none() -> None:
    url = DatabaseURL("mysql://root:@localhost/db")
    assert url.username == "root"
    assert url.password == ""


def test_percent_encoded_username_and_password() -> None:
    username = "user@name:x"
    password = "p@ss:w/rd%?#"
    text = f"postgresql://{quote(username, safe='')}:{quote(password, safe='')}@host/db"
    url = DatabaseURL(text)
    assert url.username == username
    assert url.password == password
    assert url.hostname == "host"
    assert url.database == "db"


def test_unencoded_at_sign_in_password_splits_on_the_last_one() -> None:
    url = DatabaseURL("postgresql://user:p@ss@host/db")
    assert url.userinfo == b"user:p@ss"
    assert url.password == "p@ss"
    assert url.hostname == "host"


def test_ipv6_host() -> None:
    url = DatabaseURL("postgresql://user:pw@[::1]:5433/db")
    assert url.hostname == "::1"
    assert url.port == 5433


@pytest.mark.parametrize("option", ["host", "unix_sock"])
def test_unix_socket_from_query(option: str) -> None:
    url = DatabaseURL(f"postgresql://user:pw@/db?{option}=/var/run/postgresql")
    assert url.hostname == "/var/run/postgresql"
    assert url.database == "db"
    assert url.options == {option: "/var/run/postgresql"}


def test_real_host_wins_over_query_host() -> None:
    assert DatabaseURL("postgresql://localhost/db?host=/tmp").hostname == "localhost"


def test_host_option_wins_over_unix_sock() -> None:
    url = DatabaseURL("postgresql:///db?unix_sock=/b&host=/a")
    assert url.hostname == "/a"


def test_options() -> None:
    url = DatabaseURL("postgresql://localhost/db?min_size=1&max_size=20&ssl=verify-full")
    assert url.options == {"min_size": "1", "max_size": "20", "ssl": "verify-full"}
    assert DatabaseURL("sqlite:///db?a=%2Fx+y").options == {"a": "/x y"}


def test_options_is_a_copy() -> None:
    url = DatabaseURL("postgresql://localhost/db?min_size=1")
    url.options.pop("min_size")
    assert url.options == {"min_size": "1"}


def test_database_is_unquoted() -> None:
    assert DatabaseURL("postgresql://localhost/my%20db").database == "my db"


def test_sqlite_paths() -> None:
    assert DatabaseURL("sqlite:///:memory:").database == ":memory:"
    assert DatabaseURL("sqlite:///relative.db").database == "relative.db"
    assert DatabaseURL("sqlite:////abs/path.db").database == "/abs/path.db"
    assert DatabaseURL("sqlite+aiosqlite:///file.db").driver == "aiosqlite"


@pytest.mark.parametrize("port", ["abc", "12x", "-1", "+1", "65536", "99999"])
def test_invalid_port(port: str) -> None:
    url = DatabaseURL(f"postgresql://user:secret@localhost:{port}/db")
    with pytest.raises(ValueError) as info:
        url.port  # noqa: B018
    message = str(info.value)
    assert f"'{port}'" in message
    assert "postgresql://user:********@localhost" in message
    assert "secret" not in message
    assert "port must be" in message


def test_edge_ports() -> None:
    assert DatabaseURL("postgresql://localhost:0/db").port == 0
    assert DatabaseURL("postgresql://localhost:65535/db").port == 65535
    assert DatabaseURL("postgresql://localhost:/db").port is None


def test_from_database_url() -> None:
    original = DatabaseURL("postgresql://localhost/db")
    copy = DatabaseURL(original)
    assert copy == original
    assert str(copy) == "postgresql://localhost/db"


@pytest.mark.parametrize("value", [None, 123, b"sqlite://", ["sqlite://"]])
def test_type_error_for_other_input(value: object) -> None:
    with pytest.raises(TypeError, match="expected str or DatabaseURL"):
        DatabaseURL(value)  # type: ignore[arg-type]


# --- replace() -------------------------------------------------------------------------


def test_replace_scheme() -> None:
    url = DatabaseURL("postgresql://localhost/db")
    assert url.replace(scheme="mysql+aiomysql") == "mysql+aiomysql://localhost/db"


def test_replace_dialect_keeps_driver() -> None:
    url = DatabaseURL("postgresql+asyncpg://localhost/db")
    assert url.replace(dialect="postgres") == "postgres+asyncpg://localhost/db"


def test_replace_driver() -> None:
    url = DatabaseURL("postgresql://localhost/db")
    new = url.replace(driver="asyncpg")
    assert new == "postgresql+asyncpg://localhost/db"
    assert new.driver == "asyncpg"
    assert new.replace(driver="") == "postgresql://localhost/db"
    assert new.replace(driver=None) == "postgresql://localhost/db"


def test_replace_dialect_and_driver() -> None:
    url = DatabaseURL("postgresql+asyncpg://localhost/db")
    assert url.replace(dialect="mysql", driver="aiomysql") == "mysql+aiomysql://localhost/db"


def test_replace_username_and_password_are_quoted() -> None:
    url = DatabaseURL("postgresql://user:pw@localhost:5432/db")
    new = url.replace(username="new@user", password="p@ss:word/")
    assert str(new) == "postgresql://new%40user:p%40ss%3Aword%2F@localhost:5432/db"
    assert new.username == "new@user"
    assert new.password == "p@ss:word/"
    assert new.hostname == "localhost"
    assert new.port == 5432


def test_replace_round_trips_quoted_credentials() -> None:
    url = DatabaseURL("postgresql://us%40er:p%25w@localhost/db")
    assert url.replace(username=url.username, password=url.password) == url


def test_replace_keeps_existing_credentials_verbatim() -> None:
    url = DatabaseURL("postgresql://us%40er:p%25w@localhost/db")
    assert url.replace(hostname="other") == "postgresql://us%40er:p%25w@other/db"


def test_replace_adds_credentials() -> None:
    url = DatabaseURL("postgresql://localhost/db")
    assert url.replace(username="u") == "postgresql://u@localhost/db"
    assert url.replace(username="u", password="p") == "postgresql://u:p@localhost/db"


def test_replace_none_removes_credentials_and_port() -> None:
    url = DatabaseURL("postgresql://user:pw@localhost:5432/db")
    assert url.replace(password=None) == "postgresql://user@localhost:5432/db"
    assert url.replace(username=None, password=None) == "postgresql://localhost:5432/db"
    assert url.replace(port=None) == "postgresql://user:pw@localhost/db"


def test_replace_hostname() -> None:
    url = DatabaseURL("postgresql://user:pw@localhost:5432/db?ssl=true")
    assert url.replace(hostname="db.example") == "postgresql://user:pw@db.example:5432/db?ssl=true"


def test_replace_hostname_ipv6() -> None:
    url = DatabaseURL("postgresql://user@localhost:5432/db")
    new = url.replace(hostname="::1")
    assert new == "postgresql://user@[::1]:5432/db"
    assert new.hostname == "::1"
    assert new.port == 5432
    assert new.replace(port=1) == "postgresql://user@[::1]:1/db"


def test_replace_port() -> None:
    url = DatabaseURL("postgresql://user:pw@localhost/db")
    new = url.replace(port=6543)
    assert new == "postgresql://user:pw@localhost:6543/db"
    assert new.port == 6543
    assert new.replace(port="7000").port == 7000


def test_replace_port_on_empty_host() -> None:
    url = DatabaseURL("postgresql:///db?host=/var/run/postgresql")
    assert url.replace(port=5432) == "postgresql://:5432/db?host=/var/run/postgresql"


def test_replace_unrelated_part_keeps_invalid_port_text() -> None:
    url = DatabaseURL("postgresql://localhost:bad/db")
    assert url.replace(username="u") == "postgresql://u@localhost:bad/db"


def test_replace_database() -> None:
    url = DatabaseURL("postgresql://user:pw@localhost:5432/db?ssl=true")
    new = url.replace(database="test_db")
    assert new == "postgresql://user:pw@localhost:5432/test_db?ssl=true"
    assert new.database == "test_db"


def test_replace_database_escapes_url_delimiters() -> None:
    new = DatabaseURL("postgresql://localhost/db").replace(database="a?b#c")
    assert new.database == "a?b#c"
    assert new.options == {}


def test_replace_netloc() -> None:
    url = DatabaseURL("postgresql://user:pw@localhost/db")
    assert url.replace(netloc="other:1") == "postgresql://other:1/db"


def test_replace_netloc_then_port() -> None:
    url = DatabaseURL("postgresql://localhost/db")
    assert url.replace(netloc="a@b", port=9) == "postgresql://a@b:9/db"


def test_replace_path() -> None:
    url = DatabaseURL("postgresql://localhost/db")
    assert url.replace(path="/other") == "postgresql://localhost/other"
    assert url.replace(path="rel") == "postgresql://localhost/rel"


def test_replace_query() -> None:
    url = DatabaseURL("postgresql://localhost/db?min_size=1")
    new = url.replace(query="max_size=5")
    assert new == "postgresql://localhost/db?max_size=5"
    assert new.options == {"max_size": "5"}
    assert url.replace(query="") == "postgresql://localhost/db"


def test_replace_fragment() -> None:
    url = DatabaseURL("postgresql://localhost/db")
    assert url.replace(fragment="x") == "postgresql://localhost/db#x"


def test_replace_sqlite_keeps_three_slashes() -> None:
    url = DatabaseURL("sqlite:///file.db")
    assert url.replace(driver="aiosqlite") == "sqlite+aiosqlite:///file.db"
    assert url.replace(database="other.db") == "sqlite:///other.db"
    assert url.replace(query="mode=memory") == "sqlite:///file.db?mode=memory"
    assert url.replace(database="test_" + url.database).database == "test_file.db"


def test_replace_sqlite_absolute_path() -> None:
    url = DatabaseURL("sqlite:////abs/path.db")
    assert url.replace(driver="aiosqlite") == "sqlite+aiosqlite:////abs/path.db"
    new = url.replace(database="/other/path.db")
    assert new == "sqlite:////other/path.db"
    assert new.database == "/other/path.db"


def test_replace_sqlite_memory() -> None:
    url = DatabaseURL("sqlite:///:memory:")
    new = url.replace(driver="aiosqlite")
    assert new == "sqlite+aiosqlite:///:memory:"
    assert new.database == ":memory:"
    assert url.replace(database=":memory:") == url


def test_replace_nothing_returns_equal_url() -> None:
    for text in ["sqlite:///file.db", "postgresql://u:p@h:1/d?x=1"]:
        url = DatabaseURL(text)
        new = url.replace()
        assert new == url
        assert new is not url


def test_replace_unknown_keyword() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        DatabaseURL("sqlite://").replace(user="x")


def test_replace_wrong_value_type() -> None:
    with pytest.raises(TypeError, match="username must be a str"):
        DatabaseURL("sqlite://").replace(username=1)


# --- display and comparison ------------------------------------------------------------


def test_obscure_password() -> None:
    url = DatabaseURL("postgresql://username:password@localhost/name")
    assert url.obscure_password == "postgresql://username:********@localhost/name"
    assert url.replace(password="p@ss").obscure_password == (
        "postgresql://username:********@localhost/name"
    )


def test_obscure_password_keeps_rest_of_text() -> None:
    url = DatabaseURL("POSTGRESQL://u:s%40cret@Host:5432/db?ssl=true#f")
    assert url.obscure_password == "POSTGRESQL://u:********@Host:5432/db?ssl=true#f"


def test_obscure_password_with_unencoded_at_sign() -> None:
    url = DatabaseURL("postgresql://user:p@ss@host/db")
    assert url.obscure_password == "postgresql://user:********@host/db"


def test_obscure_password_without_password() -> None:
    for text in ["postgresql://user@localhost/db", "sqlite:///:memory:"]:
        assert DatabaseURL(text).obscure_password == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # The colon after the scheme is missing: no scheme, no netloc, still a password.
        ("postgresql//user:PASSWORD@host/db", "postgresql//user:********@host/db"),
        ("postgresql:/user:pa/ss@host/db", "postgresql:********@host/db"),
        ("user:PASSWORD@host/db", "user:********@host/db"),
    ],
)
def test_obscure_password_of_text_that_is_no_url(text: str, masked: str) -> None:
    assert DatabaseURL(text).obscure_password == masked
    assert "PASSWORD" not in repr(DatabaseURL(text))


def test_invalid_url_error_does_not_show_the_password() -> None:
    with pytest.raises(UnsupportedDatabaseURLError) as info:
        Database("postgresql//user:PASSWORD@host/db")
    assert "PASSWORD" not in str(info.value)
    assert "postgresql//user:********@host/db" in str(info.value)


def test_repr_and_str() -> None:
    url = DatabaseURL("postgresql://username:password@localhost/name")
    assert repr(url) == "DatabaseURL('postgresql://username:********@localhost/name')"
    assert str(url) == "postgresql://username:password@localhost/name"
    assert repr(DatabaseURL("sqlite:///:memory:")) == "DatabaseURL('sqlite:///:memory:')"


def test_equality() -> None:
    url = DatabaseURL("postgresql://localhost/name")
    assert url == "postgresql://localhost/name"
    # Reflected on purpose: str.__eq__ defers to DatabaseURL.__eq__.
    assert "postgresql://localhost/name" == url  # noqa: SIM300
    assert url == DatabaseURL("postgresql://localhost/name")
    assert url != "postgresql://localhost/other"
    assert url != DatabaseURL("postgresql://localhost/other")
    assert url != 1
    assert url != None  # noqa: E711


def test_hash_is_consistent_with_equality() -> None:
    url = DatabaseURL("postgresql://localhost/name")
    assert hash(url) == hash(DatabaseURL("postgresql://localhost/name"))
    assert hash(url) == hash("postgresql://localhost/name")
    lookup: dict[object, int] = {url: 1}
    assert lookup["postgresql://localhost/name"] == 1
    assert len({url, DatabaseURL(str(url)), str(url)}) == 1
