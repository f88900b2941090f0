"""The fleet store: typed operations on jobs, events, runs, artifacts, logs and factories.

Written once on top of a `DocumentBackend`, so SQLite and Cosmos DB share every rule
(fencing, slot compare-and-set, idempotent ids). Writes that two callers can race on are
compare-and-set loops on one document; nothing relies on multi-document transactions.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from gigafactory.models import (
    FLEET_PARTITION,
    PRODUCT_RECORD_ID,
    ApiKey,
    Artifact,
    AuditEvent,
    CamelModel,
    EnrollmentToken,
    Event,
    Factory,
    Job,
    LogChunk,
    Priority,
    ProductRecord,
    QueueEntry,
    QueueLane,
    RoutingWeights,
    Run,
    ShadowDecision,
    SlotReservation,
    SlotTable,
    SpendRecord,
    Stage,
    StoredBudget,
    UiSession,
    WaitReason,
)
from gigafactory.store.backend import (
    AlreadyExists,
    DocumentBackend,
    NotFound,
    PreconditionFailed,
    Query,
    etag_of,
    without_meta,
)

__all__ = ["AuditPage", "EnrollmentRefused", "FleetStore", "JobPage"]

log = logging.getLogger(__name__)

CAS_ATTEMPTS = 50

M = TypeVar("M", bound=CamelModel)

# Copies of nested job fields kept at the top level of job documents, so they can be
# filtered on (backend queries only see top-level fields). Stripped again on read.
# `titleSearch` is the job's headline casefolded: a title search ignores case on every
# backend (jobs written before it existed are found again once they are next written).
_JOB_DENORMALISED = ("priority", "engine", "titleSearch")


class EnrollmentRefused(Exception):
    """An enrollment token is unknown, expired or already used.

    `token_known`: the token was issued (it is used or expired), as opposed to one nobody
    issued, which is no more than an unauthenticated call.
    """

    def __init__(self, message: str, *, token_known: bool = False) -> None:
        super().__init__(message)
        self.token_known = token_known


class JobPage:
    """A page of jobs and the continuation token of the next page."""

    def __init__(self, items: list[Job], continuation: str | None) -> None:
        self.items = items
        self.continuation = continuation


class AuditPage:
    """A page of audit events and the continuation token of the next page."""

    def __init__(self, items: list[AuditEvent], continuation: str | None) -> None:
        self.items = items
        self.continuation = continuation


def _utc_text(value: datetime) -> str:
    """A fixed-width UTC timestamp, so timestamps sort as text (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _doc(model: CamelModel) -> dict[str, Any]:
    """The stored document of a model.

    Pydantic drops zero microseconds and keeps UTC offsets, which breaks ordering by
    timestamp text; top-level timestamps are therefore written in one fixed-width form.
    """
    doc = model.wire()
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, datetime):
            doc[info.alias or name] = _utc_text(value)
    return doc


def _job_doc(job: Job) -> dict[str, Any]:
    doc = _doc(job)
    doc["priority"] = job.spec.priority.value
    doc["engine"] = job.spec.engine
    doc["titleSearch"] = job.spec.headline().casefold()
    return doc


def _from(cls: type[M], doc: Mapping[str, Any]) -> M:
    """Parse a stored document; models with an `etag` field get the document's etag."""
    data = without_meta(doc)
    if "etag" in cls.model_fields:
        data["etag"] = etag_of(doc)
    return cls.model_validate(data)


def _job_from(doc: Mapping[str, Any]) -> Job:
    return _from(Job, {k: v for k, v in doc.items() if k not in _JOB_DENORMALISED})


async def _backoff(attempt: int) -> None:
    # A tiny random pause spreads out racers that lost the same compare-and-set.
    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))


def _slots_id(factory_id: str) -> str:
    return f"slots-{factory_id}"


def _log_id(job_id: str, epoch: int, seq: int) -> str:
    # Zero-padded seq: ids of one (job, epoch) sort like seq, which read_log relies on.
    return f"{job_id}.{epoch}.{seq:08d}"


