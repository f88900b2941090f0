"""LockWorkflow: one named mutex, so two jobs with the same lock never run at once.

One workflow per lock name (id `lock-<name>`), started by signal-with-start from the first
job that asks. It grants the lock to one holder at a time (highest priority first, then
first come), checks on a timer that the holder's workflow is still open (a terminated job
must not hold a lock forever), exits when idle and continues-as-new when its history grows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from gigafactory.contracts import (
        LOCK_WORKFLOW,
        QUERY_LOCK_STATE,
        SIGNAL_LOCK_ACQUIRE,
        SIGNAL_LOCK_GRANTED,
        SIGNAL_LOCK_RELEASE,
        WORKFLOW_IS_OPEN,
        LockGranted,
        LockRelease,
        LockRequest,
        LockState,
        LockWorkflowInput,
        WorkflowIsOpenInput,
    )

from workflows.job.record import call_local

__all__ = ["LockWorkflow"]


@workflow.defn(name=LOCK_WORKFLOW)
class LockWorkflow:
    """Grants one named lock to one job workflow at a time."""

    def __init__(self) -> None:
        self._lock = ""
        self._holder: str | None = None
        self._waiting: list[LockRequest] = []
        self._changed = False
        self._regrant = False

    @workflow.signal(name=SIGNAL_LOCK_ACQUIRE)
    def acquire(self, request: LockRequest) -> None:
        """Queue a request (idempotent: a holder or queued job asking again is a no-op)."""
        holder = request.holder_workflow_id
        if holder == self._holder:
            self._changed = True  # re-send the grant: the first one may have been lost
            self._regrant = True
            return
        if all(w.holder_workflow_id != holder for w in self._waiting):
            self._waiting.append(request)
            self._changed = True

    @workflow.signal(name=SIGNAL_LOCK_RELEASE)
    def release(self, release: LockRelease) -> None:
        """Give the lock back, or leave the queue."""
        if release.holder_workflow_id == self._holder:
            self._holder = None
        self._waiting = [
            w for w in self._waiting if w.holder_workflow_id != release.holder_workflow_id
        ]
        self._changed = True

    @workflow.query(name=QUERY_LOCK_STATE)
    def state(self) -> LockState:
        """Who holds the lock and who waits."""
        return LockState(
            lock=self._lock,
            holder=self._holder,
            waiting=[w.holder_workflow_id for w in self._waiting],
        )

    @workflow.run
    async def run(self, inp: LockWorkflowInput) -> None:
        self._lock = inp.lock
        if inp.holder is not None:
            self._holder = inp.holder
        # Requests carried over continue-as-new come before ones signalled since.
        carried = [w for w in inp.waiting if w.holder_workflow_id != self._holder]
        queued = {w.holder_workflow_id for w in carried}
        self._waiting = carried + [w for w in self._waiting if w.holder_workflow_id not in queued]

        while True:
            if self._holder is None and self._waiting:
                await self._grant_next()
                continue
            if self._regrant and self._holder is not None:
                self._regrant = False
                await self._send_grant(self._holder)
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    LockWorkflowInput(
                        lock=self._lock,
                        holder=self._holder,
                        waiting=self._waiting,
                        check_holder_s=inp.check_holder_s,
                        idle_exit_s=inp.idle_exit_s,
                    )
                )
            self._changed = False
            timeout = inp.check_holder_s if self._holder else inp.idle_exit_s
            try:
                await workflow.wait_condition(
                    lambda: self._changed, timeout=timedelta(seconds=timeout)
                )
            except TimeoutError:
                if self._holder is None and not self._waiting:
                    # Idle: finish. A request racing with this completion makes the server
                    # reject the completion and replay with the new signal, so none is lost.
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return
                if self._holder is not None and not await self._holder_is_open(self._holder):
                    workflow.logger.warning(
                        "lock %s: holder %s is closed; releasing", self._lock, self._holder
                    )
                    self._holder = None

    async def _grant_next(self) -> None:
        # Highest priority first; the sort is stable, so first come first served within one.
        self._waiting.sort(key=lambda w: -w.priority.rank)
        request = self._waiting.pop(0)
        self._holder = request.holder_workflow_id
        if not await self._send_grant(request.holder_workflow_id):
            self._holder = None

    async def _send_grant(self, holder: str) -> bool:
        try:
            await workflow.get_external_workflow_handle(holder).signal(
                SIGNAL_LOCK_GRANTED, LockGranted(lock=self._lock)
            )
            return True
        except FailureError as err:
            # The holder closed before it got the lock: skip it.
            workflow.logger.info("lock %s: cannot grant to %s: %s", self._lock, holder, err)
            return False

    async def _holder_is_open(self, holder: str) -> bool:
        return await call_local(WORKFLOW_IS_OPEN, WorkflowIsOpenInput(workflow_id=holder))
