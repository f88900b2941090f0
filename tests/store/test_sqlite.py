"""SQLite specifics: schema versioning, WAL, index use."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from gigafactory.store import Query, SchemaVersionError, SQLiteBackend, StoreError
from gigafactory.store.sqlite import SCHEMA_VERSION


async def test_reopen_keeps_data(tmp_path: Path):
    path = tmp_path / "fleet.sqlite3"
    backend = SQLiteBackend(path)
    await backend.open()
    await backend.create("jobs", {"id": "a", "productId": "p"})
    await backend.close()
    await backend.open()
    assert (await backend.read("jobs", "p", "a"))["id"] == "a"
    await backend.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert int(version[0]) == SCHEMA_VERSION


async def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "fleet.sqlite3"
    backend = SQLiteBackend(path)
    await backend.open()
    await backend.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        await backend.open()


async def test_closed_backend_refuses_calls(tmp_path: Path):
    backend = SQLiteBackend(tmp_path / "fleet.sqlite3")
    with pytest.raises(StoreError, match="not open"):
        await backend.read("jobs", "p", "a")


async def test_unknown_container_and_bad_field_rejected(tmp_path: Path):
    backend = SQLiteBackend(tmp_path / "fleet.sqlite3")
    await backend.open()
    try:
        with pytest.raises(ValueError, match="unknown container"):
            await backend.read("nope", "p", "a")
        with pytest.raises(ValueError, match="invalid field"):
            await backend.query("jobs", None, Query(where={"a') OR 1=1 --": 1}))
    finally:
        await backend.close()


async def test_common_filters_use_indexes(tmp_path: Path):
    path = tmp_path / "fleet.sqlite3"
    backend = SQLiteBackend(path)
    await backend.open()
    await backend.close()
    with closing(sqlite3.connect(path)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT body FROM events WHERE product_id = ? "
            "AND json_extract(body, '$.jobId') = ? ORDER BY json_extract(body, '$.at')",
            ("p", "j"),
        ).fetchall()
    assert "events_job_at" in str(plan)
