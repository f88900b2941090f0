"""JobWorkflow: one job, from its lock to a terminal stage.

Leaf path: named lock -> routing (a slot reserved on a factory) -> `run_agent` on that
factory's task queue under a new lease epoch -> record the run -> terminal stage.
A lost factory (heartbeat or dispatch timeout) requeues the job with epoch + 1; a
cancellation stops the agent, frees the slot and the lock, and ends `cancelled`.

Every store write is a local activity (fast, few history events); the workflow is the one
writer of its job's stage, so the projection, the events and the search attributes agree.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    TimeoutError,
    TimeoutType,
)
from temporalio.workflow import ActivityCancellationType, ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gigafactory.budgets import (
        SIGNAL_BUDGET_ADMITTED,
        SIGNAL_JOB_FINISHED,
        SIGNAL_PREEMPT,
        SIGNAL_RECORD_SPEND,
        AdmissionResult,
        JobFinished,
        LedgerEntry,
        PreemptRequest,
    )
    from gigafactory.contracts import (
        BEGIN_ATTEMPT,
        BUDGET_ADMIT,
        FENCE_REPORT,
        FINISH_RUN,
        JOB_WORKFLOW,
        QUERY_STATUS,
        RECORD_TRANSITION,
        REQUEST_LOCK,
        ROUTE_JOB,
        RUN_AGENT,
        RUN_DETAIL_FIELDS,
        SIGNAL_AGENT_STARTED,
        SIGNAL_LOCK_GRANTED,
        SIGNAL_LOCK_RELEASE,
        SIGNAL_WAKE,
        UPDATE_ADD_CHILDREN,
        AddChildren,
        AgentStarted,
        BeginAttemptInput,
        BudgetAdmitInput,
        FenceInput,
        FinishRunInput,
        JobStatus,
        JobWorkflowInput,
        JobWorkflowResult,
        LockGranted,
        LockRelease,
        LockRequest,
        RequestLockInput,
        RouteInput,
        RouteResult,
        RunAgentInput,
        RunAgentResult,
        TransitionInput,
        WakeSignal,
        child_job_id,
        factory_task_queue,
        job_workflow_id,
        lock_workflow_id,
        product_workflow_id,
    )
    from gigafactory.dag import FailurePolicy, parent_outcome, plan
    from gigafactory.models import ChildSpec, RunOutcome, Stage, WaitReason
    from gigafactory.policies import (
        AGENT_RETRY,
        CONTROL_RETRY,
        CONTROL_SCHEDULE_TO_CLOSE,
        CONTROL_START_TO_CLOSE,
        agent_start_to_close,
    )
    from gigafactory.search_attributes import FLEET_FACTORY_ID, FLEET_STAGE
    from gigafactory.workflow_view import (
        initial_search_attributes,
        temporal_priority,
        workflow_details,
        workflow_summary,
    )

__all__ = ["JobWorkflow"]


class _Lost(Exception):
    """An attempt ended without a verdict (the factory vanished): requeue the job."""

    def __init__(self, factory_id: str, reason: str) -> None:
        super().__init__(reason)
        self.factory_id = factory_id
        self.reason = reason


class _Preempted(Exception):
    """The attempt was stopped for a more urgent job: requeue from its checkpoint."""

    def __init__(self, request: PreemptRequest, checkpoint: dict[str, Any] | None) -> None:
        super().__init__(request.reason)
        self.request = request
        self.checkpoint = checkpoint


@workflow.defn(name=JOB_WORKFLOW)
class JobWorkflow:
    """Runs one job to a terminal stage."""

    def __init__(self) -> None:
        self._inp: JobWorkflowInput | None = None
        self._stage = Stage.QUEUED
        self._wait_reason: WaitReason | None = None
        self._reason: str | None = None
        self._epoch = 0
        self._factory_id: str | None = None
        self._woken = False
        self._lock_granted = False
        self._started_epochs: set[int] = set()
        self._cost = 0.0
        self._exit_code: int | None = None
        # Serialises transitions between the main coroutine and async signal handlers.
        self._transition_lock = asyncio.Lock()
        # A parent's children: their specs, stages and running child workflows.
        self._children: list[ChildSpec] = []
        self._child_stages: dict[str, Stage | None] = {}
        self._child_tasks: dict[str, asyncio.Task[Stage]] = {}
        self._child_handles: dict[str, ChildWorkflowHandle[Any, Any]] = {}
        self._children_open = False
        self._children_changed = False
        self._budget_admitted = False
        self._budget_asked = False
        self._preempt: PreemptRequest | None = None

    # --- handlers -----------------------------------------------------------------------------
    @workflow.signal(name=SIGNAL_WAKE)
    def wake(self, signal: WakeSignal) -> None:
        """Capacity may have freed: retry routing now instead of at the next re-check."""
        self._woken = True

    @workflow.signal(name=SIGNAL_LOCK_GRANTED)
    def lock_granted(self, grant: LockGranted) -> None:
        """The LockWorkflow gave us the lock."""
        self._lock_granted = True

    @workflow.signal(name=SIGNAL_AGENT_STARTED)
    async def agent_started(self, started: AgentStarted) -> None:
        """The factory started the agent: `running` if it is the current lease, else fence it."""
        if started.epoch < self._epoch:
            await self._local(
                FENCE_REPORT,
                FenceInput(
                    job_id=self._job.job_id,
                    product_id=self._job.product_id,
                    epoch=started.epoch,
                    actor=f"factory:{started.factory_id}",
                    what="agent started",
                    at=workflow.now(),
                ),
            )
            return
        self._started_epochs.add(started.epoch)
        if started.epoch == self._epoch and self._stage == Stage.DISPATCHED:
            await self._transition(
                Stage.RUNNING, reason=f"agent started on {started.factory_id}", epoch=started.epoch
            )

    @workflow.signal(name=SIGNAL_PREEMPT)
    def preempt(self, req: PreemptRequest) -> None:
        """A more urgent job takes this one's slot: stop the agent, keep its checkpoint,
        requeue under the next lease epoch (ignored when no attempt is in flight)."""
        if self._stage in (Stage.DISPATCHED, Stage.RUNNING) and self._preempt is None:
            self._preempt = req

    @workflow.signal(name=SIGNAL_BUDGET_ADMITTED)
    def budget_admitted(self, result: AdmissionResult) -> None:
        """The product's controller admitted the waiting attempt (resume, raise, reset)."""
        self._budget_admitted = True

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> JobStatus:
        """The workflow's own view of the job."""
        return JobStatus(
            job_id=self._inp.job_id if self._inp else "",
            stage=self._stage,
            wait_reason=self._wait_reason,
            reason=self._reason,
            lease_epoch=self._epoch,
            factory_id=self._factory_id,
        )

    @workflow.update(name=UPDATE_ADD_CHILDREN)
    def add_children(self, inp: AddChildren) -> int:
        """More children for an open parent (the API validated the whole DAG and wrote them)."""
        self._children.extend(inp.children)
        self._children_changed = True
        return len(self._children)

    @add_children.validator
    def _validate_add_children(self, inp: AddChildren) -> None:
        if not self._children_open:
            raise ApplicationError(
                "the parent is no longer waiting for children: it has finished them, or it "
                "has none (a job becomes a parent only when submitted with children)",
                non_retryable=True,
            )
        known = {c.id for c in self._children}
        if clash := [c.id for c in inp.children if c.id in known]:
            raise ApplicationError(f"duplicate child id {clash[0]!r}", non_retryable=True)

    # --- main ---------------------------------------------------------------------------------
    @property
    def _job(self) -> JobWorkflowInput:
        assert self._inp is not None
        return self._inp

    @workflow.run
    async def run(self, inp: JobWorkflowInput) -> JobWorkflowResult:
        self._inp = inp
        self._epoch = inp.lease_epoch
        lock_requested = False
        try:
            if inp.spec.children:
                if not await self._run_children():
                    return self._result()
                if not inp.spec.prompt.strip():
                    await self._transition(Stage.SUCCEEDED, reason=self._children_summary())
                    return self._result()
            if inp.spec.lock:
                lock_requested = True
                await self._acquire_lock(inp.spec.lock)
            await self._run_attempts()
        except asyncio.CancelledError:
            await _despite_cancel(lambda: self._cancel_unstarted_children("parent cancelled"))
            await _despite_cancel(lambda: self._transition(Stage.CANCELLED, reason="cancelled"))
            raise
        finally:
            if lock_requested and inp.spec.lock:
                lock = inp.spec.lock
                await _despite_cancel(lambda: self._release_lock(lock))
            if self._budget_asked:
                await _despite_cancel(self._budget_done)
            await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result()

    def _result(self) -> JobWorkflowResult:
        return JobWorkflowResult(
            job_id=self._job.job_id,
            product_id=self._job.product_id,
            stage=self._stage,
            reason=self._reason,
            lease_epoch=self._epoch,
            factory_id=self._factory_id,
            exit_code=self._exit_code,
            cost_usd=self._cost,
        )

    # --- children (a DAG parent) --------------------------------------------------------------
    async def _run_children(self) -> bool:
        """Run the children in dependency order; True when the parent may go on.

        Each child is a full JobWorkflow (routed, locked, preemptible like any job), started
        as a child workflow once its dependencies are satisfied (gigafactory.dag). Parent
        close policy REQUEST_CANCEL: a parent that ends early (cancelled, terminated, timed
        out) asks its open children to cancel, so nothing runs on for a parent that is gone.
        """
        spec = self._job.spec
        policy = FailurePolicy(spec.failure_policy, spec.cancel_running_on_failure)
        self._children = list(spec.children)
        self._children_open = True
        try:
            while True:
                self._children_changed = False
                step = plan(self._children, self._child_stages, policy)
                for child_id, why in step.block.items():
                    await self._child_transition(child_id, Stage.BLOCKED, why)
                for child_id in step.cancel:
                    self._child_handles[child_id].cancel()
                for child_id in step.start:
                    await self._start_child(child_id)
                done, total = step.progress
                if step.done:
                    break
                reason = f"children: {done} of {total} done"
                if self._stage != Stage.WAITING or self._reason != reason:
                    await self._transition(
                        Stage.WAITING, wait_reason=WaitReason.DEPS, reason=reason
                    )
                await workflow.wait_condition(
                    lambda: (
                        self._children_changed or any(t.done() for t in self._child_tasks.values())
                    )
                )
                for child_id, task in list(self._child_tasks.items()):
                    if task.done():
                        self._child_stages[child_id] = task.result()
                        del self._child_tasks[child_id]
        finally:
            self._children_open = False
        outcome, failure = parent_outcome(self._children, self._child_stages, policy)
        if outcome != Stage.SUCCEEDED:
            await self._transition(outcome, reason=failure)
            return False
        await self._transition(Stage.QUEUED, reason=self._children_summary(), kind="children")
        return True

    def _children_summary(self) -> str:
        """`children done: 3 succeeded, 1 failed (handled), 1 blocked` in stage order."""
        counts: dict[str, int] = {}
        for child in self._children:
            stage = self._child_stages.get(child.id)
            name = stage.value if stage else "not started"
            counts[name] = counts.get(name, 0) + 1
        parts = [f"{n} {name}" for name, n in counts.items()]
        return "children done: " + ", ".join(parts)

    async def _start_child(self, child_id: str) -> None:
        job = self._job
        child = next(c for c in self._children if c.id == child_id)
        job_id = child_job_id(job.job_id, child_id)
        handle = await workflow.start_child_workflow(
            JOB_WORKFLOW,
            JobWorkflowInput(
                job_id=job_id,
                product_id=job.product_id,
                spec=child.spec,
                timing=job.timing,
                parent_workflow_id=workflow.info().workflow_id,
            ),  # fmt: skip
            id=job_workflow_id(job.product_id, job_id),
            task_queue=workflow.info().task_queue,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=initial_search_attributes(child.spec),
            static_summary=workflow_summary(job_id, child.spec),
            static_details=workflow_details(job_id, child.spec),
            priority=temporal_priority(child.spec),
            result_type=JobWorkflowResult,
        )
        self._child_handles[child_id] = handle
        self._child_stages[child_id] = Stage.QUEUED
        self._child_tasks[child_id] = asyncio.create_task(self._child_end(handle))

    @staticmethod
    async def _child_end(handle: ChildWorkflowHandle[Any, Any]) -> Stage:
        """The child's terminal stage (a cancelled or crashed child workflow included)."""
        try:
            result: JobWorkflowResult = await handle
        except ChildWorkflowError as err:
            return Stage.CANCELLED if isinstance(err.cause, CancelledError) else Stage.FAILED
        return Stage.FAILED if result.stage not in _FINAL_OR_SHIPPED else result.stage

    async def _cancel_unstarted_children(self, why: str) -> None:
        for child in self._children:
            if self._child_stages.get(child.id) is None:
                await self._child_transition(child.id, Stage.CANCELLED, why)

    async def _child_transition(self, child_id: str, stage: Stage, why: str) -> None:
        """Record a stage for a child that never started (its workflow would otherwise)."""
        job = self._job
        await self._local(
            RECORD_TRANSITION,
            TransitionInput(
                job_id=child_job_id(job.job_id, child_id),
                product_id=job.product_id,
                event_id=str(workflow.uuid4()),
                at=workflow.now(),
                stage=stage,
                reason=why,
            ),
        )
        self._child_stages[child_id] = stage

    async def _run_attempts(self) -> None:
        lost = 0
        avoid: list[str] = []
        checkpoint = self._job.checkpoint
        while True:
            if self._job.timing.budgets:
                await self._admit()
            route = await self._place(avoid)
            assert route.factory_id is not None
            try:
                await self._attempt(route, checkpoint)
                return
            except _Preempted as err:
                self._preempt = None
                checkpoint = err.checkpoint or checkpoint
                avoid = []
                await self._transition(
                    Stage.QUEUED,
                    reason=err.request.reason,
                    kind="preempted",
                    data={
                        "preemptor": err.request.preemptor_job_id,
                        "epoch": self._epoch,
                        "checkpoint": checkpoint,
                    },
                )
            except _Lost as err:
                lost += 1
                avoid = [err.factory_id]
                if lost >= self._job.timing.max_lost_attempts:
                    await self._transition(
                        Stage.FAILED, reason=f"gave up after {lost} lost attempts: {err.reason}"
                    )
                    return
                await self._transition(
                    Stage.QUEUED, reason=f"requeued: {err.reason}", kind="requeued"
                )

    async def _place(self, avoid: list[str]) -> RouteResult:
        """Route until a slot is reserved, waiting (woken or on a timer) while nothing fits."""
        spec = self._job.spec
        first = True
        waiting_since: datetime | None = None
        while True:
            route: RouteResult = await self._local(
                ROUTE_JOB,
                RouteInput(
                    job_id=self._job.job_id,
                    product_id=self._job.product_id,
                    epoch=self._epoch + 1,
                    engine=spec.engine,
                    capabilities=spec.capabilities,
                    priority=spec.priority,
                    waiting_since=waiting_since,
                    # The factory that just lost the job is tried last, once.
                    avoid_factories=avoid if first else [],
                    preferred_labels=spec.preferred_labels,
                    previous_factory_id=self._factory_id,
                    weights_override=spec.routing_weights,
                    preemption=self._job.timing.preemption,
                ),
                result_type=RouteResult,
            )
            first = False
            if route.factory_id is not None:
                return route
            if waiting_since is None:
                waiting_since = workflow.now()
            reason = route.waiting_reason or "no factory has a free slot"
            if self._stage != Stage.WAITING or self._reason != reason:
                await self._transition(
                    Stage.WAITING,
                    wait_reason=WaitReason.CAPACITY,
                    reason=reason,
                    data=_route_data(route),
                )
            self._woken = False
            try:
                await workflow.wait_condition(
                    lambda: self._woken,
                    timeout=timedelta(seconds=self._job.timing.capacity_recheck_s),
                )
            except builtins.TimeoutError:
                pass

    async def _attempt(self, route: RouteResult, checkpoint: dict[str, Any] | None) -> None:
        """Run the agent once on the routed factory under a new lease epoch."""
        job, timing = self._job, self._job.timing
        factory_id = route.factory_id
        assert factory_id is not None
        epoch = self._epoch + 1
        started_at = workflow.now()
        async with self._transition_lock:
            self._epoch = epoch
            self._factory_id = factory_id
            await self._local(
                BEGIN_ATTEMPT,
                BeginAttemptInput(
                    job_id=job.job_id,
                    product_id=job.product_id,
                    epoch=epoch,
                    factory_id=factory_id,
                    engine=job.spec.engine,
                    at=started_at,
                    event_id=str(workflow.uuid4()),
                    data={"score": route.score, **_route_data(route)},
                ),
            )
            self._set_stage(Stage.DISPATCHED, None, f"dispatched to {factory_id}")

        handle = workflow.start_activity(
            RUN_AGENT,
            RunAgentInput(
                job_id=job.job_id,
                product_id=job.product_id,
                epoch=epoch,
                spec=job.spec,
                checkpoint=checkpoint,
            ),
            result_type=RunAgentResult,
            task_queue=factory_task_queue(factory_id),
            start_to_close_timeout=agent_start_to_close(job.spec.timeout_s, timing.stop_grace_s),
            # A preemptor's slot frees once its victims stop (their grace period).
            schedule_to_start_timeout=timedelta(
                seconds=timing.dispatch_timeout_s
                + (2 * timing.stop_grace_s + 30 if route.evicted else 0)
            ),
            heartbeat_timeout=timedelta(seconds=timing.lease_heartbeat_timeout_s),
            retry_policy=AGENT_RETRY,
            # Free the slot only once the agent has really stopped.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            await workflow.wait_condition(lambda: handle.done() or self._preempt is not None)
            if not handle.done() and self._preempt is not None:
                request = self._preempt
                handle.cancel()
                result = await self._drain(handle, started_at)
                await self._finish(
                    factory_id, epoch, started_at, result, override=RunOutcome.PREEMPTED
                )
                raise _Preempted(request, result.checkpoint)
            result = await handle
        except asyncio.CancelledError:
            handle.cancel()
            result = await self._drain(handle, started_at)
            await _despite_cancel(
                lambda: self._finish(
                    factory_id, epoch, started_at, result, override=RunOutcome.CANCELLED
                )
            )
            raise
        except ActivityError as err:
            result, lost_reason = self._classify_failure(err, factory_id, started_at)
            await self._finish(factory_id, epoch, started_at, result)
            if lost_reason is not None:
                raise _Lost(factory_id, lost_reason) from err
            await self._transition(Stage.FAILED, reason=result.reason)
            return

        await self._finish(factory_id, epoch, started_at, result)
        if result.outcome == RunOutcome.SUCCEEDED:
            await self._transition(Stage.SUCCEEDED, reason="agent succeeded")
        elif result.outcome == RunOutcome.CANCELLED:
            # The agent was stopped on our behalf (workflow cancel raced its completion).
            raise asyncio.CancelledError()
        else:
            await self._transition(Stage.FAILED, reason=result.reason or str(result.outcome))

    async def _drain(self, handle: Any, started_at: Any) -> RunAgentResult:
        """Wait for a cancelled agent to stop; whatever it returns or raises is its result."""
        try:
            result: RunAgentResult = await handle
            return result
        except (ActivityError, asyncio.CancelledError) as err:
            return RunAgentResult(
                outcome=RunOutcome.CANCELLED,
                reason=f"cancelled: {err}",
                started_at=started_at,
                finished_at=workflow.now(),
            )

    def _classify_failure(
        self, err: ActivityError, factory_id: str, started_at: Any
    ) -> tuple[RunAgentResult, str | None]:
        """Turn an activity failure into a run result, and a requeue reason if it was lost."""
        cause = err.cause
        now = workflow.now()
        timing = self._job.timing
        if isinstance(cause, TimeoutError):
            if cause.type == TimeoutType.HEARTBEAT:
                reason = (
                    f"factory {factory_id} stopped heartbeating "
                    f"(lease of {timing.lease_heartbeat_timeout_s:g}s expired)"
                )
                return self._lost_result(reason, started_at, now), reason
            if cause.type == TimeoutType.SCHEDULE_TO_START:
                reason = (
                    f"factory {factory_id} did not pick the job up within "
                    f"{timing.dispatch_timeout_s:g}s"
                )
                return self._lost_result(reason, started_at, now), reason
            reason = f"timed out after {self._job.spec.timeout_s:g}s"
            return (
                RunAgentResult(
                    outcome=RunOutcome.TIMED_OUT,
                    reason=reason,
                    started_at=started_at,
                    finished_at=now,
                ),
                None,
            )
        if isinstance(cause, ApplicationError) and cause.type == "Fenced":
            reason = f"factory {factory_id} reported a stale lease: {cause.message}"
            return self._lost_result(reason, started_at, now), reason
        if isinstance(cause, CancelledError):
            reason = f"run on {factory_id} was cancelled by the factory"
            return self._lost_result(reason, started_at, now), reason
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        return (
            RunAgentResult(
                outcome=RunOutcome.FAILED,
                reason=f"run_agent failed on {factory_id}: {message}",
                started_at=started_at,
                finished_at=now,
            ),
            None,
        )

    @staticmethod
    def _lost_result(reason: str, started_at: Any, now: Any) -> RunAgentResult:
        return RunAgentResult(
            outcome=RunOutcome.LOST, reason=reason, started_at=started_at, finished_at=now
        )

    async def _finish(
        self,
        factory_id: str,
        epoch: int,
        started_at: Any,
        result: RunAgentResult,
        override: RunOutcome | None = None,
    ) -> None:
        """Record the run, free its slot and wake whoever waits for one."""
        job = self._job
        outcome = override or result.outcome
        self._cost += result.cost_usd
        self._exit_code = result.exit_code
        await self._local(
            FINISH_RUN,
            FinishRunInput(
                job_id=job.job_id,
                product_id=job.product_id,
                epoch=epoch,
                factory_id=factory_id,
                engine=job.spec.engine,
                started_at=result.started_at or started_at,
                finished_at=result.finished_at,
                outcome=outcome,
                exit_code=result.exit_code,
                cost_usd=result.cost_usd,
                cost_estimated=result.cost_estimated,
                reason=result.reason,
                checkpoint=result.checkpoint,
                **result.model_dump(include=RUN_DETAIL_FIELDS),
            ),
        )
        await self._report_spend(epoch, result)

    # --- budgets ------------------------------------------------------------------------------
    async def _admit(self) -> None:
        """Wait until the product's controller admits this attempt (FLEET_BUDGETS on)."""
        job = self._job
        self._budget_admitted = False  # the signal may come before the activity returns
        self._budget_asked = True
        result: AdmissionResult = await self._local(
            BUDGET_ADMIT,
            BudgetAdmitInput(
                product_id=job.product_id,
                job_id=job.job_id,
                workflow_id=workflow.info().workflow_id,
                priority=job.spec.priority,
                estimate_usd=job.spec.estimated_cost_usd,
                requested_at=workflow.now(),
            ),
            result_type=AdmissionResult,
        )
        if result.admitted:
            return
        await self._transition(Stage.WAITING, wait_reason=WaitReason.BUDGET, reason=result.reason)
        await workflow.wait_condition(lambda: self._budget_admitted)
        await self._transition(Stage.QUEUED, reason="admitted by the budget", kind="budget")

    async def _report_spend(self, epoch: int, result: RunAgentResult) -> None:
        """Tell the controller what the run cost (once per run id; it ignores duplicates)."""
        if not self._budget_asked:
            return
        job = self._job
        entry = LedgerEntry(
            run_id=f"{job.job_id}.{epoch}",
            job_id=job.job_id,
            usd=result.cost_usd,
            estimated=result.cost_estimated,
            at=result.finished_at or workflow.now(),
        )
        try:
            await workflow.get_external_workflow_handle(product_workflow_id(job.product_id)).signal(
                SIGNAL_RECORD_SPEND, entry
            )
        except Exception as err:  # noqa: BLE001 - the store's ledger has it regardless
            workflow.logger.warning("spend of %s not reported: %s", entry.run_id, err)

    async def _budget_done(self) -> None:
        job = self._job
        try:
            await workflow.get_external_workflow_handle(product_workflow_id(job.product_id)).signal(
                SIGNAL_JOB_FINISHED, JobFinished(job_id=job.job_id)
            )
        except Exception as err:  # noqa: BLE001 - a controller that is gone holds nothing
            workflow.logger.info("job_finished for %s: %s", job.job_id, err)

    # --- locks --------------------------------------------------------------------------------
    async def _acquire_lock(self, lock: str) -> None:
        await self._transition(
            Stage.WAITING, wait_reason=WaitReason.LOCK, reason=f"waiting for lock {lock}"
        )
        await self._local(
            REQUEST_LOCK,
            RequestLockInput(
                lock=lock,
                request=LockRequest(
                    holder_workflow_id=workflow.info().workflow_id,
                    priority=self._job.spec.priority,
                ),
            ),
        )
        await workflow.wait_condition(lambda: self._lock_granted)
        await self._transition(Stage.QUEUED, reason=f"holds lock {lock}", kind="lock")

    async def _release_lock(self, lock: str) -> None:
        try:
            await workflow.get_external_workflow_handle(lock_workflow_id(lock)).signal(
                SIGNAL_LOCK_RELEASE,
                LockRelease(holder_workflow_id=workflow.info().workflow_id),
            )
        except Exception as err:  # noqa: BLE001 - a closed lock workflow holds nothing
            workflow.logger.info("release of lock %s: %s", lock, err)

    # --- bookkeeping --------------------------------------------------------------------------
    async def _transition(
        self,
        stage: Stage,
        *,
        reason: str | None,
        wait_reason: WaitReason | None = None,
        epoch: int | None = None,
        kind: str = "stage",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Move the job to `stage`: projection + event (store), search attributes, UI details."""
        async with self._transition_lock:
            job = self._job
            await self._local(
                RECORD_TRANSITION,
                TransitionInput(
                    job_id=job.job_id,
                    product_id=job.product_id,
                    event_id=str(workflow.uuid4()),
                    at=workflow.now(),
                    stage=stage,
                    wait_reason=wait_reason,
                    reason=reason,
                    epoch=epoch if epoch is not None else (self._epoch or None),
                    factory_id=self._factory_id,
                    cost_usd=self._cost if stage in _FINAL else None,
                    exit_code=self._exit_code if stage in _FINAL else None,
                    kind=kind,
                    data=data or {},
                ),
            )
            self._set_stage(stage, wait_reason, reason)

    def _set_stage(self, stage: Stage, wait_reason: WaitReason | None, reason: str | None) -> None:
        self._stage = stage
        self._wait_reason = wait_reason
        self._reason = reason
        label = f"{stage.value}({wait_reason.value})" if wait_reason else stage.value
        workflow.upsert_search_attributes(
            [
                FLEET_STAGE.value_set(stage.value),
                FLEET_FACTORY_ID.value_set(self._factory_id or ""),
            ]
        )
        workflow.set_current_details(
            f"**{label}** — {reason or ''}\n\n"
            f"lease epoch {self._epoch}, factory {self._factory_id or '-'}, "
            f"cost ${self._cost:.4f}"
        )

    async def _local(self, activity: str, arg: Any, result_type: type | None = None) -> Any:
        try:
            return await workflow.execute_local_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=CONTROL_START_TO_CLOSE,
                schedule_to_close_timeout=CONTROL_SCHEDULE_TO_CLOSE,
                retry_policy=CONTROL_RETRY,
            )
        except ActivityError as err:
            # A workflow cancel that lands while a local activity is in flight surfaces as
            # "Local Activity cancelled", not as CancelledError: make it one, so the
            # cancellation path (record `cancelled`, free the lock) runs.
            if isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError() from err
            raise


async def _despite_cancel(step: Callable[[], Awaitable[None]], attempts: int = 3) -> None:
    """Run a clean-up step after the workflow was cancelled, even if a cancellation reaches
    the step too (a second cancel request, or one that raced the first step's activity)."""
    for attempt in range(attempts):
        try:
            await step()
            return
        except asyncio.CancelledError:
            if attempt == attempts - 1:
                raise


_FINAL = frozenset({Stage.SUCCEEDED, Stage.FAILED, Stage.CANCELLED, Stage.BLOCKED})
_FINAL_OR_SHIPPED = _FINAL | {Stage.SHIPPED}


def _route_data(route: RouteResult) -> dict[str, Any]:
    """What a routing event records: every candidate's breakdown, the weights, the shadow."""
    data: dict[str, Any] = {
        "factoryId": route.factory_id,
        "candidates": [c.wire() for c in route.candidates],
        "weights": route.weights,
    }
    if route.shadow is not None:
        data["shadow"] = route.shadow
    if route.preemption is not None:
        data["preemption"] = route.preemption
    return data
