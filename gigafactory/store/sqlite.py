"""SQLite document backend: the embedded default store, one file in the data directory.

Each container is a table of (productId, id, etag, JSON body). All statements of one backend
run on one dedicated thread over one connection, so concurrent coroutines never interleave
inside a transaction. Other processes on the same file (the API, the control-plane worker)
are handled by WAL mode, a busy timeout, and `BEGIN IMMEDIATE` around every read-then-write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from gigafactory.store.backend import (
    CONTAINERS,
    AlreadyExists,
    NotFound,
    Page,
    PreconditionFailed,
    Query,
    StoreError,
    without_meta,
)

__all__ = ["SCHEMA_VERSION", "SQLiteBackend", "SchemaVersionError"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Fields that are real columns; everything else is read from the JSON body.
_COLUMNS = {"id": "id", "productId": "product_id"}


class SchemaVersionError(StoreError):
    """The database file was written by a newer Gigafactory than this one."""


def _expr(field: str) -> str:
    """The SQL expression of a top-level document field.

    Indexes below are built from the same text, which is what lets SQLite use them.
    """
    if field in _COLUMNS:
        return _COLUMNS[field]
    if not _FIELD.match(field):
        raise ValueError(f"invalid field name {field!r}: use a top-level field like 'jobId'")
    return f"json_extract(body, '$.{field}')"


def _table(container: str) -> str:
    if container not in CONTAINERS:
        raise ValueError(f"unknown container {container!r}; known: {', '.join(CONTAINERS)}")
    return f'"{container}"'


# Expression indexes for the filters and orders the fleet store issues most.
_INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "jobs_product_stage": ("jobs", ("productId", "stage")),
    "jobs_created": ("jobs", ("createdAt",)),
    "jobs_parent": ("jobs", ("parentId",)),
    "events_job_at": ("events", ("jobId", "at")),
    "logs_job_epoch_seq": ("logs", ("jobId", "epoch", "seq")),
    "runs_job": ("runs", ("jobId",)),
    "artifacts_job": ("artifacts", ("jobId",)),
    "factories_token": ("factories", ("tokenId",)),
}


def _create_table(container: str) -> str:
    return (
        f"CREATE TABLE {_table(container)} (product_id TEXT NOT NULL, id TEXT NOT NULL, "
        "etag TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (product_id, id))"
    )


# The containers of schema 1; later ones are created by the migration that added them.
_V1_CONTAINERS = CONTAINERS[: CONTAINERS.index("settings") + 1]

# Schema version -> statements that bring the previous version up to it. Append, never edit.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        *(_create_table(c) for c in _V1_CONTAINERS),
        *(
            f"CREATE INDEX {name} ON {_table(c)} ({', '.join(_expr(f) for f in fields)})"
            for name, (c, fields) in _INDEXES.items()
        ),
    ],
    # Fleet-wide "jobs in a stage" (waiting jobs for wake-ups and slot fairness) and the
    # spend ledger by time: without these, both scan every job or run ever stored.
    2: [
        f"CREATE INDEX jobs_stage_created ON {_table('jobs')} "
        f"({_expr('stage')}, {_expr('createdAt')})",
        f"CREATE INDEX ledger_at ON {_table('ledger')} (product_id, {_expr('at')})",
    ],
    # Shadow routing decisions, reported per product over a time window.
    3: [
        _create_table("decisions"),
        f"CREATE INDEX decisions_at ON {_table('decisions')} (product_id, {_expr('at')})",
    ],
    # The fleet's queue of jobs waiting for a slot, by lane, oldest first.
    4: [
        _create_table("queue"),
        _create_table("lanes"),
        f"CREATE INDEX queue_lane ON {_table('queue')} ({_expr('lane')}, {_expr('waitingSince')})",
        f"CREATE INDEX queue_job ON {_table('queue')} ({_expr('jobId')})",
    ],
    # Web control plane sign-ins (server-side sessions), found by id or by their API key.
    5: [
        _create_table("sessions"),
        f"CREATE INDEX sessions_key ON {_table('sessions')} (product_id, {_expr('keyId')})",
    ],
    # The audit log of operator and admin actions, newest first across products.
    6: [
        _create_table("audit"),
        f"CREATE INDEX audit_at ON {_table('audit')} ({_expr('at')})",
    ],
}
SCHEMA_VERSION = max(MIGRATIONS)


def _new_etag() -> str:
    return uuid.uuid4().hex


def _param(value: Any) -> Any:
    """A filter value as SQLite compares it with `json_extract` (enums by value)."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"unsupported filter value {value!r}: use str, int, float, bool or None")


