"""Local blobs and building the store from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigafactory.settings import Settings
from gigafactory.store import (
    BlobNotFound,
    ConfigError,
    LocalBlobStore,
    NotFound,
    SQLiteBackend,
    open_blobs,
    open_store,
)


async def test_blob_roundtrip(tmp_path: Path):
    blobs = LocalBlobStore(tmp_path)
    await blobs.put("acme/j1/a1", b"one")
    await blobs.put("acme/j1/a1", b"two")  # overwrite
    assert await blobs.get("acme/j1/a1") == b"two"
    assert [p.name for p in (tmp_path / "acme" / "j1").iterdir()] == ["a1"]  # no temp files
    await blobs.delete("acme/j1/a1")
    await blobs.delete("acme/j1/a1")  # missing is fine
    with pytest.raises(BlobNotFound):
        await blobs.get("acme/j1/a1")
    assert issubclass(BlobNotFound, NotFound)


@pytest.mark.parametrize(
    "key", ["", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\..\\b", "a/.tmp-x"]
)
async def test_blob_keys_cannot_escape(tmp_path: Path, key: str):
    blobs = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.put(key, b"x")
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.get(key)


async def test_open_store_sqlite(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    store = await open_store(settings)
    try:
        assert isinstance(store.backend, SQLiteBackend)
        assert store.backend.path == tmp_path / "data" / "fleet.sqlite3"
        assert store.backend.path.exists()
    finally:
        await store.close()
    assert open_blobs(settings).root == tmp_path / "data" / "blobs"


async def test_open_store_cosmos_needs_endpoint(tmp_path: Path):
    with pytest.raises(ConfigError, match="FLEET_COSMOS_ENDPOINT"):
        await open_store(Settings(data_dir=tmp_path, store="cosmos"))
