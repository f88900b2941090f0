"""Waking jobs that wait for capacity, when capacity may have appeared.

Called when a slot is released, a factory enrolls, heartbeats back to health or is
uncordoned. Waiting jobs also re-check on a timer, so a lost wake-up only delays a job.
"""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.service import RPCError

from gigafactory.contracts import SIGNAL_WAKE, WakeSignal
from gigafactory.models import Job, Stage, WaitReason
from gigafactory.store.fleet_store import FleetStore

__all__ = ["wake_waiting_jobs"]

logger = logging.getLogger(__name__)


def _wake_order(job: Job) -> tuple[int, float]:
    # Highest priority first, then the longest waiting.
    return (-job.spec.priority.rank, job.updated_at.timestamp())


async def wake_waiting_jobs(
    store: FleetStore, client: Client, reason: str, *, limit: int = 8
) -> list[str]:
    """Signal the `limit` best jobs waiting for capacity to retry routing.

    Returns:
        The ids of the jobs signalled.
    """
    page = await store.list_jobs(stage=Stage.WAITING, limit=500)
    waiting = [j for j in page.items if j.wait_reason == WaitReason.CAPACITY]
    woken: list[str] = []
    for job in sorted(waiting, key=_wake_order)[:limit]:
        try:
            await client.get_workflow_handle(job.workflow_id).signal(
                SIGNAL_WAKE, WakeSignal(reason=reason)
            )
            woken.append(job.id)
        except RPCError as err:  # closed meanwhile: nothing to wake
            logger.debug("wake %s: %s", job.workflow_id, err)
    return woken
