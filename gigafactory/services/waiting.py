"""Jobs waiting for capacity: the one query for them, waking them, and the competitors a
freed slot is ranked among.

Waking happens when a slot is released, a factory enrolls, heartbeats back to health or
is uncordoned. Waiting jobs also re-check on a timer, so a lost wake-up only delays a job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from gigafactory.contracts import SIGNAL_WAKE, WakeSignal
from gigafactory.models import Job, Stage, WaitReason
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = ["WaitingJobs"]

logger = logging.getLogger(__name__)

# The most waiting jobs one query looks at.
WAITING_PAGE = 500


def _wake_order(job: Job) -> tuple[int, float]:
    # Highest priority first, then the longest waiting.
    return (-job.spec.priority.rank, job.updated_at.timestamp())


class WaitingJobs:
    """The jobs that wait for a slot."""

    def __init__(self, store: FleetStore, temporal: Client, *, recheck_s: float) -> None:
        self.store = store
        self.temporal = temporal
        # A waiting job re-routes at least every `recheck_s`; one silent for 3x as long no
        # longer competes for slots (its workflow is gone or stuck).
        self.competitor_ttl = timedelta(seconds=3 * recheck_s)

    async def jobs(self) -> list[Job]:
        """Jobs waiting for capacity, best first (highest priority, then longest waiting)."""
        page = await self.store.list_jobs(stage=Stage.WAITING, limit=WAITING_PAGE)
        waiting = [j for j in page.items if j.wait_reason == WaitReason.CAPACITY]
        return sorted(waiting, key=_wake_order)

    async def competitors(self, job_id: str, now: datetime) -> list[Job]:
        """Waiting jobs, other than `job_id`, that still re-route (so still compete)."""
        return [
            job
            for job in await self.jobs()
            if job.id != job_id
            and job.routed_at is not None
            and now - job.routed_at <= self.competitor_ttl
        ]

    async def mark_routed(self, job_id: str, product_id: str, now: datetime) -> None:
        """Note that the job asked for a slot and got none (it competes for the next)."""

        def mark(job: Job) -> Job:
            job.routed_at = now
            return job

        try:
            await self.store.update_job(job_id, product_id, mark)
        except NotFound:
            pass

    async def wake(self, reason: str, *, limit: int = 8) -> list[str]:
        """Signal the `limit` best waiting jobs to retry routing; a failure only delays them
        until their re-check.

        Returns:
            The ids of the jobs signalled.
        """
        woken: list[str] = []
        try:
            waiting = await self.jobs()
        except Exception as err:  # waking is best effort
            logger.warning("waking waiting jobs (%s) failed: %s", reason, err)
            return woken
        for job in waiting[:limit]:
            try:
                await self.temporal.get_workflow_handle(job.workflow_id).signal(
                    SIGNAL_WAKE, WakeSignal(reason=reason)
                )
                woken.append(job.id)
            except RPCError as err:  # closed meanwhile: nothing to wake
                logger.debug("wake %s: %s", job.workflow_id, err)
        if woken:
            logger.info("woke %d waiting job(s): %s", len(woken), reason)
        return woken
