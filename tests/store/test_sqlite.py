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


async def test_fleet_wide_stage_and_ledger_queries_use_indexes(tmp_path: Path):
    # Wake-ups and slot fairness list the waiting jobs of every product; the budget view
    # reads the ledger by time. Without their indexes both scan everything ever stored.
    path = tmp_path / "fleet.sqlite3"
    backend = SQLiteBackend(path)
    await backend.open()
    await backend.close()
    stage, created, at = (f"json_extract(body, '$.{f}')" for f in ("stage", "createdAt", "at"))
    with closing(sqlite3.connect(path)) as conn:
        jobs = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT body FROM jobs WHERE {stage} = ? "
            f"ORDER BY {created} DESC, id DESC, product_id DESC LIMIT 500",
            ("waiting",),
        ).fetchall()
        ledger = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT body FROM ledger WHERE product_id = ? AND {at} > ? "
            f"ORDER BY {at} DESC, id DESC LIMIT 100",
            ("p", "2026"),
        ).fetchall()
    assert "jobs_stage_created" in str(jobs)
    assert "ledger_at" in str(ledger)


async def test_a_version_1_file_is_migrated(tmp_path: Path):
    path = tmp_path / "fleet.sqlite3"
    backend = SQLiteBackend(path)
    await backend.open()
    await backend.create("jobs", {"id": "j1", "productId": "p", "stage": "waiting"})
    await backend.close()
    with closing(sqlite3.connect(path)) as conn:  # what version 1 left behind
        conn.execute("DROP INDEX jobs_stage_created")
        conn.execute("DROP INDEX ledger_at")
        conn.execute('DROP TABLE "decisions"')  # and what versions 3 to 6 added
        conn.execute('DROP TABLE "queue"')
        conn.execute('DROP TABLE "lanes"')
        conn.execute('DROP TABLE "sessions"')
        conn.execute('DROP TABLE "audit"')
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.commit()
    backend = SQLiteBackend(path)
    await backend.open()
    assert (await backend.read("jobs", "p", "j1"))["stage"] == "waiting"
    await backend.close()
    with closing(sqlite3.connect(path)) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs_stage_created", "ledger_at", "decisions_at", "sessions_key"} <= names
    assert {"decisions", "queue", "lanes", "sessions", "audit"} <= tables
    assert {"queue_lane", "audit_at"} <= names
    assert int(version[0]) == SCHEMA_VERSION == 6
