"""Synchronous tests through `TestClient`."""

from __future__ import annotations

from fastapi.testclient import TestClient
from notes.app import app

from databases import Database


def test_create_and_read(client: TestClient) -> None:
    created = client.post("/notes", json={"title": "buy milk"})
    assert created.status_code == 201
    note = created.json()
    assert note["title"] == "buy milk"
    assert client.get(f"/notes/{note['id']}").json() == note


def test_starts_empty_after_a_test_wrote(client: TestClient) -> None:
    """The previous test's note was rolled back with its savepoint."""
    assert client.get("/notes").json() == []


def test_mark_done_is_all_or_nothing(client: TestClient) -> None:
    first = client.post("/notes", json={"title": "one"}).json()
    second = client.post("/notes", json={"title": "two"}).json()
    missing = second["id"] + 1000
    assert client.post("/notes/done", json=[first["id"], missing]).status_code == 404
    assert [note["done"] for note in client.get("/notes").json()] == [False, False]
    done = client.post("/notes/done", json=[first["id"], second["id"]]).json()
    assert [note["done"] for note in done] == [True, True]


def test_without_lifespan(databases_db: Database) -> None:
    """A `TestClient` not entered runs no lifespan: the plugin's connection serves it."""
    client = TestClient(app)
    assert client.post("/notes", json={"title": "no lifespan"}).status_code == 201
    assert len(client.get("/notes").json()) == 1
    client.close()


def test_bad_input(client: TestClient) -> None:
    assert client.post("/notes", json={"title": ""}).status_code == 422
    assert client.get("/notes/12345").status_code == 404