def _encode_token(sort_key: Any, doc_id: str, product_id: str) -> str:
    raw = json.dumps([sort_key, doc_id, product_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> tuple[Any, str, str]:
    try:
        sort_key, doc_id, product_id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise StoreError("invalid continuation token") from exc
    if not isinstance(doc_id, str) or not isinstance(product_id, str):
        raise StoreError("invalid continuation token")
    return sort_key, doc_id, product_id


def _prepare(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    """(productId, id, JSON body) of a document to write, metadata stripped."""
    clean = without_meta(doc)
    doc_id, product_id = clean.get("id"), clean.get("productId")
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError("a document needs a non-empty string 'id'")
    if not isinstance(product_id, str) or not product_id:
        raise ValueError(f"document {doc_id!r} needs a non-empty string 'productId'")
    return product_id, doc_id, json.dumps(clean, separators=(",", ":"), allow_nan=False)


def _out(body: str, etag: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(body)
    doc["_etag"] = etag
    return doc


def _where(product_id: str | None, where: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if product_id is not None:
        clauses.append("product_id = ?")
        params.append(product_id)
    for field, value in where.items():
        expr = _expr(field)
        if isinstance(value, Sequence | set | frozenset) and not isinstance(value, str):
            values = [_param(v) for v in value]
            if not values:
                clauses.append("0")  # IN () matches nothing
                continue
            clauses.append(f"{expr} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        elif value is None:
            clauses.append(f"{expr} IS NULL")
        else:
            clauses.append(f"{expr} = ?")
            params.append(_param(value))
    return clauses, params


def _contains(field: str, text: str) -> tuple[str, list[Any]]:
    """The condition "the string field contains `text`" (never true for other types)."""
    if not isinstance(text, str):
        raise TypeError(f"contains needs a string, not {text!r}")
    if field in _COLUMNS:
        return f"instr({_COLUMNS[field]}, ?) > 0", [text]
    expr = _expr(field)
    return f"(json_type(body, '$.{field}') = 'text' AND instr({expr}, ?) > 0)", [text]


def _after(sort: str, descending: bool, token: str) -> tuple[str, list[Any]]:
    """The keyset condition "comes after the last row of the previous page".

    Rows are ordered by (sort, id, productId); SQLite sorts NULL first ascending and last
    descending, and a NULL never compares, hence the explicit NULL branches.
    """
    key, doc_id, product_id = _decode_token(token)
    op = "<" if descending else ">"
    tie = f"(id, product_id) {op} (?, ?)"
    if key is None:
        if descending:
            return f"({sort} IS NULL AND {tie})", [doc_id, product_id]
        return f"({sort} IS NOT NULL OR {tie})", [doc_id, product_id]
    nulls = f" OR {sort} IS NULL" if descending else ""
    return f"({sort} {op} ? OR ({sort} = ? AND {tie}){nulls})", [key, key, doc_id, product_id]


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock up front.

    A deferred transaction that reads and then writes can fail with SQLITE_BUSY without
    waiting when another process wrote in between; IMMEDIATE waits (busy timeout) instead.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SQLiteBackend:
    """A `DocumentBackend` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._conn is None:
            raise StoreError(f"SQLite store {self.path} is not open")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the file, switch to WAL, and create or migrate the schema.

        Raises:
            SchemaVersionError: the file's schema is newer than this code knows.
        """
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE).
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _immediate(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} has store schema version {current}, but this Gigafactory "
                    f"supports up to {SCHEMA_VERSION}: upgrade Gigafactory or use another "
                    "data directory"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
            if current < SCHEMA_VERSION:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                log.info("store %s: schema %d -> %d", self.path, current, SCHEMA_VERSION)

    async def close(self) -> None:
        """Close the connection and its thread; the backend can be opened again."""
        if self._conn is None or self._executor is None:
            return
        conn, executor = self._conn, self._executor
        self._conn = None
        self._executor = None
        await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    # --- documents ----------------------------------------------------------------------------
    async def create(self, container: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Insert a new document. Raises AlreadyExists."""
        table = _table(container)
        product_id, doc_id, body = _prepare(doc)
        etag = _new_etag()

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO {table} (product_id, id, etag, body) VALUES (?, ?, ?, ?)",
                    (product_id, doc_id, etag, body),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"{container}/{product_id}/{doc_id} already exists") from exc

        await self._run(op)
        return _out(body, etag)

    async def read(self, container: str, product_id: str, doc_id: str) -> dict[str, Any]:
        """Point read. Raises NotFound."""
        table = _table(container)

        def op(conn: sqlite3.Connection) -> tuple[str, str] | None:
            row: tuple[str, str] | None = conn.execute(
                f"SELECT body, etag FROM {table} WHERE product_id = ? AND id = ?",
                (product_id, doc_id),
            ).fetchone()
            return row

        row = await self._run(op)
        if row is None:
            raise NotFound(f"{container}/{product_id}/{doc_id} not found")
        return _out(*row)

    async def upsert(self, container: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Insert or overwrite unconditionally (only for documents with one writer)."""
        table = _table(container)
        product_id, doc_id, body = _prepare(doc)
        etag = _new_etag()

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {table} (product_id, id, etag, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (product_id, id) DO UPDATE SET etag = excluded.etag, "
                "body = excluded.body",
                (product_id, doc_id, etag, body),
            )

        await self._run(op)
        return _out(body, etag)

    def _check_etag(
        self, conn: sqlite3.Connection, container: str, product_id: str, doc_id: str, etag: str
    ) -> None:
        row = conn.execute(
            f"SELECT etag FROM {_table(container)} WHERE product_id = ? AND id = ?",
            (product_id, doc_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"{container}/{product_id}/{doc_id} not found")
        if row[0] != etag:
            raise PreconditionFailed(f"{container}/{product_id}/{doc_id} changed since read")

    async def replace(self, container: str, doc: Mapping[str, Any], *, etag: str) -> dict[str, Any]:
        """Overwrite only if the stored etag equals `etag`.

        Raises:
            PreconditionFailed: the document changed since it was read.
            NotFound: it no longer exists.
        """
        table = _table(container)
        product_id, doc_id, body = _prepare(doc)
        new_etag = _new_etag()

        def op(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                self._check_etag(conn, container, product_id, doc_id, etag)
                conn.execute(
                    f"UPDATE {table} SET etag = ?, body = ? WHERE product_id = ? AND id = ?",
                    (new_etag, body, product_id, doc_id),
                )

        await self._run(op)
        return _out(body, new_etag)

    async def delete(
        self, container: str, product_id: str, doc_id: str, *, etag: str | None = None
    ) -> None:
        """Delete (only if unchanged when `etag` is given). Raises NotFound, PreconditionFailed."""
        table = _table(container)

        def op(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                if etag is not None:
                    self._check_etag(conn, container, product_id, doc_id, etag)
                deleted = conn.execute(
                    f"DELETE FROM {table} WHERE product_id = ? AND id = ?", (product_id, doc_id)
                ).rowcount
                if deleted == 0:
                    raise NotFound(f"{container}/{product_id}/{doc_id} not found")

        await self._run(op)

    # --- queries ------------------------------------------------------------------------------
    async def query(self, container: str, product_id: str | None, query: Query) -> Page:
        """Documents matching `query`, within one partition or (None) across partitions."""
        table = _table(container)
        if query.limit < 1:
            raise ValueError(f"query limit must be at least 1, not {query.limit}")
        clauses, params = _where(product_id, query.where)
        if query.greater_than is not None:
            field, value = query.greater_than
            clauses.append(f"{_expr(field)} > ?")
            params.append(_param(value))
        if query.contains is not None:
            clause, more = _contains(*query.contains)
            clauses.append(clause)
            params.extend(more)
        sort = _expr(query.order_by or "id")
        if query.continuation:
            clause, more = _after(sort, query.descending, query.continuation)
            clauses.append(clause)
            params.extend(more)
        direction = "DESC" if query.descending else "ASC"
        sql = (
            f"SELECT body, etag, {sort}, id, product_id FROM {table}"
            + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
            + f" ORDER BY {sort} {direction}, id {direction}, product_id {direction} LIMIT ?"
        )
        params.append(query.limit + 1)  # one more tells whether there is a next page

        def op(conn: sqlite3.Connection) -> list[tuple[str, str, Any, str, str]]:
            rows: list[tuple[str, str, Any, str, str]] = conn.execute(sql, params).fetchall()
            return rows

        rows = await self._run(op)
        continuation = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            continuation = _encode_token(*rows[-1][2:])
        return Page([_out(body, etag) for body, etag, *_ in rows], continuation)

    async def total(
        self, container: str, product_id: str | None, field: str, where: Mapping[str, Any]
    ) -> float:
        """The sum of a numeric field over the documents matching the equality filters."""
        return float(await self._aggregate(f"TOTAL({_expr(field)})", container, product_id, where))

    async def count(self, container: str, product_id: str | None, where: Mapping[str, Any]) -> int:
        """How many documents match the equality filters."""
        return int(await self._aggregate("COUNT(*)", container, product_id, where))

    async def _aggregate(
        self, aggregate: str, container: str, product_id: str | None, where: Mapping[str, Any]
    ) -> Any:
        """One aggregate (`COUNT(*)`, `TOTAL(...)`) over the matching documents."""
        table = _table(container)
        clauses, params = _where(product_id, where)
        sql = f"SELECT {aggregate} FROM {table}" + (
            f" WHERE {' AND '.join(clauses)}" if clauses else ""
        )

        def op(conn: sqlite3.Connection) -> Any:
            return conn.execute(sql, params).fetchone()[0]

        return await self._run(op)