class FleetStore:
    """Typed fleet operations over a document backend."""

    def __init__(self, backend: DocumentBackend) -> None:
        self.backend = backend

    async def open(self) -> None:
        """Open the backend (creating or migrating what it needs)."""
        await self.backend.open()

    async def close(self) -> None:
        """Close the backend."""
        await self.backend.close()

    async def ping(self) -> None:
        """One cheap read, to tell whether the backend answers (raises when it does not)."""
        await self.backend.count("keys", FLEET_PARTITION, {})

    # --- helpers ------------------------------------------------------------------------------
    async def _query_all(
        self,
        container: str,
        product_id: str | None,
        where: Mapping[str, Any],
        order_by: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every matching document, page by page (for small, bounded sets)."""
        docs: list[dict[str, Any]] = []
        continuation: str | None = None
        while True:
            page = await self.backend.query(
                container,
                product_id,
                Query(where=where, order_by=order_by, limit=500, continuation=continuation),
            )
            docs.extend(page.items)
            continuation = page.continuation
            if continuation is None:
                return docs

    async def _update(
        self,
        container: str,
        product_id: str,
        doc_id: str,
        parse: Callable[[Mapping[str, Any]], M],
        dump: Callable[[M], dict[str, Any]],
        mutate: Callable[[M], M | None],
        *,
        seen: tuple[M, str] | None = None,
    ) -> M:
        """Read, mutate a copy, replace by etag; retry while someone else wrote first.

        `seen`: the document as the caller just read it, with its etag, to try first
        without reading it again (a stale copy only costs one failed replace).
        """
        for attempt in range(CAS_ATTEMPTS):
            if seen is not None:
                current, etag = seen
                seen = None
            else:
                doc = await self.backend.read(container, product_id, doc_id)
                current, etag = parse(doc), etag_of(doc)
            new = mutate(current.model_copy(deep=True))
            if new is None:
                return current
            new_doc = dump(new)
            if new_doc.get("id") != doc_id or new_doc.get("productId") != product_id:
                raise ValueError(f"{container}/{doc_id}: mutate must not change id or productId")
            try:
                return parse(await self.backend.replace(container, new_doc, etag=etag))
            except PreconditionFailed:
                await _backoff(attempt)
        raise PreconditionFailed(
            f"{container}/{product_id}/{doc_id}: still contended after {CAS_ATTEMPTS} attempts"
        )

    # --- jobs ---------------------------------------------------------------------------------
    async def create_job(self, job: Job) -> Job:
        """Insert a job projection. Raises AlreadyExists."""
        return _job_from(await self.backend.create("jobs", _job_doc(job)))

    async def get_job(self, job_id: str, product_id: str | None = None) -> Job:
        """Point read when the product is known, else a bounded lookup by id. Raises NotFound."""
        if product_id is not None:
            return _job_from(await self.backend.read("jobs", product_id, job_id))
        page = await self.backend.query("jobs", None, Query(where={"id": job_id}, limit=1))
        if not page.items:
            raise NotFound(f"job {job_id} not found")
        return _job_from(page.items[0])

    async def list_jobs(
        self,
        *,
        products: Sequence[str] | None = None,
        stage: Stage | None = None,
        priority: Priority | None = None,
        parent_id: str | None = None,
        engine: str | None = None,
        factory_id: str | None = None,
        title: str | None = None,
        limit: int = 50,
        continuation: str | None = None,
    ) -> JobPage:
        """Jobs newest first, filtered; `products=None` means every product.

        `factory_id` is the factory of the job's current (or last) attempt; `title` is a
        substring of its headline (title, else the prompt's first line), case ignored.
        """
        where: dict[str, Any] = {}
        if products is not None:
            where["productId"] = list(products)
        if stage is not None:
            where["stage"] = stage.value
        if priority is not None:
            where["priority"] = priority.value
        if parent_id is not None:
            where["parentId"] = parent_id
        if engine is not None:
            where["engine"] = engine
        if factory_id is not None:
            where["factoryId"] = factory_id
        page = await self.backend.query(
            "jobs",
            None,
            Query(
                where=where,
                order_by="createdAt",
                descending=True,
                limit=limit,
                continuation=continuation,
                contains=("titleSearch", title.casefold()) if title else None,
            ),
        )
        return JobPage([_job_from(doc) for doc in page.items], page.continuation)

    async def update_job(
        self,
        job_id: str,
        product_id: str,
        mutate: Callable[[Job], Job | None],
        *,
        seen: Job | None = None,
    ) -> Job:
        """Read-mutate-compare-and-set until it sticks; `mutate` may return None to skip.
        `seen`: the job as just read (with its etag), tried first without a second read."""
        first = (seen, seen.etag) if seen is not None and seen.etag else None
        return await self._update(
            "jobs", product_id, job_id, _job_from, _job_doc, mutate, seen=first
        )

    async def delete_job(self, job_id: str, product_id: str) -> None:
        """Remove a job projection (used to undo a submit whose workflow did not start)."""
        await self.backend.delete("jobs", product_id, job_id)

    # --- events, fencing ----------------------------------------------------------------------
    async def append_event(self, event: Event) -> Event:
        """Insert an event; an event with the same id already stored is kept (idempotent)."""
        try:
            return _from(Event, await self.backend.create("events", _doc(event)))
        except AlreadyExists:
            return _from(Event, await self.backend.read("events", event.product_id, event.id))

    async def delete_event(self, product_id: str, event_id: str) -> None:
        """Remove one event; only to undo a submit whose workflow never started (events are
        append-only for everything else). Raises NotFound."""
        await self.backend.delete("events", product_id, event_id)

    async def list_events(
        self,
        job_id: str,
        product_id: str,
        *,
        limit: int = 500,
        continuation: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[Event], str | None]:
        """A job's events, oldest first (by `at`, then id), or newest first."""
        page = await self.backend.query(
            "events",
            product_id,
            Query(
                where={"jobId": job_id},
                order_by="at",
                descending=newest_first,
                limit=limit,
                continuation=continuation,
            ),
        )
        return [_from(Event, doc) for doc in page.items], page.continuation

    # --- runs, artifacts, logs ----------------------------------------------------------------
    async def upsert_run(self, run: Run) -> Run:
        """Write a run (one writer per run: the job's workflow)."""
        return _from(Run, await self.backend.upsert("runs", _doc(run)))

    async def get_run(self, run_id: str, product_id: str) -> Run:
        """Point read of a run ("<jobId>.<epoch>"). Raises NotFound."""
        return _from(Run, await self.backend.read("runs", product_id, run_id))

    async def list_runs(self, job_id: str, product_id: str) -> list[Run]:
        """A job's runs by epoch."""
        docs = await self._query_all("runs", product_id, {"jobId": job_id}, order_by="epoch")
        return [_from(Run, doc) for doc in docs]

    async def put_artifact(self, artifact: Artifact) -> Artifact:
        """Write an artifact's metadata (insert or overwrite)."""
        return _from(Artifact, await self.backend.upsert("artifacts", _doc(artifact)))

    async def get_artifact(self, job_id: str, product_id: str, artifact_id: str) -> Artifact:
        """A job's artifact. Raises NotFound, also when the artifact belongs to another job."""
        artifact = _from(Artifact, await self.backend.read("artifacts", product_id, artifact_id))
        if artifact.job_id != job_id:
            raise NotFound(f"job {job_id} has no artifact {artifact_id}")
        return artifact

    async def list_artifacts(self, job_id: str, product_id: str) -> list[Artifact]:
        """A job's artifacts, oldest first."""
        docs = await self._query_all(
            "artifacts", product_id, {"jobId": job_id}, order_by="createdAt"
        )
        return [_from(Artifact, doc) for doc in docs]

    async def delete_artifact(self, job_id: str, product_id: str, artifact_id: str) -> None:
        """Delete a job's artifact metadata. Raises NotFound."""
        await self.get_artifact(job_id, product_id, artifact_id)
        await self.backend.delete("artifacts", product_id, artifact_id)

    async def append_log(self, chunk: LogChunk) -> None:
        """Store a log chunk; the same (job, epoch, seq) twice is stored once."""
        chunk_id = _log_id(chunk.job_id, chunk.epoch, chunk.seq)
        try:
            await self.backend.create("logs", _doc(chunk.model_copy(update={"id": chunk_id})))
        except AlreadyExists:
            pass

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
        where: dict[str, Any] = {"jobId": job_id}
        if epoch is not None:
            where["epoch"] = epoch
        page = await self.backend.query(
            "logs",
            product_id,
            Query(
                where=where,
                # Ties on epoch are broken by id, which orders by seq (see _log_id).
                order_by="seq" if epoch is not None else "epoch",
                limit=limit,
                greater_than=("seq", after_seq) if after_seq >= 0 else None,
            ),
        )
        return [_from(LogChunk, doc) for doc in page.items]

    # --- factories, slots ---------------------------------------------------------------------
    async def create_factory(self, factory: Factory) -> Factory:
        """Register a factory. Raises AlreadyExists."""
        doc = _doc(factory.model_copy(update={"product_id": FLEET_PARTITION}))
        return _from(Factory, await self.backend.create("factories", doc))

    async def get_factory(self, factory_id: str) -> Factory:
        """A factory by id. Raises NotFound."""
        return _from(Factory, await self.backend.read("factories", FLEET_PARTITION, factory_id))

    async def find_factory_by_token_id(self, token_id: str) -> Factory:
        """The factory holding the token `token_id`. Raises NotFound."""
        page = await self.backend.query(
            "factories", FLEET_PARTITION, Query(where={"tokenId": token_id}, limit=1)
        )
        if not page.items:
            raise NotFound(f"no factory holds token {token_id}")
        return _from(Factory, page.items[0])

    async def list_factories(self) -> list[Factory]:
        """Every factory, by id."""
        return [_from(Factory, d) for d in await self._query_all("factories", FLEET_PARTITION, {})]

    async def update_factory(
        self, factory_id: str, mutate: Callable[[Factory], Factory | None]
    ) -> Factory:
        """Read-mutate-compare-and-set a factory; `mutate` may return None to skip."""
        return await self._update(
            "factories",
            FLEET_PARTITION,
            factory_id,
            lambda doc: _from(Factory, doc),
            _doc,
            mutate,
        )

    async def get_slots(self, factory_id: str) -> SlotTable:
        """A factory's slot table (empty when none was written yet)."""
        try:
            doc = await self.backend.read("slots", FLEET_PARTITION, _slots_id(factory_id))
        except NotFound:
            return SlotTable(id=_slots_id(factory_id), factory_id=factory_id)
        return _from(SlotTable, doc)

    async def list_slot_tables(self) -> list[SlotTable]:
        """Every slot table written so far."""
        return [_from(SlotTable, d) for d in await self._query_all("slots", FLEET_PARTITION, {})]

    async def reserve_slot(
        self,
        factory_id: str,
        capacity: int,
        reservation: SlotReservation,
        *,
        evicting: Sequence[str] = (),
    ) -> bool:
        """Take one of `capacity` slots for (job, epoch) by compare-and-set.

        Returns True if the reservation is held afterwards (also when it already was), False
        when the factory is full. Never lets the table exceed `capacity` under concurrency,
        except by preemption: with `evicting` (job ids holding slots here, none chosen by
        another preemptor yet) the reservation is added over capacity and those jobs are
        marked evicted; their slots come back as they stop, so the factory returns to
        `capacity` and nobody else takes the preemptor's slot meanwhile.
        """
        for attempt in range(CAS_ATTEMPTS):
            try:
                doc = await self.backend.read("slots", FLEET_PARTITION, _slots_id(factory_id))
            except NotFound:
                if capacity < 1:
                    return False
                table = SlotTable(
                    id=_slots_id(factory_id), factory_id=factory_id, reservations=[reservation]
                )
                try:
                    await self.backend.create("slots", _doc(table))
                    return True
                except AlreadyExists:  # another router created it first: re-read
                    await _backoff(attempt)
                    continue
            table = _from(SlotTable, doc)
            if any(
                r.job_id == reservation.job_id and r.epoch == reservation.epoch
                for r in table.reservations
            ):
                return True
            if evicting:
                victims = [r for r in table.reservations if r.job_id in evicting]
                if len(victims) != len(evicting) or any(r.evicted_by for r in victims):
                    return False  # gone meanwhile, or another preemptor chose them first
                for r in victims:
                    r.evicted_by = reservation.job_id
            elif len(table.reservations) >= capacity:
                return False
            table.reservations.append(reservation)
            try:
                await self.backend.replace("slots", _doc(table), etag=etag_of(doc))
                return True
            except (PreconditionFailed, NotFound):
                await _backoff(attempt)
        raise PreconditionFailed(
            f"slots of factory {factory_id}: still contended after {CAS_ATTEMPTS} attempts"
        )

    async def release_slot(self, factory_id: str, job_id: str, epoch: int | None = None) -> bool:
        """Drop the job's reservation (of `epoch`, or any epoch). True if one was dropped."""
        for attempt in range(CAS_ATTEMPTS):
            try:
                doc = await self.backend.read("slots", FLEET_PARTITION, _slots_id(factory_id))
            except NotFound:
                return False
            table = _from(SlotTable, doc)
            kept = [
                r
                for r in table.reservations
                if not (r.job_id == job_id and (epoch is None or r.epoch == epoch))
            ]
            if len(kept) == len(table.reservations):
                return False
            table.reservations = kept
            try:
                await self.backend.replace("slots", _doc(table), etag=etag_of(doc))
                return True
            except PreconditionFailed:
                await _backoff(attempt)
            except NotFound:
                return False
        raise PreconditionFailed(
            f"slots of factory {factory_id}: still contended after {CAS_ATTEMPTS} attempts"
        )

    # --- API keys, enrollment tokens ----------------------------------------------------------
    # --- budgets and the spend ledger -----------------------------------------------------------
    async def get_budget(self, product_id: str) -> StoredBudget | None:
        """The product's budget settings, None when it has none."""
        try:
            return _from(StoredBudget, await self.backend.read("budgets", product_id, "budget"))
        except NotFound:
            return None

    async def put_budget(self, budget: StoredBudget) -> StoredBudget:
        """Replace the product's budget settings (the last operator's PUT wins)."""
        return _from(StoredBudget, await self.backend.upsert("budgets", _doc(budget)))

    async def record_spend(self, record: SpendRecord) -> bool:
        """Write one run's spend once: False when the run is already in the ledger."""
        try:
            await self.backend.create("ledger", _doc(record))
        except AlreadyExists:
            return False
        return True

    async def list_spend(
        self, product_id: str, *, since: datetime | None = None, limit: int = 1000
    ) -> list[SpendRecord]:
        """The product's ledger, newest first (from `since`, when given)."""
        page = await self.backend.query(
            "ledger",
            product_id,
            Query(
                order_by="at",
                descending=True,
                limit=limit,
                greater_than=("at", _utc_text(since)) if since else None,
            ),
        )
        return [_from(SpendRecord, d) for d in page.items]

    # --- the queue of jobs waiting for a slot ---------------------------------------------------
    async def enqueue(self, entry: QueueEntry, lane: QueueLane) -> QueueEntry:
        """Put a job in its lane (again: a job enqueued twice keeps one entry, the latest).

        The entry is written before its lane, so a lane that exists has been seen by every
        entry written before it (`prune_lane` relies on that).
        """
        stored = _from(QueueEntry, await self.backend.upsert("queue", _doc(entry)))
        await self.backend.upsert("lanes", _doc(lane))
        return stored

    async def queue_lanes(self) -> list[QueueLane]:
        """Every lane of the queue (an empty one until it is pruned)."""
        docs = await self._query_all("lanes", FLEET_PARTITION, {})
        return [_from(QueueLane, d) for d in docs]

    async def lane_heads(self, lane_id: str, limit: int = 1) -> list[QueueEntry]:
        """The longest-waiting entries of a lane."""
        page = await self.backend.query(
            "queue",
            FLEET_PARTITION,
            Query(where={"lane": lane_id}, order_by="waitingSince", limit=limit),
        )
        return [_from(QueueEntry, d) for d in page.items]

    async def queued(self, entry_id: str) -> QueueEntry | None:
        """A job's entry in the queue (by its workflow id), None when it is not queued."""
        try:
            return _from(QueueEntry, await self.backend.read("queue", FLEET_PARTITION, entry_id))
        except NotFound:
            return None

    async def claim(self, entry: QueueEntry) -> bool:
        """Take an entry out of the queue if it is still the one read (compare-and-set on
        its etag): of several dispatchers racing for one job, exactly one gets it."""
        if entry.etag is None:
            raise ValueError(f"queue entry {entry.id} has no etag: claim one that was read")
        try:
            await self.backend.delete("queue", FLEET_PARTITION, entry.id, etag=entry.etag)
        except (NotFound, PreconditionFailed):
            return False
        return True

    async def dequeue(self, entry_id: str) -> bool:
        """Take a job out of the queue whatever its entry says (it stopped waiting)."""
        try:
            await self.backend.delete("queue", FLEET_PARTITION, entry_id)
        except NotFound:
            return False
        return True

    async def queue_depth(self) -> int:
        """How many jobs wait for a slot."""
        return await self.backend.count("queue", FLEET_PARTITION, {})

    async def queue_entries(self, limit: int = 1000) -> list[QueueEntry]:
        """The queue's entries, oldest first (for reconciliation and views)."""
        page = await self.backend.query(
            "queue", FLEET_PARTITION, Query(order_by="waitingSince", limit=limit)
        )
        return [_from(QueueEntry, d) for d in page.items]

    async def prune_lane(self, lane: QueueLane) -> bool:
        """Delete a lane with no entries, unless it changed since read (an enqueue rewrote it).

        Returns:
            True if the lane was deleted.
        """
        if await self.lane_heads(lane.id) or lane.etag is None:
            return False
        try:
            await self.backend.delete("lanes", FLEET_PARTITION, lane.id, etag=lane.etag)
        except (NotFound, PreconditionFailed):
            return False
        return True

    # --- figures for metrics -------------------------------------------------------------------
    async def count_jobs(
        self,
        *,
        stage: Stage | None = None,
        wait_reason: WaitReason | None = None,
        product_id: str | None = None,
    ) -> int:
        """How many jobs are in `stage` (waiting for `wait_reason`), in one product or all."""
        where: dict[str, Any] = {}
        if stage is not None:
            where["stage"] = stage.value
        if wait_reason is not None:
            where["waitReason"] = wait_reason.value
        return await self.backend.count("jobs", product_id, where)

    async def count_events(self, kind: str, product_id: str) -> int:
        """How many events of `kind` a product's jobs have (fenced, preempted...)."""
        return await self.backend.count("events", product_id, {"kind": kind})

    async def spent(self, product_id: str) -> float:
        """Everything the product's ledger holds, in USD (each run counted once)."""
        return await self.backend.total("ledger", product_id, "usd", {})

    # --- products -----------------------------------------------------------------------------
    async def touch_product(self, product_id: str, now: datetime) -> None:
        """Remember that `product_id` exists (idempotent), so products can be listed."""
        try:
            await self.backend.create(
                "settings", _doc(ProductRecord(product_id=product_id, created_at=now))
            )
        except AlreadyExists:
            pass

    async def list_products(self) -> list[str]:
        """Every product a job was ever submitted to, by id."""
        docs = await self._query_all("settings", None, {"id": PRODUCT_RECORD_ID})
        return sorted({str(d["productId"]) for d in docs})

    # --- shadow routing decisions ---------------------------------------------------------------
    async def record_shadow(self, decision: ShadowDecision) -> None:
        """Record what the shadow weights would have picked (once per decision id)."""
        try:
            await self.backend.create("decisions", _doc(decision))
        except AlreadyExists:
            pass

    async def list_shadow(
        self, product_id: str, *, since: datetime, limit: int = 10_000
    ) -> list[ShadowDecision]:
        """The product's shadow decisions since `since`, newest first."""
        page = await self.backend.query(
            "decisions",
            product_id,
            Query(
                order_by="at", descending=True, limit=limit, greater_than=("at", _utc_text(since))
            ),
        )
        return [_from(ShadowDecision, d) for d in page.items]

    # --- routing weights ------------------------------------------------------------------------
    async def get_routing_weights(self, product_id: str) -> RoutingWeights | None:
        """The product's routing weight overrides, None when it has none."""
        try:
            doc = await self.backend.read("settings", product_id, "routing-weights")
        except NotFound:
            return None
        return _from(RoutingWeights, doc)

    async def put_routing_weights(self, weights: RoutingWeights) -> RoutingWeights:
        """Replace the product's overrides (one document; the last operator's PUT wins)."""
        return _from(RoutingWeights, await self.backend.upsert("settings", _doc(weights)))

    # --- web sessions ---------------------------------------------------------------------------
    async def create_session(self, session: UiSession) -> UiSession:
        """Store a web session (named by its secret's hash). Raises AlreadyExists."""
        doc = _doc(session.model_copy(update={"product_id": FLEET_PARTITION}))
        return _from(UiSession, await self.backend.create("sessions", doc))

    async def get_session(self, session_id: str) -> UiSession:
        """A web session by id. Raises NotFound."""
        return _from(UiSession, await self.backend.read("sessions", FLEET_PARTITION, session_id))

    async def delete_session(self, session_id: str) -> bool:
        """Remove a web session; False when there was none."""
        try:
            await self.backend.delete("sessions", FLEET_PARTITION, session_id)
        except NotFound:
            return False
        return True

    async def list_sessions(self, key_id: str) -> list[UiSession]:
        """The web sessions of one API key."""
        docs = await self._query_all("sessions", FLEET_PARTITION, {"keyId": key_id})
        return [_from(UiSession, d) for d in docs]

    # --- the audit log --------------------------------------------------------------------------
    async def record_audit(self, event: AuditEvent) -> AuditEvent:
        """Append an audit event (append-only: never updated or deleted by the store)."""
        return _from(AuditEvent, await self.backend.create("audit", _doc(event)))

    async def list_audit(
        self,
        *,
        partitions: Sequence[str] | None = None,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        continuation: str | None = None,
    ) -> AuditPage:
        """Audit events newest first, filtered; `partitions=None` means every partition
        (products and `_fleet`)."""
        where: dict[str, Any] = {}
        if partitions is not None:
            where["productId"] = list(partitions)
        for name, value in (("action", action), ("actor", actor), ("target", target)):
            if value is not None:
                where[name] = value
        page = await self.backend.query(
            "audit",
            None,
            Query(
                where=where,
                order_by="at",
                descending=True,
                limit=limit,
                continuation=continuation,
                greater_than=("at", _utc_text(since)) if since else None,
            ),
        )
        return AuditPage([_from(AuditEvent, d) for d in page.items], page.continuation)

    async def create_api_key(self, key: ApiKey) -> ApiKey:
        """Store an API key (hashed). Raises AlreadyExists."""
        doc = _doc(key.model_copy(update={"product_id": FLEET_PARTITION}))
        return _from(ApiKey, await self.backend.create("keys", doc))

    async def get_api_key(self, key_id: str) -> ApiKey:
        """An API key by id. Raises NotFound."""
        return _from(ApiKey, await self.backend.read("keys", FLEET_PARTITION, key_id))

    async def list_api_keys(self) -> list[ApiKey]:
        """Every API key, by id."""
        return [_from(ApiKey, d) for d in await self._query_all("keys", FLEET_PARTITION, {})]

    async def update_api_key(
        self, key_id: str, mutate: Callable[[ApiKey], ApiKey | None]
    ) -> ApiKey:
        """Read-mutate-compare-and-set an API key; `mutate` may return None to skip."""
        return await self._update(
            "keys", FLEET_PARTITION, key_id, lambda doc: _from(ApiKey, doc), _doc, mutate
        )

    async def create_enrollment(self, token: EnrollmentToken) -> EnrollmentToken:
        """Store a one-time enrollment token (hashed). Raises AlreadyExists."""
        doc = _doc(token.model_copy(update={"product_id": FLEET_PARTITION}))
        return _from(EnrollmentToken, await self.backend.create("enrollments", doc))

    async def consume_enrollment(
        self, token_id: str, token_hash: str, factory_id: str, now: datetime
    ) -> EnrollmentToken:
        """Mark a one-time token used, by compare-and-set, so only one factory ever gets it.

        Raises:
            EnrollmentRefused: unknown id, hash mismatch, expired or already used.
        """
        for attempt in range(CAS_ATTEMPTS):
            try:
                doc = await self.backend.read("enrollments", FLEET_PARTITION, token_id)
            except NotFound:
                raise EnrollmentRefused("unknown enrollment token") from None
            token = _from(EnrollmentToken, doc)
            # Check the secret first, so a caller without it learns nothing about the token.
            if not hmac.compare_digest(token.token_hash.encode(), token_hash.encode()):
                raise EnrollmentRefused("unknown enrollment token")
            if token.used_at is not None:
                raise EnrollmentRefused("enrollment token already used", token_known=True)
            if token.expires_at <= now:
                raise EnrollmentRefused("enrollment token expired", token_known=True)
            token.used_at = now
            token.used_by_factory = factory_id
            try:
                new = await self.backend.replace("enrollments", _doc(token), etag=etag_of(doc))
            except PreconditionFailed:  # a concurrent consumer wrote: re-read, it is used now
                await _backoff(attempt)
                continue
            except NotFound:
                raise EnrollmentRefused("unknown enrollment token") from None
            return _from(EnrollmentToken, new)
        raise EnrollmentRefused("enrollment token is contended; try again")
