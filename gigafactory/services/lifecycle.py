"""Job lifecycle: the one place that moves a job's stage and writes its events.

A job's projection (stage, reason, lease epoch, factory, cost) and its event log are only
ever changed here, whoever asks: the job's workflow (through its local activities), the
API (submit, cancel, ship), a factory's reports (fencing). Every write is idempotent
(events have deterministic or caller-chosen ids; projections move by compare-and-set), so
Temporal may retry any of them.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gigafactory.contracts import (
    BeginAttemptInput,
    FinishRunInput,
    TransitionInput,
)
from gigafactory.models import TERMINAL_STAGES, Event, Job, Run, Shipment, SpendRecord, Stage
from gigafactory.observability.metrics import FENCED_REPORTS
from gigafactory.services.errors import Conflict, Fenced
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = ["Lifecycle", "RunRecorded", "run_id"]

logger = logging.getLogger(__name__)


def run_id(job_id: str, epoch: int) -> str:
    """A run's id: its job and lease epoch (so a run, and its spend, is written once)."""
    return f"{job_id}.{epoch}"


def submitted_event_id(job_id: str) -> str:
    """The deterministic id of a job's first event, so a rolled-back submit can find it."""
    return f"{job_id}.submitted"


@dataclass(frozen=True)
class RunRecorded:
    """What recording a run changed: whether its spend was new, and the job's total cost."""

    new_spend: bool
    job_cost_usd: float


