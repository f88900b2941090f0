"""Blob storage for artifact bytes: a small protocol and a local-directory implementation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from gigafactory.store.backend import NotFound

__all__ = ["BlobNotFound", "BlobStore", "LocalBlobStore"]


class BlobNotFound(NotFound):
    """No blob under that key."""


class BlobStore(Protocol):
    """Bytes under slash-separated keys such as "<productId>/<jobId>/<artifactId>"."""

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there, all or nothing."""

    async def get(self, key: str) -> bytes:
        """The bytes under `key`. Raises BlobNotFound."""

    async def delete(self, key: str) -> None:
        """Remove the blob under `key`; a missing blob is not an error."""


class LocalBlobStore:
    """Blobs as files under a root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        """The file of `key`, refusing anything that could escape the root."""
        parts = key.split("/")
        if not key or any(
            p in ("", ".", "..") or "\\" in p or "\0" in p or p.startswith(".tmp-") for p in parts
        ):
            raise ValueError(f"invalid blob key {key!r}: use non-empty '/'-separated names")
        return self.root.joinpath(*parts)

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically (temp file, then rename over the old one)."""
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        """The bytes under `key`. Raises BlobNotFound."""
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key!r}") from None

    async def delete(self, key: str) -> None:
        """Remove the blob under `key`; a missing blob is not an error."""
        path = self._path(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)
