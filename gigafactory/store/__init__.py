"""The store: job projections, events, runs, artifacts, logs and the fleet registry.

`open_store` builds the configured document backend (SQLite, or Cosmos DB from
`gigafactory.store.cosmos`) and the typed `FleetStore` over it; `open_blobs` the blob store
for artifact bytes.
"""

from __future__ import annotations

from gigafactory.settings import Settings
from gigafactory.store.backend import (
    CONTAINERS,
    AlreadyExists,
    DocumentBackend,
    NotFound,
    Page,
    PreconditionFailed,
    Query,
    StoreError,
)
from gigafactory.store.blobs import BlobNotFound, BlobStore, LocalBlobStore
from gigafactory.store.fleet_store import EnrollmentRefused, FleetStore, JobPage
from gigafactory.store.sqlite import SchemaVersionError, SQLiteBackend

__all__ = [
    "AlreadyExists",
    "BlobNotFound",
    "BlobStore",
    "CONTAINERS",
    "ConfigError",
    "DocumentBackend",
    "EnrollmentRefused",
    "FleetStore",
    "JobPage",
    "LocalBlobStore",
    "NotFound",
    "Page",
    "PreconditionFailed",
    "Query",
    "SQLiteBackend",
    "SchemaVersionError",
    "StoreError",
    "open_blobs",
    "open_store",
]


class ConfigError(StoreError):
    """The store settings name a backend that is unavailable or incomplete."""


def make_backend(settings: Settings) -> DocumentBackend:
    """The document backend `settings` select, not yet opened.

    Raises:
        ConfigError: the selected backend is not available.
    """
    if settings.store == "cosmos":
        if not settings.cosmos_endpoint:
            raise ConfigError(
                "FLEET_STORE=cosmos needs FLEET_COSMOS_ENDPOINT (the account URL, e.g. "
                "https://myaccount.documents.azure.com:443/)"
            )
        # Imported here: the Azure SDK is slow to import and only this backend needs it.
        from gigafactory.store.cosmos import CosmosBackend

        return CosmosBackend(
            settings.cosmos_endpoint,
            key=settings.cosmos_key or None,  # no key: Microsoft Entra ID (azure-identity)
            database=settings.cosmos_database,
            verify_tls=settings.cosmos_verify_tls,
        )
    return SQLiteBackend(settings.resolved_sqlite_path)


async def open_store(settings: Settings) -> FleetStore:
    """Build the configured backend and open a `FleetStore` on it.

    Raises:
        ConfigError: the selected backend is not available or incompletely configured.
        SchemaVersionError: the SQLite file was written by a newer Gigafactory.
        StoreError: the Cosmos DB database or its containers cannot be opened or created.
    """
    store = FleetStore(make_backend(settings))
    await store.open()
    return store


def open_blobs(settings: Settings) -> LocalBlobStore:
    """The blob store for artifact bytes, under the data directory."""
    return LocalBlobStore(settings.blob_dir)
