"""What the web control plane shows at once: the fleet map, a job's page, a log to follow.

Each view is one call that gathers what a page needs from the other services, under the
same rules: a key sees only its products' jobs (another product's running job is counted,
never named), and only operators see a factory's host name.

The fleet map is readable by every key. Factories serve every product, so their ids,
engines, labels, health and slot counts are fleet facts, not any product's data; what is
product data (which job runs where) is limited to the key's products.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gigafactory.models import (
    TERMINAL_STAGES,
    ApiKey,
    Artifact,
    Event,
    Job,
    LogChunk,
    Priority,
    Role,
    Run,
    SlotReservation,
)
from gigafactory.services.access import has_role
from gigafactory.services.artifacts import ArtifactService
from gigafactory.services.clock import Clock
from gigafactory.services.factories import FactoryService, FactoryState
from gigafactory.services.job_tree import DagNode, JobTreeService
from gigafactory.services.jobs import JobService
from gigafactory.services.routing import RoutingExplanation, RoutingService
from gigafactory.settings import Settings
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = [
    "EVENTS_SHOWN",
    "LOG_CHUNKS_SHOWN",
    "FactoryCard",
    "FleetMap",
    "JobDetail",
    "LogTail",
    "OverviewService",
    "RunningJob",
]

# A job page shows at most this many events (oldest first) and log chunks (the newest).
EVENTS_SHOWN = 500
LOG_CHUNKS_SHOWN = 400
# How many log chunks one read of a follow takes.
_LOG_READ = 2000


@dataclass(frozen=True)
class RunningJob:
    """A job holding a slot on a factory, as the key may see it."""

    job_id: str
    product_id: str
    headline: str
    priority: Priority
    epoch: int
    runtime_s: float
    evicted_by: str | None = None


@dataclass(frozen=True)
class FactoryCard:
    """One factory on the fleet map."""

    state: FactoryState
    jobs: list[RunningJob]
    hidden_jobs: int  # slots held by jobs of products the key may not see
    hostname: str | None  # operators only

    @property
    def slots_used(self) -> int:
        return self.state.slots_in_use

    @property
    def slots_total(self) -> int:
        return self.state.factory.slots


@dataclass(frozen=True)
class FleetMap:
    """Every factory, and the fleet's totals."""

    cards: list[FactoryCard]
    at: datetime

    @property
    def slots_used(self) -> int:
        return sum(c.slots_used for c in self.cards)

    @property
    def slots_total(self) -> int:
        return sum(c.slots_total for c in self.cards)

    @property
    def healthy(self) -> int:
        return sum(1 for c in self.cards if c.state.healthy)


@dataclass(frozen=True)
class JobDetail:
    """Everything a job's page shows."""

    job: Job
    runs: list[Run]
    events: list[Event]
    more_events: bool
    artifacts: list[Artifact]
    log: list[LogChunk]
    log_truncated: bool
    routing: RoutingExplanation
    dag: DagNode | None  # the job's subtree, when it has children
    at: datetime

    @property
    def finished(self) -> bool:
        return self.job.stage in TERMINAL_STAGES


@dataclass(frozen=True)
class LogTail:
    """New log chunks of a job after a point, and whether more can still come."""

    job: Job
    chunks: list[LogChunk] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.job.stage in TERMINAL_STAGES


@dataclass
class OverviewService:
    """The views of the web control plane."""

    store: FleetStore
    settings: Settings
    jobs: JobService
    factories: FactoryService
    routing: RoutingService
    tree: JobTreeService
    artifacts: ArtifactService
    clock: Clock

    async def fleet_map(self, key: ApiKey) -> FleetMap:
        """Every factory with its health, slots, lease state and the jobs it runs (the key's
        products named, the others counted)."""
        now = self.clock()
        operator = has_role(key, Role.OPERATOR)
        tables = {t.factory_id: t for t in await self.store.list_slot_tables()}
        cards = []
        for factory in await self.store.list_factories():
            table = tables.get(factory.id)
            state = self.factories.state_at(factory, table, now)
            visible = [r for r in state.reservations if key.may_see(r.product_id)]
            cards.append(
                FactoryCard(
                    state=state,
                    jobs=[await self._running(r, now) for r in visible],
                    hidden_jobs=len(state.reservations) - len(visible),
                    hostname=factory.hostname if operator else None,
                )
            )
        return FleetMap(cards=cards, at=now)

    async def _running(self, r: SlotReservation, now: datetime) -> RunningJob:
        try:
            headline = (await self.store.get_job(r.job_id, r.product_id)).spec.headline()
        except NotFound:  # finished and removed meanwhile: its reservation goes next
            headline = "(gone)"
        return RunningJob(
            job_id=r.job_id,
            product_id=r.product_id,
            headline=headline,
            priority=r.priority,
            epoch=r.epoch,
            runtime_s=max(0.0, (now - r.reserved_at).total_seconds()),
            evicted_by=r.evicted_by,
        )

    async def job_detail(self, key: ApiKey, job_id: str, *, with_log: bool = True) -> JobDetail:
        """A job's stage, timeline, runs, artifacts, log tail (unless `with_log` is False),
        last routing decision and subtree.

        Raises:
            NotFoundError: no such job, or the key may not see it.
        """
        job = await self.jobs.get(key, job_id)
        events, more = await self.store.list_events(job.id, job.product_id, limit=EVENTS_SHOWN)
        log = (
            await self.store.read_log(
                job.id, job.product_id, epoch=job.lease_epoch, limit=_LOG_READ
            )
            if with_log
            else []
        )
        return JobDetail(
            job=job,
            runs=await self.store.list_runs(job.id, job.product_id),
            events=events,
            more_events=more is not None,
            artifacts=await self.store.list_artifacts(job.id, job.product_id),
            log=log[-LOG_CHUNKS_SHOWN:],
            log_truncated=len(log) > LOG_CHUNKS_SHOWN,
            routing=await self.routing.explain(key, job.id),
            dag=await self.tree.dag(key, job.id) if job.spec.children else None,
            at=self.clock(),
        )

    async def log_tail(self, key: ApiKey, job_id: str, *, epoch: int, after_seq: int) -> LogTail:
        """The job's log chunks of lease `epoch` after `after_seq`, with the job (so a follower
        knows when to stop).

        Raises:
            NotFoundError: no such job, or the key may not see it.
        """
        job = await self.jobs.get(key, job_id)
        chunks = await self.store.read_log(
            job.id, job.product_id, epoch=epoch, after_seq=after_seq, limit=_LOG_READ
        )
        return LogTail(job=job, chunks=chunks)
