"""Shipping: a succeeded job becomes shipped.

A job without a repository is shipped by recording it (an operator's word). A job with a
repository is shipped by pushing its branch `gigafactory/<jobId>` to the ship remote (or
running the forge command) from a factory, in a ShipWorkflow: the factory that ran it
holds the branch; any other healthy factory can fetch it from the work remote. The job is
recorded shipped, with what was pushed, only once the push succeeded; a refused push leaves
it succeeded, with an event saying why, so the ship can be retried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from gigafactory.contracts import (
    SHIP_WORKFLOW,
    RecordShipInput,
    ShipWorkflowInput,
    ShipWorkflowResult,
    ship_workflow_id,
)
from gigafactory.models import ApiKey, FactoryStatus, Job, Role, RunOutcome, Stage
from gigafactory.services.access import require_role
from gigafactory.services.audit import AuditLog
from gigafactory.services.clock import Clock
from gigafactory.services.errors import Conflict, Unavailable
from gigafactory.services.factories import is_healthy
from gigafactory.services.jobs import JobService
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.settings import Settings
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = ["ShipOutcome", "ShippingService"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShipOutcome:
    """The job after a ship request; `pending` when its push had not finished in time."""

    job: Job
    pending: bool = False


@dataclass
class ShippingService:
    """Ship succeeded jobs, and record what a ShipWorkflow did."""

    store: FleetStore
    temporal: Client
    settings: Settings
    lifecycle: Lifecycle
    jobs: JobService
    clock: Clock
    audit: AuditLog

    async def ship(self, key: ApiKey, job_id: str, note: str | None = None) -> ShipOutcome:
        """Ship a succeeded job (operators).

        Raises:
            Forbidden: the key is not an operator.
            NotFoundError: no such job the key may see.
            Conflict: the job is not succeeded, or its push was refused (with git's reason).
            Unavailable: no factory can run the push now.
        """
        async with self.audit.action(key, "job.ship", f"job:{job_id}", reason=note) as entry:
            require_role(key, Role.OPERATOR, "shipping")
            job = await self.jobs.get(key, job_id)
            entry.product_id = job.product_id
            outcome = await self._ship(key, job, note)
            if outcome.job.shipment is not None:
                entry.data["commit"] = outcome.job.shipment.commit
            entry.data["pending"] = outcome.pending
            return outcome

    async def _ship(self, key: ApiKey, job: Job, note: str | None) -> ShipOutcome:
        actor = f"api:{key.id}"
        if not job.spec.repo:
            shipped = await self.lifecycle.ship(job, actor=actor, note=note, at=self.clock())
            return ShipOutcome(shipped)
        if job.stage != Stage.SUCCEEDED:
            raise Conflict(
                f"job {job.id} is {job.stage.value}; only a succeeded job can be shipped"
            )
        handle = await self._start(job, actor, note)
        try:
            result = await asyncio.wait_for(handle.result(), timeout=self.settings.ship_wait_s)
        except TimeoutError:
            logger.info("job %s: ship still running after %ss", job.id, self.settings.ship_wait_s)
            return ShipOutcome(await self.jobs.find(job.id, job.product_id), pending=True)
        if not result.shipped:
            raise Conflict(f"job {job.id} was not shipped: {result.reason}", code="ship_refused")
        return ShipOutcome(await self.jobs.find(job.id, job.product_id))

    async def _start(
        self, job: Job, actor: str, note: str | None
    ) -> WorkflowHandle[object, ShipWorkflowResult]:
        """Start the job's ShipWorkflow, or join the one already running."""
        assert job.spec.repo is not None
        runs = await self.store.list_runs(job.id, job.product_id)
        done = [r for r in runs if r.outcome == RunOutcome.SUCCEEDED]
        last = max(done, key=lambda r: r.epoch) if done else None
        factory_id = await self._shipper(job, last.factory_id if last else None)
        timeout_s = self.settings.ship_pickup_timeout_s + self.settings.ship_push_timeout_s
        return await self.temporal.start_workflow(
            SHIP_WORKFLOW,
            ShipWorkflowInput(
                job_id=job.id,
                product_id=job.product_id,
                repo=job.spec.repo,
                factory_id=factory_id,
                commit=last.commit if last else None,
                title=job.spec.title,
                actor=actor,
                note=note,
                pickup_timeout_s=self.settings.ship_pickup_timeout_s,
                push_timeout_s=self.settings.ship_push_timeout_s,
            ),
            id=ship_workflow_id(job.product_id, job.id),
            task_queue=self.settings.control_task_queue,
            result_type=ShipWorkflowResult,
            # Two ship requests at once share one push; a refused ship may be tried again.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=timedelta(seconds=timeout_s * 2),
        )

    async def _shipper(self, job: Job, ran_on: str | None) -> str:
        """The factory to push from: the one that ran the job when it is up (it holds the
        branch), else any healthy factory (it fetches the branch from the work remote)."""
        now = self.clock()
        limit = self.settings.factory_unhealthy_after_s
        if ran_on is not None:
            try:
                factory = await self.store.get_factory(ran_on)
            except NotFound:
                factory = None
            if factory is not None and is_healthy(factory, now, limit):
                return factory.id
        others = [
            f
            for f in await self.store.list_factories()
            if f.status == FactoryStatus.ACTIVE and is_healthy(f, now, limit)
        ]
        if not others:
            raise Unavailable(
                f"no healthy factory can ship job {job.id} now"
                + (f" (factory {ran_on}, which ran it, is not healthy)" if ran_on else "")
            )
        return min(others, key=lambda f: f.id).id

    async def record(self, inp: RecordShipInput) -> None:
        """What a ShipWorkflow did: the job shipped (once), or an event saying why not."""
        job = await self.jobs.find(inp.job_id, inp.product_id)
        if inp.shipment is None:
            await self.lifecycle.record_event(
                job.id,
                job.product_id,
                kind="ship_refused",
                actor=inp.actor,
                at=inp.at,
                reason=inp.refused or "ship refused",
                event_id=inp.event_id,
            )
            return
        if job.stage == Stage.SHIPPED:  # a retried activity, or a second ship of the same job
            return
        await self.lifecycle.ship(
            job, actor=inp.actor, note=inp.note, at=inp.at, shipment=inp.shipment
        )
