"""Azure Cosmos DB document backend: the production store.

One database, one container per entry of `CONTAINERS`, each partitioned by `/productId`.
Every write is one document; compare-and-set is the document's `_etag` with
`MatchConditions.IfNotModified` (HTTP 412 -> `PreconditionFailed`, which the fleet store
answers by re-reading). Queries page by keyset, exactly like the SQLite backend: results are
ordered by (order field, id, productId) and the continuation token is the last row's key, so
a page never depends on Cosmos continuation tokens and a token survives inserts.

Ordering by a field needs a composite index (field, id, productId) in each direction;
`open()` creates the containers with the indexes of `ORDER_FIELDS` (plus `order_fields`),
and `query` refuses an order it has no index for. See docs/operations-cosmos.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient, DatabaseProxy
from azure.cosmos.documents import ConnectionPolicy
from azure.cosmos.exceptions import CosmosHttpResponseError

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

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["ORDER_FIELDS", "PARTITION_KEY_PATH", "CosmosBackend", "indexing_policy"]

log = logging.getLogger(__name__)

T = TypeVar("T")

PARTITION_KEY_PATH = "/productId"

# The fields the fleet store orders each container by (besides id, which every container
# can be ordered by). Each gets composite indexes (field, id, productId) ASC and DESC.
ORDER_FIELDS: Mapping[str, tuple[str, ...]] = {
    "jobs": ("createdAt",),
    "events": ("at",),
    "runs": ("epoch",),
    "artifacts": ("createdAt",),
    "logs": ("epoch", "seq"),
    "ledger": ("at",),
    "decisions": ("at",),
    "queue": ("waitingSince",),
    "audit": ("at",),
}

# Large payloads nobody filters or orders on: kept out of the index to save write RUs.
_EXCLUDED_PATHS: Mapping[str, tuple[str, ...]] = {
    "jobs": ("/spec/*",),
    "logs": ("/text/?",),
}

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Cosmos DB ids cannot contain these (they are part of the resource URL).
_BAD_ID_CHARS = frozenset("/\\?#")

# Status codes worth another try. A throttled (429) or "retry with" (449) request was not
# executed, so every operation may repeat it. A timeout (408) or an unavailable service (503)
# may hide a write that happened, so only idempotent operations repeat those.
_RETRY_ALWAYS = frozenset({429, 449})
_RETRY_IDEMPOTENT = frozenset({408, 503})
_RETRY_AFTER_HEADER = "x-ms-retry-after-ms"

# Cosmos DB sorts scalar types booleans < numbers < strings (after undefined and null).
_TYPE_CHECKS = ("IS_BOOL", "IS_NUMBER", "IS_STRING")


def _validate_container(container: str) -> None:
    if container not in CONTAINERS:
        raise ValueError(f"unknown container {container!r}; known: {', '.join(CONTAINERS)}")


def _ref(field: str) -> str:
    """The SQL reference to a top-level document field (validated: no injection)."""
    if field in ("id", "productId"):
        return f"c.{field}"
    if not _FIELD.match(field):
        raise ValueError(f"invalid field name {field!r}: use a top-level field like 'jobId'")
    return f'c["{field}"]'


def _param(value: Any) -> Any:
    """A filter value as the query compares it (enums by value)."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"unsupported filter value {value!r}: use str, int, float, bool or None")


def _rank(value: Any) -> int:
    """Where a scalar's type sorts among scalars (index into `_TYPE_CHECKS`)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return 1
    if isinstance(value, str):
        return 2
    raise StoreError("invalid continuation token")


def _sort_key(doc: Mapping[str, Any], field: str) -> Any:
    """A document's value of the order field, None when it is missing, null or not scalar."""
    value = doc.get(field)
    return value if isinstance(value, bool | int | float | str) else None


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
    if sort_key is not None:
        _rank(sort_key)
    return sort_key, doc_id, product_id


def _check_id(doc_id: str) -> None:
    if _BAD_ID_CHARS.intersection(doc_id):
        raise ValueError(f"invalid id {doc_id!r}: Cosmos DB ids cannot contain / \\ ? or #")


def _prepare(doc: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(productId, id, body) of a document to write, metadata stripped."""
    clean = without_meta(doc)
    doc_id, product_id = clean.get("id"), clean.get("productId")
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError("a document needs a non-empty string 'id'")
    if not isinstance(product_id, str) or not product_id:
        raise ValueError(f"document {doc_id!r} needs a non-empty string 'productId'")
    _check_id(doc_id)
    json.dumps(clean, allow_nan=False)  # the SQLite backend refuses the same documents
    return product_id, doc_id, clean


def _out(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as the backend returns it: the body and `_etag`, no other metadata."""
    out = without_meta(doc)
    out["_etag"] = doc["_etag"]
    return out


class _Params:
    """Query parameters, named @p0, @p1, ... in the order they are added."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def copy(self) -> _Params:
        params = _Params()
        params.items = list(self.items)
        return params

    def add(self, value: Any) -> str:
        name = f"@p{len(self.items)}"
        self.items.append({"name": name, "value": value})
        return name


def _where(product_id: str | None, where: Mapping[str, Any], params: _Params) -> list[str]:
    clauses: list[str] = []
    if product_id is not None:
        # Also required by the local test server whenever the request names a partition.
        clauses.append(f"c.productId = {params.add(product_id)}")
    for field, value in where.items():
        ref = _ref(field)
        if isinstance(value, Sequence | set | frozenset) and not isinstance(value, str):
            values = [_param(v) for v in value]
            if not values:
                clauses.append("false")  # IN () matches nothing
                continue
            clauses.append(f"{ref} IN ({', '.join(params.add(v) for v in values)})")
        elif value is None:
            clauses.append(f"(NOT IS_DEFINED({ref}) OR IS_NULL({ref}))")
        else:
            clauses.append(f"{ref} = {params.add(_param(value))}")
    return clauses


def _after(
    columns: Sequence[tuple[str, Any]], descending: bool, params: _Params, *, typed: bool
) -> str:
    """The keyset condition "comes after (columns) = (values)" in the query's order.

    Written as a flat disjunction (c0 > v0 OR c0 = v0 AND c1 > v1 OR ...): the local test
    server's parser takes exponential time in nested parentheses. Comparisons between
    different JSON types are undefined in Cosmos DB SQL, so when the first column is an order
    field (`typed`), the scalar types that sort after the token's type are added explicitly.
    """
    op = "<" if descending else ">"
    names = [(ref, params.add(value)) for ref, value in columns]
    disjuncts = [
        " AND ".join([*(f"{ref} = {name}" for ref, name in names[:i]), f"{ref} {op} {name}"])
        for i, (ref, name) in enumerate(names)
    ]
    if typed:
        first_ref, first_value = columns[0]
        rank = _rank(first_value)
        later = range(rank) if descending else range(rank + 1, len(_TYPE_CHECKS))
        disjuncts.extend(f"{_TYPE_CHECKS[i]}({first_ref})" for i in later)
    return f"({' OR '.join(disjuncts)})"


@dataclass(frozen=True)
class _Segment:
    """One stretch of a query's order, served by one ORDER BY.

    An order field splits the results in two segments: documents whose value is a scalar,
    ordered by (field, id, productId), and the others (missing, null), ordered by
    (id, productId) and sorted before the scalars ascending, after them descending, as
    SQLite sorts NULL.
    """

    columns: tuple[str, ...]  # the ORDER BY fields
    filter: str | None  # which documents belong to this segment
    typed: bool  # the first column is an order field of mixed scalar types

    def sql(
        self,
        base: Sequence[str],
        params: _Params,
        descending: bool,
        after: Sequence[Any] | None,
        top: int,
    ) -> str:
        clauses = list(base)
        if self.filter:
            clauses.append(self.filter)
        refs = [_ref(c) for c in self.columns]
        if after is not None:
            clauses.append(
                _after(list(zip(refs, after, strict=True)), descending, params, typed=self.typed)
            )
        direction = "DESC" if descending else "ASC"
        return (
            f"SELECT TOP {int(top)} * FROM c"
            + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
            + " ORDER BY "
            + ", ".join(f"{ref} {direction}" for ref in refs)
        )


def _order_columns(field: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((field, "id", "productId")))


def _composite_indexes(fields: Iterable[str]) -> list[list[dict[str, str]]]:
    """Composite indexes for ordering by each field (and by id), in both directions."""
    indexes: list[list[dict[str, str]]] = []
    for field in dict.fromkeys(("id", *fields)):
        columns = _order_columns(field)
        for order in ("ascending", "descending"):
            indexes.append([{"path": f"/{c}", "order": order} for c in columns])
    return indexes


def _index_set(indexes: Iterable[Iterable[Mapping[str, Any]]]) -> set[tuple[tuple[str, str], ...]]:
    return {
        tuple((str(p.get("path")), str(p.get("order", "ascending"))) for p in index)
        for index in indexes
    }


def indexing_policy(container: str, order_fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The indexing policy `open()` gives a container (`order_fields` default: ORDER_FIELDS).

    Everything is range-indexed except large payloads nobody filters on; composite indexes
    serve ordering by id and by each order field.
    """
    _validate_container(container)
    fields = ORDER_FIELDS.get(container, ()) if order_fields is None else order_fields
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [
            {"path": '/"_etag"/?'},
            *({"path": p} for p in _EXCLUDED_PATHS.get(container, ())),
        ],
        "compositeIndexes": _composite_indexes(fields),
    }


class CosmosBackend:
    """A `DocumentBackend` on one Azure Cosmos DB (NoSQL API) database.

    Args:
        endpoint: the account URL, e.g. ``https://myaccount.documents.azure.com:443/``.
        key: an account key; without it (and without `credential`) Microsoft Entra ID is
            used through `azure.identity.aio.DefaultAzureCredential`.
        credential: an async token credential to use instead of a key.
        database: the database to use (created if missing).
        verify_tls: verify the server's certificate (only the local test server needs False).
        max_retries: how many times a throttled or transiently failed request is repeated.
        order_fields: order fields to index besides `ORDER_FIELDS`, by container.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        key: str | None = None,
        credential: AsyncTokenCredential | None = None,
        database: str = "gigafactory",
        verify_tls: bool = True,
        max_retries: int = 6,
        retry_base_delay_s: float = 0.05,
        retry_max_delay_s: float = 5.0,
        order_fields: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        if key is not None and credential is not None:
            raise ValueError("give a Cosmos DB key or a credential, not both")
        if max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, not {max_retries}")
        self.endpoint = endpoint
        self.database = database
        self.verify_tls = verify_tls
        self.max_retries = max_retries
        self.retry_base_delay_s = retry_base_delay_s
        self.retry_max_delay_s = retry_max_delay_s
        self._key = key
        self._credential = credential
        fields: dict[str, tuple[str, ...]] = {c: ORDER_FIELDS.get(c, ()) for c in CONTAINERS}
        for container, extra in (order_fields or {}).items():
            _validate_container(container)
            for field in extra:
                _ref(field)
            fields[container] = tuple(dict.fromkeys((*fields[container], *extra)))
        self.order_fields: Mapping[str, tuple[str, ...]] = fields
        self._client: CosmosClient | None = None
        self._owned_credential: AsyncTokenCredential | None = None
        self._containers: dict[str, ContainerProxy] = {}

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, and create the database and any missing container (with its indexes).

        Raises:
            StoreError: the account cannot be reached or signed in to, a container exists
                with another partition key, or something is missing and cannot be created
                here (e.g. with Entra ID, which has no control-plane rights).
        """
        if self._client is not None:
            return
        credential: str | AsyncTokenCredential
        if self._key is not None:
            credential = self._key
        elif self._credential is not None:
            credential = self._credential
        else:
            credential = self._owned_credential = _default_credential()
        # Throttling is retried here (bounded, with jitter), not also inside the SDK.
        # (What retry_throttle_total=0 would say, if the SDK did not read 0 as "unset".)
        policy = ConnectionPolicy()
        policy.RetryOptions._max_retry_attempt_count = 0
        client = CosmosClient(
            self.endpoint,
            credential,
            connection_policy=policy,
            connection_verify=self.verify_tls,
        )
        self._client = client
        try:
            db = await self._ensure_database(client)
            proxies = await asyncio.gather(*(self._ensure_container(db, c) for c in CONTAINERS))
            self._containers = dict(zip(CONTAINERS, proxies, strict=True))
        except (ServiceRequestError, ServiceResponseError) as exc:
            await self.close()
            raise StoreError(f"cannot reach Cosmos DB at {self.endpoint}: {exc}") from exc
        except ClientAuthenticationError as exc:
            await self.close()
            raise StoreError(
                f"cannot sign in to Cosmos DB at {self.endpoint} with Microsoft Entra ID "
                f"(set FLEET_COSMOS_KEY, or configure azure-identity): {exc}"
            ) from exc
        except BaseException:
            await self.close()
            raise
        log.info("Cosmos store %s database %s: open", self.endpoint, self.database)

    async def close(self) -> None:
        """Close the client (and the credential it made); the backend can be opened again."""
        client, owned = self._client, self._owned_credential
        self._client = None
        self._owned_credential = None
        self._containers = {}
        if client is not None:
            await client.close()
        if owned is not None:
            await owned.close()

    async def _ensure_database(self, client: CosmosClient) -> DatabaseProxy:
        try:
            return await self._retrying(
                "create database", True, lambda: client.create_database_if_not_exists(self.database)
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code == 409:  # created concurrently by another process
                return client.get_database_client(self.database)
            if exc.status_code == 403:
                raise StoreError(
                    f"Cosmos DB database {self.database!r} is missing and this identity may "
                    "not create it: create it (see docs/operations-cosmos.md)"
                ) from exc
            raise StoreError(f"cannot open Cosmos DB database {self.database!r}: {exc}") from exc

    async def _ensure_container(self, db: DatabaseProxy, name: str) -> ContainerProxy:
        policy = indexing_policy(name, self.order_fields[name])
        partition_key = PartitionKey(path=PARTITION_KEY_PATH)
        try:
            proxy = await self._retrying(
                f"create container {name}",
                True,
                lambda: db.create_container_if_not_exists(
                    name, partition_key=partition_key, indexing_policy=policy
                ),
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code != 409:  # 409: created concurrently by another process
                raise StoreError(
                    f"cannot create Cosmos DB container {self.database}/{name} "
                    f"(create it as docs/operations-cosmos.md describes): {exc}"
                ) from exc
            proxy = db.get_container_client(name)
        props = await self._retrying(f"read container {name}", True, proxy.read)
        paths = (props.get("partitionKey") or {}).get("paths") or []
        if paths != [PARTITION_KEY_PATH]:
            raise StoreError(
                f"Cosmos DB container {self.database}/{name} is partitioned by {paths}, "
                f"not [{PARTITION_KEY_PATH!r}]: it was not created by Gigafactory"
            )
        current = (props.get("indexingPolicy") or {}).get("compositeIndexes") or []
        missing = _index_set(policy["compositeIndexes"]) - _index_set(current)
        if missing:
            log.warning(
                "Cosmos DB container %s/%s lacks %d composite indexes: updating its indexing "
                "policy (queries ordering by new fields may fail until Cosmos DB has built them)",
                self.database,
                name,
                len(missing),
            )
            merged = dict(props.get("indexingPolicy") or policy)
            merged["compositeIndexes"] = [*current, *_composite_indexes_of(missing)]
            try:
                await self._retrying(
                    f"update indexes of {name}",
                    True,
                    lambda: db.replace_container(
                        name, partition_key=partition_key, indexing_policy=merged
                    ),
                )
            except CosmosHttpResponseError as exc:
                raise StoreError(
                    f"Cosmos DB container {self.database}/{name} lacks the composite indexes "
                    f"the store orders by and they cannot be added here ({exc.status_code}): "
                    "apply the indexing policy of docs/operations-cosmos.md"
                ) from exc
        return proxy

    def _container(self, container: str) -> ContainerProxy:
        _validate_container(container)
        if self._client is None:
            raise StoreError(f"Cosmos store {self.endpoint} ({self.database}) is not open")
        return self._containers[container]

    # --- retries ------------------------------------------------------------------------------
    def _retryable(self, exc: BaseException, idempotent: bool) -> bool:
        if isinstance(exc, CosmosHttpResponseError):
            if exc.status_code in _RETRY_ALWAYS:
                return True
            return idempotent and exc.status_code in _RETRY_IDEMPOTENT
        if isinstance(exc, ServiceRequestError):  # never reached the server
            return True
        if isinstance(exc, ServiceResponseError):  # sent; it may have happened
            return idempotent
        return False

    def _delay(self, attempt: int, exc: BaseException) -> float:
        """Exponential backoff with jitter, never shorter than the server's retry-after."""
        ceiling = min(self.retry_max_delay_s, self.retry_base_delay_s * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        headers = getattr(exc, "headers", None) or {}
        retry_after = headers.get(_RETRY_AFTER_HEADER)
        if retry_after is not None:
            try:
                delay = max(delay, float(retry_after) / 1000.0)
            except ValueError:
                pass
        return delay

    async def _retrying(self, what: str, idempotent: bool, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`, repeating it on throttling and transient failures (bounded)."""
        attempt = 0
        while True:
            try:
                return await call()
            except (CosmosHttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
                if attempt >= self.max_retries or not self._retryable(exc, idempotent):
                    raise
                delay = self._delay(attempt, exc)
                attempt += 1
                log.warning(
                    "Cosmos %s: %s; retry %d/%d in %.3fs",
                    what,
                    getattr(exc, "status_code", None) or type(exc).__name__,
                    attempt,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)

    # --- documents ----------------------------------------------------------------------------
    async def create(self, container: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Insert a new document. Raises AlreadyExists."""
        proxy = self._container(container)
        product_id, doc_id, body = _prepare(doc)
        try:
            created = await self._retrying(
                f"create {container}", False, lambda: proxy.create_item(body)
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code == 409:
                raise AlreadyExists(f"{container}/{product_id}/{doc_id} already exists") from exc
            raise _store_error("create", container, product_id, doc_id, exc) from exc
        return _out(created)

    async def read(self, container: str, product_id: str, doc_id: str) -> dict[str, Any]:
        """Point read. Raises NotFound."""
        proxy = self._container(container)
        if _BAD_ID_CHARS.intersection(doc_id) or not product_id or not doc_id:
            raise NotFound(f"{container}/{product_id}/{doc_id} not found")
        try:
            doc = await self._retrying(
                f"read {container}",
                True,
                lambda: proxy.read_item(doc_id, partition_key=product_id),
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code == 404:
                raise NotFound(f"{container}/{product_id}/{doc_id} not found") from exc
            raise _store_error("read", container, product_id, doc_id, exc) from exc
        return _out(doc)

    async def upsert(self, container: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Insert or overwrite unconditionally (only for documents with one writer)."""
        proxy = self._container(container)
        product_id, doc_id, body = _prepare(doc)
        try:
            stored = await self._retrying(
                f"upsert {container}", True, lambda: proxy.upsert_item(body)
            )
        except CosmosHttpResponseError as exc:
            raise _store_error("upsert", container, product_id, doc_id, exc) from exc
        return _out(stored)

    async def replace(self, container: str, doc: Mapping[str, Any], *, etag: str) -> dict[str, Any]:
        """Overwrite only if the stored etag equals `etag`.

        Raises:
            PreconditionFailed: the document changed since it was read.
            NotFound: it no longer exists.
        """
        proxy = self._container(container)
        product_id, doc_id, body = _prepare(doc)
        try:
            stored = await self._retrying(
                f"replace {container}",
                False,
                lambda: proxy.replace_item(
                    doc_id, body, etag=etag, match_condition=MatchConditions.IfNotModified
                ),
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code == 412:
                raise PreconditionFailed(
                    f"{container}/{product_id}/{doc_id} changed since read"
                ) from exc
            if exc.status_code == 404:
                raise NotFound(f"{container}/{product_id}/{doc_id} not found") from exc
            raise _store_error("replace", container, product_id, doc_id, exc) from exc
        return _out(stored)

    async def delete(
        self, container: str, product_id: str, doc_id: str, *, etag: str | None = None
    ) -> None:
        """Delete (only if unchanged when `etag` is given). Raises NotFound, PreconditionFailed."""
        proxy = self._container(container)
        if _BAD_ID_CHARS.intersection(doc_id) or not product_id or not doc_id:
            raise NotFound(f"{container}/{product_id}/{doc_id} not found")
        condition = MatchConditions.IfNotModified if etag is not None else None
        try:
            await self._retrying(
                f"delete {container}",
                False,
                lambda: proxy.delete_item(
                    doc_id, partition_key=product_id, etag=etag, match_condition=condition
                ),
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code == 404:
                raise NotFound(f"{container}/{product_id}/{doc_id} not found") from exc
            if exc.status_code == 412:
                raise PreconditionFailed(
                    f"{container}/{product_id}/{doc_id} changed since read"
                ) from exc
            raise _store_error("delete", container, product_id, doc_id, exc) from exc

    # --- queries ------------------------------------------------------------------------------
    async def _run_query(
        self, proxy: ContainerProxy, product_id: str | None, sql: str, params: _Params
    ) -> list[Any]:
        async def run() -> list[Any]:
            if product_id is None:
                pages = proxy.query_items(sql, parameters=params.items)
            else:
                pages = proxy.query_items(sql, parameters=params.items, partition_key=product_id)
            return [item async for item in pages]

        log.debug("Cosmos query %s %s", sql, params.items)
        try:
            return await self._retrying(f"query {proxy.id}", True, run)
        except CosmosHttpResponseError as exc:
            raise StoreError(
                f"Cosmos DB query on {proxy.id} failed ({exc.status_code}): {exc.message}"
            ) from exc

    def _segments(self, container: str, order: str) -> list[_Segment]:
        if order == "id":
            return [_Segment(_order_columns(order), None, typed=False)]
        if order not in self.order_fields[container]:
            raise ValueError(
                f"container {container!r} has no composite index to order by {order!r}: add it "
                "to cosmos.ORDER_FIELDS (or CosmosBackend(order_fields=...)) so open() creates it"
            )
        if order == "productId":  # always a string: no segment of documents without it
            return [_Segment(_order_columns(order), None, typed=False)]
        ref = _ref(order)
        return [
            _Segment(("id", "productId"), f"(NOT IS_PRIMITIVE({ref}) OR IS_NULL({ref}))", False),
            _Segment(_order_columns(order), f"IS_PRIMITIVE({ref}) AND NOT IS_NULL({ref})", True),
        ]

    async def query(self, container: str, product_id: str | None, query: Query) -> Page:
        """Documents matching `query`, within one partition or (None) across partitions."""
        proxy = self._container(container)
        if query.limit < 1:
            raise ValueError(f"query limit must be at least 1, not {query.limit}")
        order = query.order_by or "id"
        _ref(order)
        segments = self._segments(container, order)
        if query.descending:
            segments.reverse()
        base_params = _Params()
        base = _where(product_id, query.where, base_params)
        if query.greater_than is not None:
            field, value = query.greater_than
            value = _param(value)
            # NULL compares with nothing in SQLite; say so explicitly here.
            base.append("false" if value is None else f"{_ref(field)} > {base_params.add(value)}")
        if query.contains is not None:
            field, text = query.contains
            if not isinstance(text, str):
                raise TypeError(f"contains needs a string, not {text!r}")
            # CONTAINS is undefined (no match) for a missing or non-string field, as in SQLite.
            base.append(f"CONTAINS({_ref(field)}, {base_params.add(text)})")

        # Where the previous page stopped: its segment, and the key within it.
        start = 0
        after: list[Any] | None = None
        if query.continuation:
            key, doc_id, pk = _decode_token(query.continuation)
            if len(segments) == 1:  # ordered by id or productId: the key is one of them
                after = [pk, doc_id] if order == "productId" else [doc_id, pk]
            else:
                start = next(i for i, s in enumerate(segments) if s.typed == (key is not None))
                after = [key, doc_id, pk] if key is not None else [doc_id, pk]

        need = query.limit + 1  # one more tells whether there is a next page
        docs: list[dict[str, Any]] = []
        for index in range(start, len(segments)):
            params = base_params.copy()
            sql = segments[index].sql(
                base,
                params,
                query.descending,
                after if index == start else None,
                need - len(docs),
            )
            docs.extend(await self._run_query(proxy, product_id, sql, params))
            if len(docs) >= need:
                break

        continuation = None
        if len(docs) > query.limit:
            docs = docs[: query.limit]
            last = docs[-1]
            key = last[order] if order in ("id", "productId") else _sort_key(last, order)
            continuation = _encode_token(key, last["id"], last["productId"])
        return Page([_out(doc) for doc in docs], continuation)

    async def total(
        self, container: str, product_id: str | None, field: str, where: Mapping[str, Any]
    ) -> float:
        """The sum of a numeric field over the documents matching the equality filters."""
        proxy = self._container(container)
        params = _Params()
        clauses = _where(product_id, where, params)
        ref = _ref(field)
        clauses.append(f"IS_NUMBER({ref})")
        sql = f"SELECT VALUE SUM({ref}) FROM c WHERE {' AND '.join(clauses)}"
        # Across partitions the SDK may hand back one partial sum per partition range (and
        # an undefined one, left out, where nothing matched).
        return float(
            sum(n for n in await self._run_query(proxy, product_id, sql, params) if n is not None)
        )

    async def count(self, container: str, product_id: str | None, where: Mapping[str, Any]) -> int:
        """How many documents match the equality filters."""
        proxy = self._container(container)
        params = _Params()
        clauses = _where(product_id, where, params)
        sql = "SELECT VALUE COUNT(1) FROM c" + (
            f" WHERE {' AND '.join(clauses)}" if clauses else ""
        )
        # Across partitions the SDK may hand back one partial count per partition range.
        return sum(int(n) for n in await self._run_query(proxy, product_id, sql, params))


def _composite_indexes_of(
    indexes: Iterable[tuple[tuple[str, str], ...]],
) -> list[list[dict[str, str]]]:
    return [[{"path": path, "order": order} for path, order in index] for index in sorted(indexes)]


def _store_error(
    op: str, container: str, product_id: str, doc_id: str, exc: CosmosHttpResponseError
) -> StoreError:
    return StoreError(
        f"Cosmos DB {op} of {container}/{product_id}/{doc_id} failed "
        f"({exc.status_code}): {exc.message}"
    )


def _default_credential() -> AsyncTokenCredential:
    """Microsoft Entra ID sign-in (managed identity, workload identity, az login, ...)."""
    try:
        from azure.identity.aio import DefaultAzureCredential
    except ImportError as exc:
        from gigafactory.store import ConfigError

        raise ConfigError(
            "FLEET_COSMOS_KEY is not set and azure-identity is not installed: set "
            "FLEET_COSMOS_KEY, or install azure-identity to sign in with Microsoft Entra ID"
        ) from exc
    return DefaultAzureCredential()
