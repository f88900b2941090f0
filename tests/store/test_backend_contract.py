"""The DocumentBackend contract: CRUD, errors, etag compare-and-set, queries, pagination."""

from __future__ import annotations

import pytest

from gigafactory.store import (
    AlreadyExists,
    DocumentBackend,
    NotFound,
    PreconditionFailed,
    Query,
)
from gigafactory.store.backend import etag_of


async def test_create_read_returns_doc_with_etag(backend: DocumentBackend):
    created = await backend.create("jobs", {"id": "a", "productId": "p", "n": 1, "_etag": "x"})
    assert created["n"] == 1
    assert etag_of(created) != "x"  # input metadata is ignored
    read = await backend.read("jobs", "p", "a")
    assert read == created


async def test_create_twice_raises_already_exists(backend: DocumentBackend):
    await backend.create("jobs", {"id": "a", "productId": "p"})
    with pytest.raises(AlreadyExists):
        await backend.create("jobs", {"id": "a", "productId": "p"})
    # The same id in another partition or container is another document.
    await backend.create("jobs", {"id": "a", "productId": "q"})
    await backend.create("events", {"id": "a", "productId": "p"})


async def test_read_missing_raises_not_found(backend: DocumentBackend):
    with pytest.raises(NotFound):
        await backend.read("jobs", "p", "nope")


async def test_upsert_inserts_then_overwrites_with_new_etag(backend: DocumentBackend):
    first = await backend.upsert("runs", {"id": "r", "productId": "p", "v": 1})
    second = await backend.upsert("runs", {"id": "r", "productId": "p", "v": 2})
    assert etag_of(first) != etag_of(second)
    assert (await backend.read("runs", "p", "r"))["v"] == 2


async def test_replace_compares_etag(backend: DocumentBackend):
    created = await backend.create("jobs", {"id": "a", "productId": "p", "v": 1})
    replaced = await backend.replace(
        "jobs", {"id": "a", "productId": "p", "v": 2}, etag=etag_of(created)
    )
    assert replaced["v"] == 2
    assert etag_of(replaced) != etag_of(created)
    with pytest.raises(PreconditionFailed):
        await backend.replace("jobs", {"id": "a", "productId": "p", "v": 3}, etag=etag_of(created))
    assert (await backend.read("jobs", "p", "a"))["v"] == 2
    with pytest.raises(NotFound):
        await backend.replace("jobs", {"id": "b", "productId": "p"}, etag=etag_of(created))


async def test_delete(backend: DocumentBackend):
    created = await backend.create("jobs", {"id": "a", "productId": "p"})
    await backend.replace("jobs", {"id": "a", "productId": "p", "v": 1}, etag=etag_of(created))
    with pytest.raises(PreconditionFailed):
        await backend.delete("jobs", "p", "a", etag=etag_of(created))
    await backend.delete("jobs", "p", "a")
    with pytest.raises(NotFound):
        await backend.read("jobs", "p", "a")
    with pytest.raises(NotFound):
        await backend.delete("jobs", "p", "a")
    with pytest.raises(NotFound):
        await backend.delete("jobs", "p", "a", etag="whatever")


async def _seed(backend: DocumentBackend) -> None:
    docs = [
        {"id": "j1", "productId": "p", "stage": "queued", "n": 3, "flag": True},
        {"id": "j2", "productId": "p", "stage": "running", "n": 1, "flag": False},
        {"id": "j3", "productId": "p", "stage": "queued", "n": 2, "flag": True},
        {"id": "j4", "productId": "q", "stage": "queued", "n": 2, "flag": None},
        {"id": "j5", "productId": "r", "stage": "failed", "n": 5},
    ]
    for doc in docs:
        await backend.create("jobs", doc)


def _ids(page) -> list[str]:
    return [doc["id"] for doc in page.items]


async def test_query_equality_in_and_partition(backend: DocumentBackend):
    await _seed(backend)
    assert _ids(await backend.query("jobs", "p", Query(where={"stage": "queued"}))) == ["j1", "j3"]
    assert _ids(await backend.query("jobs", None, Query(where={"stage": "queued"}))) == [
        "j1",
        "j3",
        "j4",
    ]
    in_products = Query(where={"productId": ["q", "r"]})
    assert _ids(await backend.query("jobs", None, in_products)) == ["j4", "j5"]
    assert _ids(await backend.query("jobs", None, Query(where={"productId": []}))) == []
    assert _ids(await backend.query("jobs", None, Query(where={"n": 2, "stage": "queued"}))) == [
        "j3",
        "j4",
    ]
    assert _ids(await backend.query("jobs", None, Query(where={"flag": True}))) == ["j1", "j3"]
    assert _ids(await backend.query("jobs", None, Query(where={"id": "j4"}))) == ["j4"]
    assert await backend.count("jobs", None, {"stage": "queued"}) == 3
    assert await backend.count("jobs", "p", {}) == 3
    assert await backend.count("jobs", "p", {"stage": ["running", "failed"]}) == 1


