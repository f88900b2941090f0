"""Cosmos DB specifics: containers and indexes, ordering by mixed types, retries, settings."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError

from gigafactory.settings import Settings
from gigafactory.store import (
    ConfigError,
    NotFound,
    PreconditionFailed,
    Query,
    StoreError,
    make_backend,
)
from gigafactory.store.backend import CONTAINERS, etag_of
from gigafactory.store.cosmos import CosmosBackend, _default_credential
from launch.devserver import free_port
from tests.support.cosmos import KEY, CosmosServer, cosmos_backend, drop_database

Factory = Callable[..., CosmosBackend]


@pytest.fixture
async def cosmos(cosmos_server: CosmosServer) -> AsyncIterator[Factory]:
    """Makes (unopened) backends on one fresh database of the local server."""
    database = f"test-{uuid.uuid4().hex[:12]}"
    opened: list[CosmosBackend] = []

    def factory(**kwargs: Any) -> CosmosBackend:
        backend = cosmos_backend(cosmos_server, database, **kwargs)
        opened.append(backend)
        return backend

    yield factory
    for backend in opened:
        await backend.close()
    await drop_database(cosmos_server, database)


def _ids(page) -> list[str]:
    return [doc["id"] for doc in page.items]


@pytest.mark.cosmos
async def test_open_creates_containers_with_indexes(cosmos: Factory, cosmos_server: CosmosServer):
    backend = cosmos()
    await backend.open()
    await backend.open()  # idempotent
    async with CosmosClient(cosmos_server.endpoint, KEY, connection_verify=False) as client:
        db = client.get_database_client(backend.database)
        names = {c["id"] async for c in db.list_containers()}
        assert names == set(CONTAINERS)
        props = await db.get_container_client("logs").read()
    assert props["partitionKey"]["paths"] == ["/productId"]
    composite = props["indexingPolicy"]["compositeIndexes"]
    assert [
        {"path": "/seq", "order": "descending"},
        {"path": "/id", "order": "descending"},
        {"path": "/productId", "order": "descending"},
    ] in [[dict(p) for p in index] for index in composite]


@pytest.mark.cosmos
async def test_reopen_keeps_data_and_returns_no_system_properties(cosmos: Factory):
    first = cosmos()
    await first.open()
    created = await first.create("jobs", {"id": "a", "productId": "p", "n": 1})
    await first.close()
    second = cosmos()
    await second.open()
    read = await second.read("jobs", "p", "a")
    assert read == created
    assert set(read) == {"id", "productId", "n", "_etag"}  # no _rid, _self, _ts, ...


@pytest.mark.cosmos
async def test_open_adds_missing_order_indexes(cosmos: Factory, caplog):
    plain = cosmos()
    await plain.open()
    with pytest.raises(ValueError, match="no composite index to order by 'zz'"):
        await plain.query("jobs", "p", Query(order_by="zz"))
    await plain.close()

    extended = cosmos(order_fields={"jobs": ("zz",)})
    with caplog.at_level(logging.WARNING, logger="gigafactory.store.cosmos"):
        await extended.open()
    assert "lacks 2 composite indexes" in caplog.text
    # (The local server drops a container's documents when its policy is replaced; Cosmos DB
    # keeps them and builds the new index online. So the documents are written afterwards.)
    await extended.create("jobs", {"id": "a", "productId": "p", "zz": 2})
    await extended.create("jobs", {"id": "b", "productId": "p", "zz": 1})
    assert _ids(await extended.query("jobs", "p", Query(order_by="zz"))) == ["b", "a"]


@pytest.mark.cosmos
async def test_container_with_another_partition_key_is_refused(
    cosmos: Factory, cosmos_server: CosmosServer
):
    backend = cosmos()
    async with CosmosClient(cosmos_server.endpoint, KEY, connection_verify=False) as client:
        db = await client.create_database_if_not_exists(backend.database)
        await db.create_container("runs", partition_key=PartitionKey(path="/tenant"))
    with pytest.raises(StoreError, match="runs is partitioned by"):
        await backend.open()
    with pytest.raises(StoreError, match="not open"):
        await backend.read("jobs", "p", "a")


@pytest.mark.cosmos
async def test_rejects_what_cosmos_cannot_store_or_query(cosmos: Factory):
    backend = cosmos()
    with pytest.raises(StoreError, match="not open"):
        await backend.read("jobs", "p", "a")
    await backend.open()
    with pytest.raises(ValueError, match="unknown container"):
        await backend.read("nope", "p", "a")
    with pytest.raises(ValueError, match="invalid field"):
        await backend.query("jobs", None, Query(where={'a"] OR 1=1 --': 1}))
    with pytest.raises(ValueError, match="invalid field"):
        await backend.query("jobs", None, Query(order_by="a b"))
    with pytest.raises(ValueError, match="invalid id"):
        await backend.create("jobs", {"id": "a/b", "productId": "p"})
    with pytest.raises(NotFound):
        await backend.read("jobs", "p", "a/b")
    with pytest.raises(ValueError, match="Out of range float"):
        await backend.create("jobs", {"id": "a", "productId": "p", "x": float("nan")})
    with pytest.raises(StoreError, match="invalid continuation"):
        await backend.query("jobs", None, Query(continuation="not-a-token"))


@pytest.mark.cosmos
@pytest.mark.parametrize("descending", [False, True])
async def test_order_by_mixed_scalar_types_pages(cosmos: Factory, descending: bool):
    # Cosmos DB sorts booleans < numbers < strings; missing and null come first (ascending),
    # as NULL does in SQLite. Keyset pages must cross the type boundaries.
    backend = cosmos(order_fields={"events": ("k",)})
    await backend.open()
    values: list[Any] = ["b", 2, True, "a", 1.5, None, False, 10]
    for i, value in enumerate(values):
        await backend.create("events", {"id": f"d{i}", "productId": "p", "k": value})
    await backend.create("events", {"id": "d9", "productId": "p"})  # no k at all
    await backend.create("events", {"id": "x", "productId": "p", "k": {"nested": 1}})
    ascending = ["d5", "d9", "x", "d6", "d2", "d4", "d1", "d7", "d3", "d0"]
    expected = ascending[::-1] if descending else ascending
    full = await backend.query("events", "p", Query(order_by="k", descending=descending))
    assert _ids(full) == expected
    seen: list[str] = []
    continuation = None
    while True:
        page = await backend.query(
            "events",
            "p",
            Query(order_by="k", descending=descending, limit=1, continuation=continuation),
        )
        seen.extend(_ids(page))
        continuation = page.continuation
        if continuation is None:
            break
    assert seen == expected


@pytest.mark.cosmos
async def test_throttling_is_retried_honouring_retry_after(cosmos: Factory, monkeypatch):
    backend = cosmos(retry_base_delay_s=0.001)
    await backend.open()
    proxy = backend._containers["jobs"]
    real_create = proxy.create_item
    calls: list[int] = []

    async def throttled_once(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            exc = CosmosHttpResponseError(status_code=429, message="too many requests")
            exc.headers = {"x-ms-retry-after-ms": "5"}
            raise exc
        return await real_create(body, **kwargs)

    monkeypatch.setattr(proxy, "create_item", throttled_once)
    created = await backend.create("jobs", {"id": "a", "productId": "p"})
    assert len(calls) == 2
    assert (await backend.read("jobs", "p", "a")) == created


@pytest.mark.cosmos
async def test_conflicting_write_is_not_retried(cosmos: Factory, monkeypatch):
    backend = cosmos()
    await backend.open()
    created = await backend.create("jobs", {"id": "a", "productId": "p", "v": 1})
    await backend.replace("jobs", {"id": "a", "productId": "p", "v": 2}, etag=etag_of(created))
    proxy = backend._containers["jobs"]
    real_replace = proxy.replace_item
    calls: list[int] = []

    async def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        return await real_replace(*args, **kwargs)

    monkeypatch.setattr(proxy, "replace_item", counting)
    with pytest.raises(PreconditionFailed):
        await backend.replace("jobs", {"id": "a", "productId": "p", "v": 3}, etag=etag_of(created))
    assert len(calls) == 1  # 412 goes straight back to the caller, who re-reads


def _error(status: int, retry_after_ms: str | None = None) -> CosmosHttpResponseError:
    exc = CosmosHttpResponseError(status_code=status, message=f"status {status}")
    if retry_after_ms is not None:
        exc.headers = {"x-ms-retry-after-ms": retry_after_ms}
    return exc


async def test_retry_policy_bounds_and_idempotency():
    backend = CosmosBackend(
        "https://127.0.0.1:1", key=KEY, max_retries=3, retry_base_delay_s=0.0001
    )

    async def run(exc: BaseException, idempotent: bool) -> int:
        calls = 0

        async def fail() -> None:
            nonlocal calls
            calls += 1
            raise exc

        with pytest.raises(type(exc)):
            await backend._retrying("test", idempotent, fail)
        return calls

    assert await run(_error(429), idempotent=False) == 4  # 1 + max_retries
    assert await run(_error(449), idempotent=False) == 4
    assert await run(_error(503), idempotent=True) == 4
    assert await run(_error(408), idempotent=True) == 4
    assert await run(_error(503), idempotent=False) == 1  # the write may have happened
    assert await run(ServiceRequestError("refused"), idempotent=False) == 4  # never sent
    assert await run(ServiceResponseError("reset"), idempotent=False) == 1
    assert await run(ServiceResponseError("reset"), idempotent=True) == 4
    for status in (400, 404, 409, 412, 500):
        assert await run(_error(status), idempotent=True) == 1


def test_retry_delay_is_exponential_jittered_and_honours_retry_after():
    backend = CosmosBackend(
        "https://127.0.0.1:1", key=KEY, retry_base_delay_s=0.1, retry_max_delay_s=1.0
    )
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 1.0)]:
        for _ in range(20):
            assert ceiling / 2 <= backend._delay(attempt, _error(429)) <= ceiling
    assert backend._delay(0, _error(429, retry_after_ms="1500")) >= 1.5


async def test_unreachable_account_is_a_store_error():
    port = free_port()  # nothing listens there
    backend = CosmosBackend(f"https://127.0.0.1:{port}", key=KEY, verify_tls=False, max_retries=0)
    with pytest.raises(StoreError, match=f"cannot reach Cosmos DB at https://127.0.0.1:{port}"):
        await backend.open()
    with pytest.raises(StoreError, match="not open"):
        await backend.read("jobs", "p", "a")


def test_key_or_credential_not_both():
    with pytest.raises(ValueError, match="not both"):
        CosmosBackend("https://x", key=KEY, credential=object())  # type: ignore[arg-type]


async def test_without_key_signs_in_with_entra_id(monkeypatch):
    from azure.identity.aio import DefaultAzureCredential

    credential = _default_credential()
    assert isinstance(credential, DefaultAzureCredential)
    await credential.close()
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)  # not installed
    with pytest.raises(ConfigError, match="azure-identity is not installed"):
        _default_credential()


def test_make_backend_cosmos_from_settings():
    with pytest.raises(ConfigError, match="FLEET_COSMOS_ENDPOINT"):
        make_backend(Settings(store="cosmos"))
    backend = make_backend(
        Settings(
            store="cosmos",
            cosmos_endpoint="https://acct.documents.azure.com:443/",
            cosmos_key=KEY,
            cosmos_database="fleet",
        )
    )
    assert isinstance(backend, CosmosBackend)
    assert (backend.endpoint, backend.database, backend.verify_tls, backend._key) == (
        "https://acct.documents.azure.com:443/",
        "fleet",
        True,
        KEY,
    )
    no_key = make_backend(
        Settings(
            store="cosmos",
            cosmos_endpoint="https://127.0.0.1:8081",
            cosmos_key="",
            cosmos_verify_tls=False,
        )
    )
    assert isinstance(no_key, CosmosBackend)
    assert (no_key._key, no_key.verify_tls) == (None, False)


@pytest.mark.cosmos
async def test_open_store_on_cosmos_from_settings(cosmos_server: CosmosServer, tmp_path):
    from gigafactory.store import open_store

    database = f"test-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        data_dir=tmp_path,
        store="cosmos",
        cosmos_endpoint=cosmos_server.endpoint,
        cosmos_key=KEY,
        cosmos_database=database,
        cosmos_verify_tls=False,
    )
    store = await open_store(settings)
    try:
        assert isinstance(store.backend, CosmosBackend)
        assert await store.list_factories() == []
    finally:
        await store.close()
        await drop_database(cosmos_server, database)
