"""Control-plane activities: the JobWorkflow's hands on the store and on Temporal.

They run on the control-plane worker, next to the workflows, mostly as local activities.
Each is idempotent (deterministic ids, compare-and-set), because Temporal retries them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from gigafactory.budgets import (
    SIGNAL_PREEMPT,
    UPDATE_ADMIT,
    AdmissionRequest,
    AdmissionResult,
    PreemptRequest,
    window_start,
)
from gigafactory.contracts import (
    BEGIN_ATTEMPT,
    BUDGET_ADMIT,
    CONTROL_TASK_QUEUE,
    FENCE_REPORT,
    FINISH_RUN,
    LOCK_WORKFLOW,
    RECORD_TRANSITION,
    REQUEST_LOCK,
    ROUTE_JOB,
    RUN_DETAIL_FIELDS,
    SIGNAL_LOCK_ACQUIRE,
    WORKFLOW_IS_OPEN,
    BeginAttemptInput,
    BudgetAdmitInput,
    FenceInput,
    FinishRunInput,
    LockWorkflowInput,
    RequestLockInput,
    RouteInput,
    RouteResult,
    TransitionInput,
    WorkflowIsOpenInput,
    lock_workflow_id,
)
from gigafactory.controller_client import controller_start, signal_controller, stored_config
from gigafactory.fleet_view import candidate_wire, factory_view, plan_wire, running_jobs
from gigafactory.models import (
    TERMINAL_STAGES,
    Event,
    Factory,
    Job,
    Run,
    SlotReservation,
    SlotTable,
    SpendRecord,
    Stage,
    WaitReason,
)
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore, StaleEpoch
from gigafactory.wake import wake_waiting_jobs
from routing import (
    Decision,
    FactoryView,
    FleetWeights,
    JobRequest,
    PreemptionPlan,
    PreemptionPolicy,
    RoutingContext,
    WeightsError,
    rank_jobs,
    resolve_weights,
    select_factory,
    select_with_preemption,
)

__all__ = ["ControlActivities"]


logger = logging.getLogger(__name__)

# A reservation younger than this is never reaped: its job may be between routing and
# recording its attempt.
REAP_AFTER = timedelta(seconds=30)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ControlActivities:
    """Activities of the control-plane worker; built once with the store and the client."""

    def __init__(
        self,
        store: FleetStore,
        client: Client,
        *,
        unhealthy_after_s: float = 20.0,
        weights: FleetWeights | None = None,
        shadow_weights: FleetWeights | None = None,
        capacity_recheck_s: float = 15.0,
        preemption_policy: PreemptionPolicy | None = None,
        task_queue: str = CONTROL_TASK_QUEUE,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.client = client
        self.unhealthy_after_s = unhealthy_after_s
        self.weights = weights or FleetWeights()
        self.shadow_weights = shadow_weights
        # A waiting job re-routes at least this often; one silent for 3x as long no longer
        # competes for slots (its workflow is gone or stuck).
        self.competitor_ttl = timedelta(seconds=3 * capacity_recheck_s)
        self.preemption_policy = preemption_policy or PreemptionPolicy()
        self.task_queue = task_queue
        self.clock = clock
        # Reaping checks every reservation against the store and Temporal; on a full fleet
        # every failed route would pay that, so it runs at most once per REAP_AFTER.
        self._last_reap: datetime | None = None

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [
            self.route_job,
            self.record_transition,
            self.begin_attempt,
            self.finish_run,
            self.request_lock,
            self.workflow_is_open,
            self.fence_report,
            self.budget_admit,
        ]

    # --- routing ------------------------------------------------------------------------------
    @activity.defn(name=ROUTE_JOB)
    async def route_job(self, inp: RouteInput) -> RouteResult:
        """Score the fleet for one job and reserve a slot on the best factory that has one."""
        now = self.clock()
        factories = {f.id: f for f in await self.store.list_factories()}
        tables = {t.factory_id: t for t in await self.store.list_slot_tables()}
        views = [factory_view(f, tables.get(f.id), inp.job_id) for f in factories.values()]
        request = JobRequest(
            job_id=inp.job_id,
            engine=inp.engine,
            capabilities=frozenset(inp.capabilities),
            priority=inp.priority.value,
            waiting_since=inp.waiting_since,
            preferred_labels=frozenset(inp.preferred_labels),
            previous_factory_id=inp.previous_factory_id,
        )
        ctx = RoutingContext(now=now, unhealthy_after_s=self.unhealthy_after_s)
        weights = await self._weights(inp)
        decision = select_factory(request, views, ctx, weights)
        candidates = [candidate_wire(c) for c in decision.candidates]
        shadow = self._shadow(request, views, ctx, decision)

        eligible = [c.factory_id for c in candidates if c.eligible]
        ordered = [f for f in eligible if f not in inp.avoid_factories] + [
            f for f in eligible if f in inp.avoid_factories
        ]
        reservation = SlotReservation(
            job_id=inp.job_id,
            product_id=inp.product_id,
            epoch=inp.epoch,
            priority=inp.priority,
            reserved_at=now,
        )
        competitors = await self._competitors(inp, now) if ordered else []
        me = replace(request, waiting_since=inp.waiting_since or now)
        held: list[str] = []
        by_id = {v.id: v for v in views}
        for factory_id in ordered:
            view = by_id[factory_id]
            if competitors:
                # A freed slot goes to the best waiting job, not the first to ask (select_job).
                ranked = [c.job_id for c in rank_jobs([*competitors, me], view, ctx, weights)]
                if inp.job_id in ranked and ranked.index(inp.job_id) >= view.free:
                    held.append(factory_id)
                    continue
            if await self.store.reserve_slot(factory_id, factories[factory_id].slots, reservation):
                score = next(c.score for c in candidates if c.factory_id == factory_id)
                return RouteResult(
                    factory_id=factory_id,
                    score=score,
                    candidates=candidates,
                    weights=weights.as_dict(),
                    shadow=shadow,
                )

        # Nothing free: drop reservations left behind by jobs that ended without freeing
        # them (a terminated workflow), then try once more.
        if await self._reap(factories, tables, now, inp.job_id):
            return await self.route_job(inp)
        if inp.preemption and not held:
            evicting = await self._preempt(inp, request, views, tables, ctx, weights, reservation)
            if evicting is not None:
                return RouteResult(
                    factory_id=evicting[0],
                    candidates=candidates,
                    weights=weights.as_dict(),
                    shadow=shadow,
                    evicted=list(evicting[1].evict),
                    preemption=plan_wire(evicting[1]),
                )
        await self._mark_routed(inp, now)
        reason = decision.reason or (
            f"all factories offering engine {inp.engine} are full" if eligible else None
        )
        if held and not decision.reason:
            reason = f"free slots on {', '.join(held)} go to higher-ranked waiting jobs first"
        return RouteResult(
            candidates=candidates,
            waiting_reason=reason or "no factory has a free slot",
            weights=weights.as_dict(),
            shadow=shadow,
        )

    async def _preempt(
        self,
        inp: RouteInput,
        request: JobRequest,
        views: list[FactoryView],
        tables: dict[str, SlotTable],
        ctx: RoutingContext,
        weights: FleetWeights,
        reservation: SlotReservation,
    ) -> tuple[str, PreemptionPlan] | None:
        """Evict strictly lower-priority jobs when nothing fits (FLEET_PREEMPTION on).

        The slot is reserved for this job at once (over capacity until the victims stop),
        and each victim's product controller is told to preempt it.
        """
        running = running_jobs(tables, exclude=inp.job_id)
        plan = select_with_preemption(request, running, views, ctx, weights, self.preemption_policy)
        if plan is None:
            return None
        victims = {r.job_id: r for r in tables[plan.factory_id].reservations}
        slots = next(v.slots for v in views if v.id == plan.factory_id)
        if not await self.store.reserve_slot(
            plan.factory_id, slots, reservation, evicting=plan.evict
        ):
            return None  # the fleet changed meanwhile: the next routing round decides again
        for victim_id in plan.evict:
            victim = victims[victim_id]
            await self._signal_preempt(victim, inp, plan.reason)
        logger.info("job %s preempts %s on %s", inp.job_id, plan.evict, plan.factory_id)
        return plan.factory_id, plan

    async def _signal_preempt(self, victim: SlotReservation, inp: RouteInput, why: str) -> None:
        """Through the victim's product controller (started if missing), to its workflow."""
        try:
            job = await self.store.get_job(victim.job_id, victim.product_id)
        except NotFound:
            return
        await signal_controller(
            self.client,
            self.store,
            victim.product_id,
            self.task_queue,
            SIGNAL_PREEMPT,
            PreemptRequest(
                victim_job_id=victim.job_id,
                victim_workflow_id=job.workflow_id,
                preemptor_job_id=inp.job_id,
                reason=f"preempted by {inp.priority.value} job {inp.job_id}: {why}",
            ),
        )

    async def _competitors(self, inp: RouteInput, now: datetime) -> list[JobRequest]:
        """Jobs waiting for capacity that still re-route (other than this one)."""
        page = await self.store.list_jobs(stage=Stage.WAITING, limit=500)
        out = []
        for job in page.items:
            if (
                job.id == inp.job_id
                or job.wait_reason != WaitReason.CAPACITY
                or job.routed_at is None
                or now - job.routed_at > self.competitor_ttl
            ):
                continue
            out.append(
                JobRequest(
                    job_id=job.id,
                    engine=job.spec.engine,
                    capabilities=frozenset(job.spec.capabilities),
                    priority=job.spec.priority.value,
                    waiting_since=job.updated_at,
                    preferred_labels=frozenset(job.spec.preferred_labels),
                )
            )
        return out

    async def _mark_routed(self, inp: RouteInput, now: datetime) -> None:
        """Note that the job asked for a slot and got none (it competes for the next)."""

        def mark(job: Job) -> Job:
            job.routed_at = now
            return job

        try:
            await self.store.update_job(inp.job_id, inp.product_id, mark)
        except NotFound:
            pass

    async def _weights(self, inp: RouteInput) -> FleetWeights:
        """Defaults -> the product's override -> the job's own (both validated when set)."""
        stored = await self.store.get_routing_weights(inp.product_id)
        try:
            return resolve_weights(
                self.weights, stored.weights if stored else None, inp.weights_override
            )
        except WeightsError as err:
            # Both layers are validated when written; one that no longer validates (an older
            # term set) must not stop routing: use the defaults and say so.
            logger.warning("job %s: ignoring routing weights (%s)", inp.job_id, err)
            return self.weights

    def _shadow(
        self,
        request: JobRequest,
        views: list[FactoryView],
        ctx: RoutingContext,
        decision: Decision,
    ) -> dict[str, Any] | None:
        """What the shadow weight set would pick; recorded, never acted on."""
        if self.shadow_weights is None:
            return None
        other = select_factory(request, views, ctx, self.shadow_weights)
        return {
            "factoryId": other.factory_id,
            "score": other.score,
            "differs": other.factory_id != decision.factory_id,
            "weights": self.shadow_weights.as_dict(),
        }

    async def _reap(
        self,
        factories: dict[str, Factory],
        tables: dict[str, SlotTable],
        now: datetime,
        job_id: str,
    ) -> bool:
        if self._last_reap is not None and now - self._last_reap < REAP_AFTER:
            return False
        self._last_reap = now
        reaped = False
        for factory_id, table in tables.items():
            factory = factories.get(factory_id)
            if factory is None or len(table.reservations) < factory.slots:
                continue
            for r in table.reservations:
                if r.job_id == job_id or now - r.reserved_at < REAP_AFTER:
                    continue
                if await self._reservation_is_stale(r):
                    logger.warning("reaping stale slot of %s on %s", r.job_id, factory_id)
                    reaped |= await self.store.release_slot(factory_id, r.job_id, r.epoch)
        return reaped

    async def _reservation_is_stale(self, r: SlotReservation) -> bool:
        try:
            job = await self.store.get_job(r.job_id, r.product_id)
        except NotFound:
            return True
        if job.stage in TERMINAL_STAGES or r.epoch < job.lease_epoch:
            return True
        return not await self._is_open(job.workflow_id)

    # --- projections --------------------------------------------------------------------------
    @activity.defn(name=RECORD_TRANSITION)
    async def record_transition(self, inp: TransitionInput) -> None:
        """Append the event and move the job's projection (both idempotent)."""
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

        if inp.stage is not None:
            await self.store.update_job(inp.job_id, inp.product_id, mutate)
        await self.store.append_event(
            Event(
                id=inp.event_id,
                job_id=inp.job_id,
                product_id=inp.product_id,
                at=inp.at,
                kind=inp.kind,
                actor=inp.actor,
                stage=inp.stage,
                from_stage=previous[0] if previous and previous[0] != inp.stage else None,
                reason=inp.reason,
                epoch=inp.epoch,
                data=inp.data,
            )
        )

    @activity.defn(name=BEGIN_ATTEMPT)
    async def begin_attempt(self, inp: BeginAttemptInput) -> None:
        """Open lease `epoch`: the job's epoch moves on (older reports are fenced from now)."""
        previous: list[Stage] = []

        def mutate(job: Job) -> Job:
            previous.append(job.stage)
            job.lease_epoch = max(job.lease_epoch, inp.epoch)
            job.attempts = max(job.attempts, inp.epoch)
            job.factory_id = inp.factory_id
            job.stage = Stage.DISPATCHED
            job.wait_reason = None
            job.stage_reason = f"dispatched to {inp.factory_id}"
            job.updated_at = inp.at
            return job

        await self.store.update_job(inp.job_id, inp.product_id, mutate)
        await self.store.upsert_run(
            Run(
                id=f"{inp.job_id}.{inp.epoch}",
                job_id=inp.job_id,
                product_id=inp.product_id,
                epoch=inp.epoch,
                factory_id=inp.factory_id,
                engine=inp.engine,
                started_at=inp.at,
            )
        )
        await self.store.append_event(
            Event(
                id=inp.event_id,
                job_id=inp.job_id,
                product_id=inp.product_id,
                at=inp.at,
                kind="stage",
                actor="workflow",
                stage=Stage.DISPATCHED,
                from_stage=previous[0] if previous else None,
                reason=f"dispatched to {inp.factory_id} under lease epoch {inp.epoch}",
                epoch=inp.epoch,
                data=inp.data,
            )
        )

    @activity.defn(name=FINISH_RUN)
    async def finish_run(self, inp: FinishRunInput) -> None:
        """Record how an attempt ended, free its slot and wake jobs waiting for one."""
        run_id = f"{inp.job_id}.{inp.epoch}"
        await self.store.upsert_run(
            Run(
                id=run_id,
                job_id=inp.job_id,
                product_id=inp.product_id,
                epoch=inp.epoch,
                factory_id=inp.factory_id,
                engine=inp.engine,
                started_at=inp.started_at,
                finished_at=inp.finished_at,
                outcome=inp.outcome,
                exit_code=inp.exit_code,
                cost_usd=inp.cost_usd,
                cost_estimated=inp.cost_estimated,
                reason=inp.reason,
                checkpoint=inp.checkpoint,
                **inp.model_dump(include=RUN_DETAIL_FIELDS),
            )
        )
        # The ledger: one entry per run, whether or not budgets are enforced.
        if await self.store.record_spend(
            SpendRecord(
                id=run_id,
                product_id=inp.product_id,
                job_id=inp.job_id,
                usd=inp.cost_usd,
                estimated=inp.cost_estimated,
                at=inp.finished_at,
            )
        ):
            await self._soft_alert(inp)
        # The job's cost is the sum over its runs, so a retried activity counts nothing twice.
        runs = await self.store.list_runs(inp.job_id, inp.product_id)
        total = sum(r.cost_usd for r in runs)

        def mutate(job: Job) -> Job:
            job.cost_usd = total
            if inp.exit_code is not None:
                job.exit_code = inp.exit_code
            return job

        await self.store.update_job(inp.job_id, inp.product_id, mutate)
        if await self.store.release_slot(inp.factory_id, inp.job_id, inp.epoch):
            # One slot freed: wake the best two waiting jobs (a spare in case the first
            # no longer fits); a job missed here re-routes on its recheck timer.
            await wake_waiting_jobs(
                self.store, self.client, f"slot freed on {inp.factory_id}", limit=2
            )

    @activity.defn(name=FENCE_REPORT)
    async def fence_report(self, inp: FenceInput) -> None:
        """Record a stale report (the store counts it and writes a `fenced` event)."""
        try:
            await self.store.check_epoch(
                inp.job_id, inp.product_id, inp.epoch, actor=inp.actor, what=inp.what, at=inp.at
            )
        except StaleEpoch:
            pass

    # --- budgets ------------------------------------------------------------------------------
    async def _soft_alert(self, inp: FinishRunInput) -> None:
        """Record a `budget_alert` event on the job whose run crossed the soft threshold."""
        config = await stored_config(self.store, inp.product_id)
        ceiling = config.ceiling_usd
        if not ceiling or inp.cost_usd <= 0:
            return
        since = window_start(config.window, inp.finished_at)
        spent = sum(r.usd for r in await self.store.list_spend(inp.product_id, since=since))
        threshold = ceiling * config.soft_threshold
        if not spent - inp.cost_usd < threshold <= spent:
            return
        await self.store.append_event(
            Event(
                id=f"{inp.job_id}.{inp.epoch}.budget-alert",
                job_id=inp.job_id,
                product_id=inp.product_id,
                at=inp.finished_at,
                kind="budget_alert",
                actor="control",
                reason=(
                    f"product {inp.product_id} has spent ${spent:.2f} of its ${ceiling:.2f} "
                    f"ceiling ({spent / ceiling:.0%}; soft threshold "
                    f"{config.soft_threshold:.0%})"
                ),
                data={"spentUsd": spent, "ceilingUsd": ceiling},
            )
        )

    @activity.defn(name=BUDGET_ADMIT)
    async def budget_admit(self, inp: BudgetAdmitInput) -> AdmissionResult:
        """Ask the product's controller (started with the stored budget if missing) to admit."""
        config = await stored_config(self.store, inp.product_id)
        estimate = inp.estimate_usd
        request = AdmissionRequest(
            job_id=inp.job_id,
            workflow_id=inp.workflow_id,
            priority=inp.priority,
            estimate_usd=config.default_estimate_usd if estimate is None else estimate,
            requested_at=inp.requested_at,
        )
        result: AdmissionResult = await self.client.execute_update_with_start_workflow(
            UPDATE_ADMIT,
            request,
            start_workflow_operation=controller_start(inp.product_id, config, self.task_queue),
            result_type=AdmissionResult,
        )
        return result

    # --- Temporal -----------------------------------------------------------------------------
    @activity.defn(name=REQUEST_LOCK)
    async def request_lock(self, inp: RequestLockInput) -> None:
        """Signal-with-start the lock's workflow (workflows cannot signal-with-start)."""
        await self.client.start_workflow(
            LOCK_WORKFLOW,
            LockWorkflowInput(lock=inp.lock),
            id=lock_workflow_id(inp.lock),
            task_queue=self.task_queue,
            start_signal=SIGNAL_LOCK_ACQUIRE,
            start_signal_args=[inp.request],
            static_summary=f"named lock {inp.lock}",
        )

    @activity.defn(name=WORKFLOW_IS_OPEN)
    async def workflow_is_open(self, inp: WorkflowIsOpenInput) -> bool:
        """Whether a workflow is still running (a lock held by a closed one is released)."""
        return await self._is_open(inp.workflow_id)

    async def _is_open(self, workflow_id: str) -> bool:
        try:
            description = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING
