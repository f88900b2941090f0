"""The fleet's queue of jobs waiting for a slot, as routing ranks it.

A job that cannot be placed at once gets an entry in its lane: jobs of one lane share
engine, capabilities, preferred labels, previous factory and priority, so the pair score of
routing (`routing.score`) differs between them only by how long they waited. A lane's
longest-waiting entry (its head) is therefore its best job on every factory, and the best
waiting job for a freed slot is found among the heads of the lanes that factory can serve,
one store query each, however long the queue (docs/decisions/0015-slot-hand-off.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from gigafactory.models import QueueEntry, QueueLane
from gigafactory.services.fleet_view import job_request
from gigafactory.store.fleet_store import FleetStore
from routing import FactoryView, JobRequest
from routing.filters import job_exclusion

__all__ = ["Queue", "entry_request", "lane_of"]


def lane_of(entry: QueueEntry) -> QueueLane:
    """The lane of an entry: everything routing scores a waiting job by, but its age."""
    caps, preferred = sorted(set(entry.capabilities)), sorted(set(entry.preferred_labels))
    key = json.dumps(
        [entry.engine, caps, preferred, entry.previous_factory_id, entry.priority.value]
    )
    return QueueLane(
        id=hashlib.sha256(key.encode()).hexdigest()[:20],
        engine=entry.engine,
        capabilities=caps,
        preferred_labels=preferred,
        previous_factory_id=entry.previous_factory_id,
        priority=entry.priority,
    )


def entry_request(entry: QueueEntry) -> JobRequest:
    """A queued job as routing sees it, named by its entry id (its workflow id, unique
    across products, which ranking needs)."""
    return job_request(
        entry.id,
        engine=entry.engine,
        capabilities=entry.capabilities,
        priority=entry.priority,
        preferred_labels=entry.preferred_labels,
        waiting_since=entry.waiting_since,
        previous_factory_id=entry.previous_factory_id,
    )


def _serves(view: FactoryView, lane: QueueLane) -> bool:
    probe = job_request(
        "(lane)",
        engine=lane.engine,
        capabilities=lane.capabilities,
        priority=lane.priority,
        preferred_labels=lane.preferred_labels,
        waiting_since=None,
    )
    return job_exclusion(probe, view) is None


@dataclass
class Queue:
    """The queue over the store."""

    store: FleetStore

    async def enqueue(self, entry: QueueEntry) -> QueueEntry:
        """Put a job in its lane (a job already queued keeps one entry)."""
        lane = lane_of(entry)
        return await self.store.enqueue(entry.model_copy(update={"lane": lane.id}), lane)

    async def lanes(self) -> list[QueueLane]:
        """Every lane (read once for several factories' heads)."""
        return await self.store.queue_lanes()

    async def heads(
        self, view: FactoryView, lanes: list[QueueLane] | None = None
    ) -> list[QueueEntry]:
        """The head of every lane `view` can serve (engine and capabilities; whether the
        factory may take work at all is the caller's check)."""
        heads: list[QueueEntry] = []
        for lane in lanes if lanes is not None else await self.store.queue_lanes():
            if _serves(view, lane):
                heads.extend(await self.store.lane_heads(lane.id))
        return heads

    async def withdraw(self, workflow_id: str) -> bool:
        """The job stopped waiting (cancelled): its entry goes."""
        return await self.store.dequeue(workflow_id)
