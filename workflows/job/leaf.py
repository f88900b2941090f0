"""A job's own step: budget admission, its named lock, routing, and attempts on factories
until one ends with a verdict.

An attempt runs `run_agent` on the routed factory's task queue under a new lease epoch. A
lost factory (heartbeat or dispatch timeout, a fenced report, a factory that shut down)
requeues the job with epoch + 1, avoiding that factory first (after a timeout routing
skips it until its next heartbeat: decision 0020); a preemption stops the agent,
keeps its checkpoint and requeues; a cancellation stops the agent before the slot is freed.
The rules for each outcome are in `gigafactory.job_rules`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
    TimeoutType,
)
from temporalio.workflow import ActivityCancellationType, ActivityHandle

with workflow.unsafe.imports_passed_through():
    from gigafactory.budgets import (
        SIGNAL_JOB_FINISHED,
        SIGNAL_RECORD_SPEND,
        AdmissionResult,
        JobFinished,
        LedgerEntry,
        PreemptRequest,
    )
    from gigafactory.contracts import (
        BUDGET_ADMIT,
        FINISH_RUN,
        REQUEST_LOCK,
        ROUTE_JOB,
        RUN_AGENT,
        RUN_DETAIL_FIELDS,
        SIGNAL_LOCK_RELEASE,
        WITHDRAW,
        BudgetAdmitInput,
        FinishRunInput,
        LockRelease,
        LockRequest,
        RequestLockInput,
        RouteInput,
        RouteResult,
        RunAgentInput,
        RunAgentResult,
        WithdrawInput,
        factory_task_queue,
        lock_workflow_id,
        product_workflow_id,
    )
    from gigafactory.job_rules import (
        FailureKind,
        classify_failure,
        dispatch_timeout_s,
        gives_up,
        progress_of,
        stage_after_run,
    )
    from gigafactory.models import RunOutcome, Stage, WaitReason
    from gigafactory.policies import AGENT_RETRY, agent_start_to_close

from workflows.job.record import JobRecord, call_local, despite_cancel
from workflows.worktrees import remove_worktree

__all__ = ["ADMIT_BEFORE_LOCK", "LeafStep"]

# workflow.patched id: budget admission before the lock (before it: lock, then admission).
ADMIT_BEFORE_LOCK = "admit-before-lock"


class _Lost(Exception):
    """An attempt ended without a verdict (the factory vanished): requeue the job, from the
    progress its last heartbeat (or its farewell) reported."""

    def __init__(self, factory_id: str, reason: str, checkpoint: dict[str, Any] | None) -> None:
        super().__init__(reason)
        self.factory_id = factory_id
        self.reason = reason
        self.checkpoint = checkpoint


class _Preempted(Exception):
    """The attempt was stopped for a more urgent job: requeue from its checkpoint."""

    def __init__(self, request: PreemptRequest, checkpoint: dict[str, Any] | None) -> None:
        super().__init__(request.reason)
        self.request = request
        self.checkpoint = checkpoint


class LeafStep:
    """Runs a job's own step to a verdict; the workflow's handlers feed its `record`."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        self.budget_asked = False
        self.lock_requested = False

    async def run(self) -> None:
        """Budget admission, the lock, then attempts until one ends with a verdict (or the
        job gives up).

        A job is admitted by its budget before it takes its lock: a product paused or at its
        ceiling must not hold a lock other products' jobs wait for (workflows started before
        this order keep the old one: lock first).
        """
        rec = self.record
        lock = rec.inp.spec.lock
        admitted = False
        if lock and rec.inp.timing.budgets and workflow.patched(ADMIT_BEFORE_LOCK):
            await self._admit()
            admitted = True
        if lock:
            self.lock_requested = True
            await self._acquire_lock(lock)
        await self._attempts(admitted=admitted)

    async def clean_up(self) -> None:
        """Whatever happened: give the lock back and tell the budget controller."""
        lock = self.record.inp.spec.lock
        if self.lock_requested and lock:
            await despite_cancel(lambda: self._release_lock(lock))
        if self.budget_asked:
            await despite_cancel(self._budget_done)

    async def remove_worktrees(self) -> None:
        """A cancelled job with a repository: its worktrees go from every factory it ran on
        (its branch stays on the work remote where a stopped run pushed it)."""
        rec = self.record
        repo = rec.inp.spec.repo
        if repo:
            await asyncio.gather(
                *(
                    remove_worktree(f, rec.job_id, rec.product_id, repo)
                    for f in rec.worktree_factories
                )
            )

    # --- attempts -----------------------------------------------------------------------------
    async def _attempts(self, *, admitted: bool = False) -> None:
        """Attempts until a verdict; each is admitted by the budget first (the first one
        already was when `admitted`)."""
        rec = self.record
        lost = 0
        avoid: list[str] = []
        checkpoint = rec.inp.checkpoint
        while True:
            if rec.inp.timing.budgets and not admitted:
                await self._admit()
            admitted = False
            route = await self._place(avoid)
            try:
                await self._attempt(route, checkpoint, lost)
                return
            except _Preempted as err:
                rec.preempt = None
                checkpoint = err.checkpoint or checkpoint
                avoid = []
            except _Lost as err:
                lost += 1
                avoid = [err.factory_id]
                checkpoint = err.checkpoint or checkpoint

    async def _place(self, avoid: list[str]) -> RouteResult:
        """A slot for the next attempt: at once, or once a dispatcher hands one over (the job
        waits in the queue with no timer: waiting adds nothing to its history)."""
        rec = self.record
        spec = rec.inp.spec
        route = await call_local(
            ROUTE_JOB,
            RouteInput(
                job_id=rec.job_id,
                product_id=rec.product_id,
                epoch=rec.epoch + 1,
                workflow_id=workflow.info().workflow_id,
                engine=spec.engine,
                capabilities=spec.capabilities,
                priority=spec.priority,
                # The factory that just lost the job is tried last.
                avoid_factories=avoid,
                preferred_labels=spec.preferred_labels,
                previous_factory_id=rec.factory_id,
                weights_override=spec.routing_weights,
                preemption=rec.inp.timing.preemption,
            ),
        )
        if route.factory_id is not None:
            return route
        rec.show(Stage.WAITING, WaitReason.CAPACITY, route.waiting_reason)
        rec.grant, rec.awaiting_grant = None, True
        try:
            await workflow.wait_condition(lambda: rec.grant is not None)
        except asyncio.CancelledError:
            await despite_cancel(self._stop_waiting)
            raise
        finally:
            rec.awaiting_grant = False
        grant = rec.grant
        assert grant is not None
        rec.grant = None
        return RouteResult(
            factory_id=grant.factory_id,
            score=grant.score,
            stop_grace_s=grant.stop_grace_s,
            evicted=grant.evicted,
            victim_grace_s=grant.victim_grace_s,
        )

    async def _stop_waiting(self) -> None:
        """Cancelled while queued: leave the queue, or give back a slot just handed over."""
        rec = self.record
        grant = rec.grant
        if grant is None:
            await call_local(WITHDRAW, WithdrawInput(workflow_id=workflow.info().workflow_id))
            return
        now = workflow.now()
        never_ran = RunAgentResult(
            outcome=RunOutcome.CANCELLED,
            reason="cancelled before it started",
            started_at=now,
            finished_at=now,
        )
        await self._finish(grant.factory_id, grant.epoch, now, never_ran, stage=Stage.CANCELLED)

    async def _attempt(
        self, route: RouteResult, checkpoint: dict[str, Any] | None, lost: int
    ) -> None:
        """Run the agent once on the placed factory, under the lease the placement opened;
        record the run and the job's next stage together."""
        rec, spec, timing = self.record, self.record.inp.spec, self.record.inp.timing
        factory_id = route.factory_id
        assert factory_id is not None
        epoch = rec.epoch + 1
        started_at = workflow.now()
        async with rec.lock:
            rec.epoch = epoch
            rec.factory_id = factory_id
            if spec.repo and factory_id not in rec.worktree_factories:
                rec.worktree_factories.append(factory_id)
            rec.show(Stage.DISPATCHED, None, f"dispatched to {factory_id}")

        grace_s = timing.stop_grace_s if route.stop_grace_s is None else route.stop_grace_s
        handle = workflow.start_activity(
            RUN_AGENT.name,
            RunAgentInput(
                job_id=rec.job_id,
                product_id=rec.product_id,
                epoch=epoch,
                spec=spec,
                checkpoint=checkpoint,
                stop_grace_s=grace_s,
            ),
            result_type=RUN_AGENT.result_type,
            task_queue=factory_task_queue(factory_id),
            start_to_close_timeout=agent_start_to_close(spec.timeout_s, grace_s),
            schedule_to_start_timeout=timedelta(
                seconds=dispatch_timeout_s(timing, bool(route.evicted), route.victim_grace_s)
            ),
            heartbeat_timeout=timedelta(seconds=timing.lease_heartbeat_timeout_s),
            retry_policy=AGENT_RETRY,
            # Free the slot only once the agent has really stopped.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            await workflow.wait_condition(lambda: handle.done() or rec.preempt is not None)
            if not handle.done() and rec.preempt is not None:
                request = rec.preempt
                handle.cancel()
                result = await self._drain(handle, started_at)
                kept = result.checkpoint or checkpoint
                await self._finish(
                    factory_id,
                    epoch,
                    started_at,
                    result,
                    override=RunOutcome.PREEMPTED,
                    stage=Stage.QUEUED,
                    reason=request.reason,
                    kind="preempted",
                    data={
                        "preemptor": request.preemptor_job_id,
                        "epoch": epoch,
                        "checkpoint": kept,
                    },
                )
                raise _Preempted(request, result.checkpoint)
            result = await handle
        except asyncio.CancelledError:
            handle.cancel()
            result = await self._drain(handle, started_at)
            await despite_cancel(
                lambda: self._finish(
                    factory_id,
                    epoch,
                    started_at,
                    result,
                    override=RunOutcome.CANCELLED,
                    stage=Stage.CANCELLED,
                    reason="cancelled",
                )
            )
            raise
        except ActivityError as err:
            verdict = classify_failure(
                _failure_kind(err), factory_id, _message(err), timing, spec.timeout_s
            )
            result = RunAgentResult(
                outcome=verdict.outcome,
                reason=verdict.reason,
                started_at=started_at,
                finished_at=workflow.now(),
            )
            if not verdict.requeue:
                await self._finish(
                    factory_id, epoch, started_at, result, stage=Stage.FAILED, reason=verdict.reason
                )
                return
            if gives_up(lost + 1, timing):
                await self._finish(
                    factory_id,
                    epoch,
                    started_at,
                    result,
                    stage=Stage.FAILED,
                    reason=f"gave up after {lost + 1} lost attempts: {verdict.reason}",
                    factory_unresponsive=verdict.factory_unresponsive,
                )
                return
            await self._finish(
                factory_id,
                epoch,
                started_at,
                result,
                stage=Stage.QUEUED,
                reason=f"requeued: {verdict.reason}",
                kind="requeued",
                factory_unresponsive=verdict.factory_unresponsive,
            )
            raise _Lost(factory_id, verdict.reason, _last_progress(err)) from err

        end = stage_after_run(result.outcome, result.reason)
        if end.stage is None:
            # The agent was stopped on our behalf (a workflow cancel raced its completion).
            await self._finish(
                factory_id, epoch, started_at, result, stage=Stage.CANCELLED, reason="cancelled"
            )
            raise asyncio.CancelledError()
        await self._finish(
            factory_id, epoch, started_at, result, stage=end.stage, reason=end.reason
        )

    async def _drain(
        self, handle: ActivityHandle[RunAgentResult], started_at: datetime
    ) -> RunAgentResult:
        """Wait for a cancelled agent to stop; whatever it returns or raises is its result."""
        try:
            return await handle
        except (ActivityError, asyncio.CancelledError) as err:
            return RunAgentResult(
                outcome=RunOutcome.CANCELLED,
                reason=f"cancelled: {err}",
                started_at=started_at,
                finished_at=workflow.now(),
            )

    async def _finish(
        self,
        factory_id: str,
        epoch: int,
        started_at: datetime,
        result: RunAgentResult,
        *,
        stage: Stage,
        reason: str | None = None,
        override: RunOutcome | None = None,
        kind: str = "stage",
        data: dict[str, Any] | None = None,
        factory_unresponsive: bool = False,
    ) -> None:
        """Tell the budget controller the cost, then record the run and the job's next
        stage (one local activity, one projection write) and free the slot for the next
        job: a job that reads finished has its spend counted by its controller already.
        `factory_unresponsive`: the factory lost the lease, and is skipped until it
        heartbeats again."""
        rec = self.record
        rec.cost_usd += result.cost_usd
        rec.exit_code = result.exit_code
        await self._report_spend(epoch, result)
        await call_local(
            FINISH_RUN,
            FinishRunInput(
                job_id=rec.job_id,
                product_id=rec.product_id,
                epoch=epoch,
                factory_id=factory_id,
                engine=rec.inp.spec.engine,
                started_at=result.started_at or started_at,
                finished_at=result.finished_at,
                outcome=override or result.outcome,
                exit_code=result.exit_code,
                cost_usd=result.cost_usd,
                cost_estimated=result.cost_estimated,
                reason=result.reason,
                checkpoint=result.checkpoint,
                budgets_enforced=rec.inp.timing.budgets,
                factory_unresponsive=factory_unresponsive,
                stage=stage,
                stage_reason=reason,
                event_id=str(workflow.uuid4()),
                event_kind=kind,
                event_data=data or {},
                **result.model_dump(include=RUN_DETAIL_FIELDS),
            ),
        )
        rec.show(stage, None, reason)

    # --- budgets ------------------------------------------------------------------------------
    async def _admit(self) -> None:
        """Wait until the product's controller admits this attempt (FLEET_BUDGETS on)."""
        rec = self.record
        rec.budget_admitted = False  # the signal may come before the activity returns
        self.budget_asked = True
        result: AdmissionResult = await call_local(
            BUDGET_ADMIT,
            BudgetAdmitInput(
                product_id=rec.product_id,
                job_id=rec.job_id,
                workflow_id=workflow.info().workflow_id,
                priority=rec.inp.spec.priority,
                estimate_usd=rec.inp.spec.estimated_cost_usd,
                requested_at=workflow.now(),
            ),
        )
        if result.admitted:
            return
        await rec.transition(Stage.WAITING, wait_reason=WaitReason.BUDGET, reason=result.reason)
        await workflow.wait_condition(lambda: rec.budget_admitted)
        await rec.transition(Stage.QUEUED, reason="admitted by the budget", kind="budget")

    async def _report_spend(self, epoch: int, result: RunAgentResult) -> None:
        """Tell the controller what the run cost (once per run id; it ignores duplicates)."""
        if not self.budget_asked:
            return
        rec = self.record
        entry = LedgerEntry(
            run_id=f"{rec.job_id}.{epoch}",
            job_id=rec.job_id,
            usd=result.cost_usd,
            estimated=result.cost_estimated,
            at=result.finished_at or workflow.now(),
        )
        try:
            await workflow.get_external_workflow_handle(product_workflow_id(rec.product_id)).signal(
                SIGNAL_RECORD_SPEND, entry
            )
        except Exception as err:  # noqa: BLE001 - the store's ledger has it regardless
            workflow.logger.warning("spend of %s not reported: %s", entry.run_id, err)

    async def _budget_done(self) -> None:
        rec = self.record
        try:
            await workflow.get_external_workflow_handle(product_workflow_id(rec.product_id)).signal(
                SIGNAL_JOB_FINISHED, JobFinished(job_id=rec.job_id)
            )
        except Exception as err:  # noqa: BLE001 - a controller that is gone holds nothing
            workflow.logger.info("job_finished for %s: %s", rec.job_id, err)

    # --- locks --------------------------------------------------------------------------------
    async def _acquire_lock(self, lock: str) -> None:
        rec = self.record
        await rec.transition(
            Stage.WAITING, wait_reason=WaitReason.LOCK, reason=f"waiting for lock {lock}"
        )
        await call_local(
            REQUEST_LOCK,
            RequestLockInput(
                lock=lock,
                request=LockRequest(
                    holder_workflow_id=workflow.info().workflow_id,
                    priority=rec.inp.spec.priority,
                ),
            ),
        )
        await workflow.wait_condition(lambda: rec.lock_granted)
        await rec.transition(Stage.QUEUED, reason=f"holds lock {lock}", kind="lock")

    async def _release_lock(self, lock: str) -> None:
        try:
            await workflow.get_external_workflow_handle(lock_workflow_id(lock)).signal(
                SIGNAL_LOCK_RELEASE,
                LockRelease(holder_workflow_id=workflow.info().workflow_id),
            )
        except Exception as err:  # noqa: BLE001 - a closed lock workflow holds nothing
            workflow.logger.info("release of lock %s: %s", lock, err)


def _failure_kind(err: ActivityError) -> FailureKind:
    """What Temporal's error says about why `run_agent` ended without a result."""
    cause = err.cause
    if isinstance(cause, TimeoutError):
        if cause.type == TimeoutType.HEARTBEAT:
            return FailureKind.HEARTBEAT_TIMEOUT
        if cause.type == TimeoutType.SCHEDULE_TO_START:
            return FailureKind.DISPATCH_TIMEOUT
        return FailureKind.RUN_TIMEOUT
    if isinstance(cause, ApplicationError) and cause.type == "Fenced":
        return FailureKind.FENCED
    if isinstance(cause, ApplicationError) and cause.type == "FactoryShutdown":
        return FailureKind.FACTORY_SHUTDOWN
    if isinstance(cause, CancelledError):
        return FailureKind.FACTORY_CANCELLED
    return FailureKind.ERROR


def _last_progress(err: ActivityError) -> dict[str, Any] | None:
    """The agent's progress as it last reported it: its last heartbeat before a lease
    expired, or the checkpoint a factory that shut down handed back."""
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return progress_of(cause.last_heartbeat_details)
    if isinstance(cause, ApplicationError):
        return progress_of(cause.details)
    return None


def _message(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)
