"""Synchronous tests through `TestClient`."""

from __future__ import annotations

from fastapi.testclient import TestClient
from memos.app import app

from databases import Database


def test_create_and_read(client: TestClient) -> None:
    created = client.post("/memos", json={"title": "buy milk"})
    assert created.status_code == 201
    memo = created.json()
    assert memo["title"] == "buy milk"
    assert client.get(f"/memos/{memo['id']}").json() == memo


def test_starts_empty_after_a_test_wrote(client: TestClient) -> None:
    """The previous test's memo was rolled back with its savepoint."""
    assert client.get("/memos").json() == []


def test_mark_done_is_all_or_nothing(client: TestClient) -> None:
    first = client.post("/memos", json={"title": "one"}).json()
    second = client.post("/memos", json={"title": "two"}).json()
    missing = second["id"] + 1000
    assert client.post("/memos/done", json=[first["id"], missing]).status_code == 404
    assert [memo["done"] for memo in client.get("/memos").json()] == [False, False]
    done = client.post("/memos/done", json=[first["id"], second["id"]]).json()
    assert [memo["done"] for memo in done] == [True, True]


def test_without_lifespan(databases_db: Database) -> None:
    """A `TestClient` not entered runs no lifespan: the plugin's connection serves it."""
    client = TestClient(app)
    assert client.post("/memos", json={"title": "no lifespan"}).status_code == 201
    assert len(client.get("/memos").json()) == 1
    client.close()


def test_bad_input(client: TestClient) -> None:
    assert client.post("/memos", json={"title": ""}).status_code == 422
    assert client.get("/memos/12345").status_code == 404