@dataclass
class Lifecycle:
    """Stage transitions and events of jobs, over the store."""

    store: FleetStore

    # --- events -------------------------------------------------------------------------------
    async def record_event(
        self,
        job_id: str,
        product_id: str,
        *,
        kind: str,
        actor: str,
        at: datetime,
        reason: str | None = None,
        stage: Stage | None = None,
        from_stage: Stage | None = None,
        epoch: int | None = None,
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> Event:
        """Append one event (idempotent when `event_id` is given: a repeat is kept once)."""
        return await self.store.append_event(
            Event(
                id=event_id or uuid.uuid4().hex,
                job_id=job_id,
                product_id=product_id,
                at=at,
                kind=kind,
                actor=actor,
                stage=stage,
                from_stage=from_stage if from_stage != stage else None,
                reason=reason,
                epoch=epoch,
                data=data or {},
            )
        )

    # --- submit -------------------------------------------------------------------------------
    async def create(self, job: Job, *, reason: str) -> Job:
        """Write a new job's projection and its `queued` event. Raises AlreadyExists."""
        created = await self.store.create_job(job)
        try:
            await self.record_event(
                job.id,
                job.product_id,
                kind="stage",
                actor=job.submitted_by or "api",
                at=job.created_at,
                stage=job.stage,
                reason=reason,
                event_id=submitted_event_id(job.id),
            )
        except BaseException:
            await self.remove(job)
            raise
        return created

    async def remove(self, job: Job) -> None:
        """Undo `create` (a submit that could not start its workflow): what is gone is fine."""
        with contextlib.suppress(NotFound):
            await self.store.delete_event(job.product_id, submitted_event_id(job.id))
        with contextlib.suppress(NotFound):
            await self.store.delete_job(job.id, job.product_id)

    # --- transitions from the job's workflow --------------------------------------------------
    async def transition(self, inp: TransitionInput, *, seen: Job | None = None) -> Job | None:
        """Move the projection to `inp.stage` (if given) and append the event; returns the
        moved projection (None when no stage was given). `seen`: the job as just read."""
        previous: list[Stage] = []

        def mutate(job: Job) -> Job:
            previous.append(job.stage)
            if inp.stage is None:
                return job
            job.stage = inp.stage
            job.wait_reason = inp.wait_reason
            job.stage_reason = inp.reason
            job.updated_at = inp.at
            if inp.factory_id is not None:
                job.factory_id = inp.factory_id
            if inp.epoch is not None:
                job.lease_epoch = max(job.lease_epoch, inp.epoch)
            if inp.stage == Stage.RUNNING and job.started_at is None:
                job.started_at = inp.at
            if inp.stage in TERMINAL_STAGES:
                job.finished_at = inp.at
            if inp.cost_usd is not None:
                job.cost_usd = inp.cost_usd
            if inp.exit_code is not None:
                job.exit_code = inp.exit_code
            return job

        moved = None
        if inp.stage is not None:
            moved = await self.store.update_job(inp.job_id, inp.product_id, mutate, seen=seen)
        await self.record_event(
            inp.job_id,
            inp.product_id,
            kind=inp.kind,
            actor=inp.actor,
            at=inp.at,
            stage=inp.stage,
            from_stage=previous[0] if previous else None,
            reason=inp.reason,
            epoch=inp.epoch,
            data=inp.data,
            event_id=inp.event_id,
        )
        return moved

    async def transition_if_changed(self, inp: TransitionInput) -> bool:
        """`transition`, unless the job is already in that stage for that reason (a job
        placed again while it waits records no new event). Returns whether it moved."""
        job = await self.store.get_job(inp.job_id, inp.product_id)
        if (job.stage, job.wait_reason, job.stage_reason) == (
            inp.stage,
            inp.wait_reason,
            inp.reason,
        ):
            return False
        await self.transition(inp, seen=job)
        return True

    async def begin_attempt(self, inp: BeginAttemptInput) -> bool:
        """Open lease `epoch`: the job's epoch moves on (older reports are fenced from now).

        Returns:
            False, and nothing written, when the job has already ended (a slot handed to a
            job that was cancelled meanwhile) or moved past this epoch.
        """
        previous: list[Stage] = []

        def mutate(job: Job) -> Job | None:
            previous.append(job.stage)
            if job.stage in TERMINAL_STAGES or job.lease_epoch > inp.epoch:
                return None
            job.lease_epoch = max(job.lease_epoch, inp.epoch)
            job.attempts = max(job.attempts, inp.epoch)
            job.factory_id = inp.factory_id
            job.stage = Stage.DISPATCHED
            job.wait_reason = None
            job.stage_reason = f"dispatched to {inp.factory_id}"
            job.updated_at = inp.at
            return job

        try:
            opened = await self.store.update_job(inp.job_id, inp.product_id, mutate)
        except NotFound:
            return False
        if opened.lease_epoch != inp.epoch or opened.stage != Stage.DISPATCHED:
            return False
        await self.store.upsert_run(
            Run(
                id=run_id(inp.job_id, inp.epoch),
                job_id=inp.job_id,
                product_id=inp.product_id,
                epoch=inp.epoch,
                factory_id=inp.factory_id,
                engine=inp.engine,
                started_at=inp.at,
            )
        )
        await self.record_event(
            inp.job_id,
            inp.product_id,
            kind="stage",
            actor="workflow",
            at=inp.at,
            stage=Stage.DISPATCHED,
            from_stage=previous[0] if previous else None,
            reason=f"dispatched to {inp.factory_id} under lease epoch {inp.epoch}",
            epoch=inp.epoch,
            data=inp.data,
            event_id=inp.event_id,
        )
        return True

    async def record_run(self, inp: FinishRunInput) -> RunRecorded:
        """Record how an attempt ended: the run, its ledger entry, the job's cost.

        The ledger gets one entry per run whether or not budgets are enforced (keyed by the
        run id, so a retried call counts nothing twice), and the job's cost is the sum over
        its runs for the same reason.
        """
        rid = run_id(inp.job_id, inp.epoch)
        await self.store.upsert_run(
            Run(id=rid, **inp.model_dump(include=set(Run.model_fields) - {"id"}))
        )
        new_spend = await self.store.record_spend(
            SpendRecord(
                id=rid,
                product_id=inp.product_id,
                job_id=inp.job_id,
                usd=inp.cost_usd,
                estimated=inp.cost_estimated,
                at=inp.finished_at,
            )
        )
        # A run's cost is added once, when its ledger entry is new; a retried call (which
        # may have died before the projection was written) sums the job's runs instead.
        resum = None if new_spend else await self.store.list_runs(inp.job_id, inp.product_id)
        previous: list[Stage] = []
        total: list[float] = []

        def mutate(job: Job) -> Job:
            previous.append(job.stage)
            if resum is None:
                job.cost_usd += inp.cost_usd
            else:
                job.cost_usd = sum(r.cost_usd for r in resum)
            total.append(job.cost_usd)
            if inp.exit_code is not None:
                job.exit_code = inp.exit_code
            if inp.stage is not None:
                job.stage = inp.stage
                job.wait_reason = None
                job.stage_reason = inp.stage_reason
                job.updated_at = inp.finished_at
                if inp.stage in TERMINAL_STAGES:
                    job.finished_at = inp.finished_at
            return job

        await self.store.update_job(inp.job_id, inp.product_id, mutate)
        if inp.stage is not None:
            await self.record_event(
                inp.job_id,
                inp.product_id,
                kind=inp.event_kind,
                actor="workflow",
                at=inp.finished_at,
                stage=inp.stage,
                from_stage=previous[0] if previous else None,
                reason=inp.stage_reason,
                epoch=inp.epoch,
                data=inp.event_data,
                event_id=inp.event_id or f"{run_id(inp.job_id, inp.epoch)}.{inp.stage.value}",
            )
        return RunRecorded(new_spend=new_spend, job_cost_usd=total[-1])

    # --- reports from factories ---------------------------------------------------------------
    async def check_report(
        self,
        job_id: str,
        product_id: str,
        epoch: int,
        *,
        actor: str,
        what: str,
        at: datetime,
        seen: Job | None = None,
    ) -> Job:
        """Accept a report from lease `epoch`, or fence it (`seen`: the job as just read).

        Raises:
            Fenced: `epoch` is older than the job's; a `fenced` event naming `actor` and
                `what` was recorded and the job's `fencedReports` counter incremented.
        """
        job = seen if seen is not None else await self.store.get_job(job_id, product_id)
        current = job.lease_epoch
        if epoch >= current:
            return job
        FENCED_REPORTS.inc()
        logger.warning(
            "job %s: fenced %s from %s (epoch %d < %d)", job_id, what, actor, epoch, current
        )
        await self.record_event(
            job_id,
            product_id,
            kind="fenced",
            actor=actor,
            at=at,
            reason=f"stale report ({what}) from lease epoch {epoch}; current epoch is {current}",
            epoch=epoch,
            data={"what": what, "currentEpoch": current},
        )

        def count_fenced(j: Job) -> Job:
            j.fenced_reports += 1
            return j

        await self.store.update_job(job_id, product_id, count_fenced)
        raise Fenced(
            f"job {job_id}: report from lease epoch {epoch} rejected, current epoch is {current}",
            job_id=job_id,
            reported=epoch,
            current=current,
        )

    # --- operators ----------------------------------------------------------------------------
    async def ship(
        self,
        job: Job,
        *,
        actor: str,
        note: str | None,
        at: datetime,
        shipment: Shipment | None = None,
    ) -> Job:
        """succeeded -> shipped (compare-and-set), with what was pushed and its event.

        Raises:
            Conflict: the job is not succeeded (it may have been shipped meanwhile).
        """
        seen: list[Stage] = []

        def mutate(j: Job) -> Job | None:
            seen.append(j.stage)
            if j.stage != Stage.SUCCEEDED:
                return None
            j.stage = Stage.SHIPPED
            j.stage_reason = note or f"shipped by {actor}"
            j.shipment = shipment
            j.updated_at = at
            return j

        moved = await self.store.update_job(job.id, job.product_id, mutate)
        if seen[-1] != Stage.SUCCEEDED:
            raise Conflict(f"job {job.id} is {seen[-1].value}; only a succeeded job can be shipped")
        await self.record_event(
            job.id,
            job.product_id,
            kind="stage",
            actor=actor,
            at=at,
            stage=Stage.SHIPPED,
            from_stage=Stage.SUCCEEDED,
            reason=note or "shipped",
            event_id=f"{job.id}.{Stage.SHIPPED.value}",
            data=shipment.model_dump(mode="json", by_alias=True) if shipment else None,
        )
        return moved
