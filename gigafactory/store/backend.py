"""The document backend: the narrow waist every store implementation provides.

Both SQLite and Azure Cosmos DB are driven through this protocol. It is deliberately the
intersection of what both can do well: JSON documents in containers partitioned by
`productId`, point reads, single-document writes with etag compare-and-set, and bounded
queries with equality filters. No multi-document transactions (Cosmos transactional batch
is unavailable on the local server and limited to one partition on the real one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "AlreadyExists",
    "CONTAINERS",
    "DocumentBackend",
    "NotFound",
    "Page",
    "PreconditionFailed",
    "Query",
    "StoreError",
    "etag_of",
    "without_meta",
]

# Every container is partitioned by /productId; every document has "id" and "productId".
CONTAINERS: tuple[str, ...] = (
    "jobs",
    "events",
    "runs",
    "artifacts",
    "logs",
    "factories",
    "slots",
    "keys",
    "enrollments",
    "budgets",
    "ledger",
    "settings",
    "decisions",
    "queue",
    "lanes",
    "sessions",
    "audit",
)


class StoreError(Exception):
    """Base class of store errors."""


class NotFound(StoreError):
    """No document with that id in that partition."""


class AlreadyExists(StoreError):
    """A document with that id already exists in that partition."""


class PreconditionFailed(StoreError):
    """The document changed since it was read (etag mismatch): re-read and retry."""


@dataclass(frozen=True)
class Page:
    """One page of a query: the documents and a token for the next page (None at the end)."""

    items: list[dict[str, Any]]
    continuation: str | None = None


@dataclass(frozen=True)
class Query:
    """A bounded query: equality filters (a list value means IN), one order, a page size.

    `greater_than` (field, value) adds one strict lower bound on a top-level field.
    `contains` (field, text) keeps documents whose top-level string field contains `text`
    (case-sensitive: store a casefolded copy of a field to search it without case; a missing
    or non-string field never matches). Results are ordered by `order_by` (default `id`) with
    ties broken by id; `continuation` is the opaque token of the previous page of the same
    query.
    """

    where: Mapping[str, Any] = field(default_factory=dict)
    order_by: str | None = None
    descending: bool = False
    limit: int = 100
    continuation: str | None = None
    greater_than: tuple[str, Any] | None = None
    contains: tuple[str, str] | None = None


class DocumentBackend(Protocol):
    """JSON documents in containers partitioned by `productId`, compare-and-set by etag.

    Documents are plain dicts in camelCase. The backend adds `_etag` (an opaque version
    string, changed by every write) to what it returns and ignores `_etag` on input.
    Field names in `Query.where` and `Query.order_by` are top-level document fields.
    """

    async def open(self) -> None:
        """Connect and create what is missing (schema, containers)."""

    async def close(self) -> None:
        """Release connections."""

    async def create(self, container: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Insert a new document. Raises AlreadyExists."""

    async def read(self, container: str, product_id: str, doc_id: str) -> dict[str, Any]:
        """Point read. Raises NotFound."""

    async def upsert(self, container: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Insert or overwrite unconditionally (only for documents with one writer)."""

    async def replace(self, container: str, doc: Mapping[str, Any], *, etag: str) -> dict[str, Any]:
        """Overwrite only if the stored etag equals `etag`.

        Raises:
            PreconditionFailed: the document changed since it was read.
            NotFound: it no longer exists.
        """

    async def delete(
        self, container: str, product_id: str, doc_id: str, *, etag: str | None = None
    ) -> None:
        """Delete (only if unchanged when `etag` is given). Raises NotFound, PreconditionFailed."""

    async def query(self, container: str, product_id: str | None, query: Query) -> Page:
        """Documents matching `query`, within one partition or (None) across partitions."""

    async def count(self, container: str, product_id: str | None, where: Mapping[str, Any]) -> int:
        """How many documents match the equality filters."""

    async def total(
        self, container: str, product_id: str | None, field: str, where: Mapping[str, Any]
    ) -> float:
        """The sum of a numeric field over the documents matching the equality filters (0
        when none match; documents without the field count 0)."""


def etag_of(doc: Mapping[str, Any]) -> str:
    """The etag a backend put on a document it returned."""
    etag = doc.get("_etag")
    if not isinstance(etag, str):
        raise StoreError(f"document {doc.get('id')!r} has no etag")
    return etag


def without_meta(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document without backend metadata (`_etag`, `_rid`, `_ts`, ...)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}
