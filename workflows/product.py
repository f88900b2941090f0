"""ProductControllerWorkflow: one product's budget, as an entity workflow.

One workflow per product (id `product-<productId>`). It owns the budget state of
`gigafactory.budgets` (ceiling, window, spent, reservations, the queue of jobs waiting for
budget) and applies its pure rules:

- update `admit(AdmissionRequest) -> AdmissionResult`: admitted now (the estimate is
  reserved), or queued with the reason and the queue position. The validator rejects a
  negative or non-finite estimate before anything is written to history.
- signals `record_spend(LedgerEntry)` (idempotent per run id), `job_finished(JobFinished)`,
  `pause(PauseRequest)`, `resume(ResumeRequest)`, `set_budget(BudgetConfig)` and
  `preempt(PreemptRequest)` (forwarded as signal `preempt` to the victim's workflow).
- query `state() -> BudgetState`.

Handlers only change the state (synchronously, so they never interleave); the main loop
sends `budget_admitted` to every job admitted from the queue, rolls the window when its
reset timer fires, refreshes the UI details and continues-as-new (all handlers finished
first, the state carried in the input) when Temporal suggests it, or once the history
reaches `continue_as_new_after_events` (`FLEET_BUDGET_CONTROLLER_MAX_EVENTS`): a busy
controller's history stays short enough to replay within its task timeout after a restart.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from gigafactory import budgets
    from gigafactory.budgets import (
        QUERY_BUDGET_STATE,
        SIGNAL_BUDGET_ADMITTED,
        SIGNAL_JOB_FINISHED,
        SIGNAL_PAUSE,
        SIGNAL_PREEMPT,
        SIGNAL_RECORD_SPEND,
        SIGNAL_RESUME,
        SIGNAL_SET_BUDGET,
        UPDATE_ADMIT,
        AdmissionRequest,
        AdmissionResult,
        BudgetConfig,
        BudgetState,
        JobFinished,
        LedgerEntry,
        PauseRequest,
        PreemptRequest,
        ProductControllerInput,
        ResumeRequest,
    )
    from gigafactory.contracts import PRODUCT_CONTROLLER_WORKFLOW

__all__ = ["ProductControllerWorkflow"]


@workflow.defn(name=PRODUCT_CONTROLLER_WORKFLOW)
class ProductControllerWorkflow:
    """Owns one product's budget: admission, spend ledger, pause/resume, window resets."""

    @workflow.init
    def __init__(self, inp: ProductControllerInput) -> None:
        # Built from the input before any handler runs, so a signal-with-start or an
        # update-with-start sees the carried state, never an empty one.
        self._state: BudgetState = inp.state or budgets.new_budget_state(
            inp.product_id, inp.config or BudgetConfig(), workflow.now()
        )
        self._changed = True

    # --- handlers -----------------------------------------------------------------------------
    @workflow.update(name=UPDATE_ADMIT)
    def admit(self, req: AdmissionRequest) -> AdmissionResult:
        """Admit the job now (its estimate reserved) or queue it until budget frees."""
        result = budgets.admit(self._state, req, workflow.now())
        self._changed = True
        return result

    @admit.validator
    def _validate_admit(self, req: AdmissionRequest) -> None:
        budgets.validate_request(req)

    @workflow.signal(name=SIGNAL_RECORD_SPEND)
    def record_spend(self, entry: LedgerEntry) -> None:
        """Count one run's spend (a duplicate run id is ignored)."""
        budgets.roll_window(self._state, workflow.now())
        alerted = self._state.soft_alerted
        if not budgets.record_spend(self._state, entry):
            workflow.logger.info(
                "product %s: run %s already counted", self._state.product_id, entry.run_id
            )
            return
        if self._state.soft_alerted and not alerted:
            workflow.logger.warning(
                "product %s: spent $%.2f, past %.0f%% of the $%.2f ceiling",
                self._state.product_id,
                self._state.spent_usd,
                self._state.config.soft_threshold * 100,
                self._state.config.ceiling_usd or 0.0,
            )
        self._settle()

    @workflow.signal(name=SIGNAL_JOB_FINISHED)
    def job_finished(self, done: JobFinished) -> None:
        """Release the job's reservation and its place in the queue."""
        if budgets.finish(self._state, done.job_id):
            self._settle()

    @workflow.signal(name=SIGNAL_PAUSE)
    def pause(self, req: PauseRequest) -> None:
        """Pause the product: nothing is admitted until resumed."""
        budgets.pause(self._state, req.reason)
        self._changed = True

    @workflow.signal(name=SIGNAL_RESUME)
    def resume(self, req: ResumeRequest) -> None:
        """Resume (refused while spent has reached the ceiling; the reason says so)."""
        budgets.roll_window(self._state, workflow.now())
        if not budgets.resume(self._state):
            workflow.logger.warning(
                "product %s: %s", self._state.product_id, self._state.reason_text
            )
        self._settle()

    @workflow.signal(name=SIGNAL_SET_BUDGET)
    def set_budget(self, config: BudgetConfig) -> None:
        """Replace the budget config; a ceiling raised above spent lifts a ceiling pause."""
        now = workflow.now()
        budgets.roll_window(self._state, now)
        budgets.set_budget(self._state, config, now)
        self._settle()

    @workflow.signal(name=SIGNAL_PREEMPT)
    async def preempt(self, req: PreemptRequest) -> None:
        """Forward a preemption to the victim's job workflow (gone already: nothing to do)."""
        try:
            await workflow.get_external_workflow_handle(req.victim_workflow_id).signal(
                SIGNAL_PREEMPT, req
            )
        except FailureError as err:
            workflow.logger.info(
                "product %s: cannot preempt %s: %s",
                self._state.product_id,
                req.victim_workflow_id,
                err,
            )

    @workflow.query(name=QUERY_BUDGET_STATE)
    def state(self) -> BudgetState:
        """The whole budget state."""
        return self._state

    # --- main ---------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: ProductControllerInput) -> None:
        can_after = inp.continue_as_new_after_events
        while True:
            if budgets.roll_window(self._state, workflow.now()):
                workflow.logger.info("product %s: new budget window", self._state.product_id)
                self._settle()
            if self._changed:
                self._changed = False
                self._show_details()
            if self._state.notify:
                await self._notify_admitted()
                continue
            if self._should_continue_as_new(can_after):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ProductControllerInput(
                        product_id=self._state.product_id,
                        state=self._state,
                        continue_as_new_after_events=can_after,
                    )
                )
            timeout: timedelta | None = None
            if self._state.resets_at is not None:
                timeout = self._state.resets_at - workflow.now()
                if timeout <= timedelta(0):
                    continue
            try:
                await workflow.wait_condition(
                    lambda: self._changed or self._should_continue_as_new(can_after),
                    timeout=timeout,
                )
            except TimeoutError:
                pass

    def _settle(self) -> None:
        """After a change: admit whatever in the queue fits now (the loop signals them)."""
        budgets.admit_waiting(self._state)
        self._changed = True

    async def _notify_admitted(self) -> None:
        """Signal `budget_admitted` to every job admitted from the queue, concurrently."""
        batch, self._state.notify = self._state.notify, []
        results = await asyncio.gather(
            *(self._signal_admitted(req) for req in batch), return_exceptions=True
        )
        for req, result in zip(batch, results, strict=True):
            if not isinstance(result, BaseException):
                continue
            if not isinstance(result, FailureError):
                raise result  # a bug or a cancellation, not a missing job: fail the task
            # The job workflow is gone: its reservation would never be released.
            workflow.logger.info(
                "product %s: job %s (%s) not signalled: %s",
                self._state.product_id,
                req.job_id,
                req.workflow_id,
                result,
            )
            budgets.finish(self._state, req.job_id)
            self._settle()

    async def _signal_admitted(self, req: AdmissionRequest) -> bool:
        await workflow.get_external_workflow_handle(req.workflow_id).signal(
            SIGNAL_BUDGET_ADMITTED,
            AdmissionResult(
                admitted=True, reason="admitted from the budget queue", job_id=req.job_id
            ),
        )
        return True

    def _should_continue_as_new(self, after_events: int | None) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        return after_events is not None and info.get_current_history_length() >= after_events

    def _show_details(self) -> None:
        """The budget at a glance in the Temporal UI."""
        s = self._state
        ceiling = s.config.ceiling_usd
        remaining = budgets.remaining_usd(s)
        status = "**active**" if s.status == "active" else f"**paused** ({s.paused_reason})"
        lines = [
            f"### Budget of product `{s.product_id}`: {status}",
            "",
            "| spent | ceiling | reserved | remaining | waiting |",
            "|---|---|---|---|---|",
            f"| ${s.spent_usd:,.2f} | {_usd(ceiling)} | ${s.reserved_usd:,.2f} "
            f"| {_usd(remaining)} | {len(s.waiting)} |",
            "",
        ]
        if s.reason_text:
            lines.append(f"Reason: {s.reason_text}")
        if s.resets_at is not None:
            lines.append(f"Window `{s.config.window}` resets at {s.resets_at:%Y-%m-%d %H:%M} UTC.")
        else:
            lines.append("Window `none`: never resets.")
        if s.soft_alerted and ceiling is not None:
            lines.append(f"Past the soft threshold ({s.config.soft_threshold:.0%} of the ceiling).")
        workflow.set_current_details("\n".join(lines))


def _usd(value: float | None) -> str:
    return "unlimited" if value is None else f"${value:,.2f}"