async def test_total_sums_a_field_over_matches(backend: DocumentBackend):
    await _seed(backend)
    assert await backend.total("jobs", None, "n", {}) == 13
    assert await backend.total("jobs", "p", "n", {}) == 6
    assert await backend.total("jobs", None, "n", {"stage": "queued"}) == 7
    assert await backend.total("jobs", "q", "n", {"stage": "running"}) == 0
    await backend.create("jobs", {"id": "j6", "productId": "p", "stage": "queued"})
    assert await backend.total("jobs", "p", "n", {"stage": "queued"}) == 5  # no n: counts 0
    await backend.create("jobs", {"id": "j7", "productId": "p", "n": 0.25})
    assert await backend.total("jobs", "p", "n", {}) == 6.25


async def test_query_order_and_greater_than(backend: DocumentBackend):
    await _seed(backend)
    by_n = await backend.query("jobs", None, Query(order_by="n"))
    assert _ids(by_n) == ["j2", "j3", "j4", "j1", "j5"]  # ties (n=2) broken by id
    desc = await backend.query("jobs", None, Query(order_by="n", descending=True))
    assert _ids(desc) == ["j5", "j1", "j4", "j3", "j2"]
    above = await backend.query("jobs", None, Query(order_by="n", greater_than=("n", 2)))
    assert _ids(above) == ["j1", "j5"]


async def test_query_contains_a_substring_of_a_string_field(backend: DocumentBackend):
    docs = [
        {"id": "a", "productId": "p", "t": 1, "s": "fix the login page"},
        {"id": "b", "productId": "p", "t": 2, "s": "Login retries"},
        {"id": "c", "productId": "q", "t": 3, "s": "a login: 100% done_"},
        {"id": "d", "productId": "q", "t": 4, "s": 42},
        {"id": "e", "productId": "q", "t": 5},
        {"id": "f", "productId": "p", "t": 6, "s": None},
    ]
    for doc in docs:
        await backend.create("jobs", doc)

    async def ids(text: str, **fields: object) -> list[str]:
        query = Query(contains=("s", text), order_by="t", **fields)  # type: ignore[arg-type]
        return _ids(await backend.query("jobs", None, query))

    assert await ids("login") == ["a", "c"]  # case-sensitive: "Login" is another text
    assert await ids("Login") == ["b"]
    assert await ids("4") == []  # a number is not a string
    # LIKE and regex characters are plain text.
    assert await ids("100%") == ["c"]
    assert await ids("_") == ["c"]
    assert await ids("%") == ["c"]
    assert await ids("login", where={"productId": "p"}) == ["a"]
    assert await ids("login", descending=True) == ["c", "a"]
    in_p = await backend.query("jobs", "p", Query(contains=("s", "o")))
    assert _ids(in_p) == ["a", "b"]
    by_id = await backend.query("jobs", None, Query(contains=("id", "c")))
    assert _ids(by_id) == ["c"]
    # Pages of a filtered query cover each match once.
    first = await backend.query("jobs", None, Query(contains=("s", "o"), order_by="t", limit=1))
    second = await backend.query(
        "jobs",
        None,
        Query(contains=("s", "o"), order_by="t", limit=2, continuation=first.continuation),
    )
    assert _ids(first) + _ids(second) == ["a", "b", "c"]
    assert second.continuation is None


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("page_size", [1, 2, 3, 7])
async def test_query_pages_cover_everything_once_in_order(
    backend: DocumentBackend, descending: bool, page_size: int
):
    # Duplicate sort keys and documents without the sort field make the paging boundaries hard.
    for i in range(7):
        doc = {"id": f"d{i}", "productId": "p", "k": i // 3}
        if i == 6:
            del doc["k"]
        await backend.create("events", doc)
    await backend.create("events", {"id": "d0", "productId": "other", "k": 0})
    query = Query(order_by="k", descending=descending)
    expected = _ids(await backend.query("events", None, query))
    assert len(expected) == 8
    seen: list[str] = []
    pages = 0
    continuation = None
    while True:
        page = await backend.query(
            "events",
            None,
            Query(order_by="k", descending=descending, limit=page_size, continuation=continuation),
        )
        pages += 1
        assert len(page.items) <= page_size
        seen.extend(_ids(page))
        continuation = page.continuation
        if continuation is None:
            break
    assert seen == expected
    assert pages == -(-8 // page_size)


async def test_query_continuation_survives_inserts(backend: DocumentBackend):
    for i in range(4):
        await backend.create("jobs", {"id": f"j{i}", "productId": "p", "t": i})
    first = await backend.query("jobs", "p", Query(order_by="t", descending=True, limit=2))
    assert _ids(first) == ["j3", "j2"]
    await backend.create("jobs", {"id": "j9", "productId": "p", "t": 9})  # newer than page 1
    rest = await backend.query(
        "jobs", "p", Query(order_by="t", descending=True, limit=5, continuation=first.continuation)
    )
    assert _ids(rest) == ["j1", "j0"]
    assert rest.continuation is None
