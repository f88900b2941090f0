"""The fleet store: typed operations on jobs, events, runs, artifacts, logs and factories.

Written once on top of a `DocumentBackend`, so SQLite and Cosmos DB share every rule
(fencing, slot compare-and-set, idempotent ids). Writes that two callers can race on are
compare-and-set loops on one document; nothing relies on multi-document transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from gigafactory.models import (
    ApiKey,
    Artifact,
    EnrollmentToken,
    Event,
    Factory,
    Job,
    LogChunk,
    Priority,
    Run,
    SlotReservation,
    SlotTable,
    Stage,
)
from gigafactory.store.backend import DocumentBackend

__all__ = ["EnrollmentRefused", "FleetStore", "JobPage", "StaleEpoch"]

CAS_ATTEMPTS = 50


class StaleEpoch(Exception):
    """A report carried a lease epoch older than the job's current one (fenced)."""

    def __init__(self, job_id: str, reported: int, current: int) -> None:
        super().__init__(
            f"job {job_id}: report from lease epoch {reported} rejected, current epoch is {current}"
        )
        self.job_id = job_id
        self.reported = reported
        self.current = current


class EnrollmentRefused(Exception):
    """An enrollment token is unknown, expired or already used."""


class JobPage:
    """A page of jobs and the continuation token of the next page."""

    def __init__(self, items: list[Job], continuation: str | None) -> None:
        self.items = items
        self.continuation = continuation


class FleetStore:
    """Typed fleet operations over a document backend."""

    def __init__(self, backend: DocumentBackend) -> None:
        self.backend = backend

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # --- jobs -------------------------------------------------------------------------
    async def create_job(self, job: Job) -> Job:
        """Insert a job projection. Raises AlreadyExists."""
        ...

    async def get_job(self, job_id: str, product_id: str | None = None) -> Job:
        """Point read when the product is known, else a bounded lookup by id. Raises NotFound."""
        ...

    async def list_jobs(
        self,
        *,
        products: Sequence[str] | None = None,
        stage: Stage | None = None,
        priority: Priority | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        continuation: str | None = None,
    ) -> JobPage:
        """Jobs newest first, filtered; `products=None` means every product."""
        ...

    async def update_job(
        self, job_id: str, product_id: str, mutate: Callable[[Job], Job | None]
    ) -> Job:
        """Read-mutate-compare-and-set until it sticks; `mutate` may return None to skip."""
        ...

    async def delete_job(self, job_id: str, product_id: str) -> None:
        """Remove a job projection (used to undo a submit whose workflow did not start)."""
        ...

    # --- events, fencing ----------------------------------------------------------------
    async def append_event(self, event: Event) -> Event:
        """Insert an event; an event with the same id already stored is kept (idempotent)."""
        ...

    async def list_events(
        self, job_id: str, product_id: str, *, limit: int = 500, continuation: str | None = None
    ) -> tuple[list[Event], str | None]:
        """A job's events, oldest first (by `at`, then id)."""
        ...

    async def check_epoch(
        self, job_id: str, product_id: str, epoch: int, *, actor: str, what: str, at: datetime
    ) -> Job:
        """Accept a report from lease `epoch` or fence it.

        Raises:
            StaleEpoch: `epoch` is older than the job's; a `fenced` event naming `actor` and
                `what` was recorded and the job's `fencedReports` counter incremented.
        """
        ...

    # --- runs, artifacts, logs ------------------------------------------------------------
    async def upsert_run(self, run: Run) -> Run: ...
    async def get_run(self, run_id: str, product_id: str) -> Run: ...
    async def list_runs(self, job_id: str, product_id: str) -> list[Run]:
        """A job's runs by epoch."""
        ...

    async def put_artifact(self, artifact: Artifact) -> Artifact: ...
    async def get_artifact(self, job_id: str, product_id: str, artifact_id: str) -> Artifact: ...
    async def list_artifacts(self, job_id: str, product_id: str) -> list[Artifact]: ...
    async def delete_artifact(self, job_id: str, product_id: str, artifact_id: str) -> None: ...

    async def append_log(self, chunk: LogChunk) -> None:
        """Store a log chunk; the same (job, epoch, seq) twice is stored once."""
        ...

    async def read_log(
        self,
        job_id: str,
        product_id: str,
        *,
        epoch: int | None = None,
        after_seq: int = -1,
        limit: int = 1000,
    ) -> list[LogChunk]:
        """Log chunks in (epoch, seq) order; `epoch=None` means every epoch."""
        ...

    # --- factories, slots ------------------------------------------------------------------
    async def create_factory(self, factory: Factory) -> Factory: ...
    async def get_factory(self, factory_id: str) -> Factory: ...
    async def find_factory_by_token_id(self, token_id: str) -> Factory: ...
    async def list_factories(self) -> list[Factory]: ...
    async def update_factory(
        self, factory_id: str, mutate: Callable[[Factory], Factory | None]
    ) -> Factory: ...

    async def get_slots(self, factory_id: str) -> SlotTable:
        """A factory's slot table (empty when none was written yet)."""
        ...

    async def list_slot_tables(self) -> list[SlotTable]: ...

    async def reserve_slot(
        self, factory_id: str, capacity: int, reservation: SlotReservation
    ) -> bool:
        """Take one of `capacity` slots for (job, epoch) by compare-and-set.

        Returns True if the reservation is held afterwards (also when it already was), False
        when the factory is full. Never lets the table exceed `capacity` under concurrency.
        """
        ...

    async def release_slot(self, factory_id: str, job_id: str, epoch: int | None = None) -> bool:
        """Drop the job's reservation (of `epoch`, or any epoch). True if one was dropped."""
        ...

    # --- API keys, enrollment tokens ----------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> ApiKey: ...
    async def get_api_key(self, key_id: str) -> ApiKey: ...
    async def list_api_keys(self) -> list[ApiKey]: ...
    async def update_api_key(self, key_id: str, mutate: Callable[[ApiKey], ApiKey | None]) -> ApiKey: ...

    async def create_enrollment(self, token: EnrollmentToken) -> EnrollmentToken: ...

    async def consume_enrollment(
        self, token_id: str, token_hash: str, factory_id: str, now: datetime
    ) -> EnrollmentToken:
        """Mark a one-time token used, by compare-and-set, so only one factory ever gets it.

        Raises:
            EnrollmentRefused: unknown id, hash mismatch, expired or already used.
        """
        ...
