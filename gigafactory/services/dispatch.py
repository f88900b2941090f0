"""Dispatch: slots for jobs, and a freed slot handed to the best waiting job.

- `place` (a job's attempt asks): the routing plan's best free slot is reserved by
  compare-and-set and the attempt's lease opened at once; when higher-ranked waiting jobs
  hold the free slots, or nothing is free, the job is queued (and, for a preempting
  priority, its victims are evicted instead when the plan finds some).
- `fill` (a slot freed, a factory came, a reconciler pass): each free slot of one factory
  goes to the best head of the lanes it can serve. The dispatcher reserves the slot, takes
  the entry out of the queue (compare-and-set: of several dispatchers racing for a job,
  one wins), opens the job's lease (projection, run and event) and signals `slot_granted`
  to the job's workflow, which has been waiting with no timer at all: waiting costs a job
  no history, however long the queue (decision 0015).
- `reconcile` (every control process, every `FLEET_RECONCILE_S`): fills factories whose
  free slots a lost hand-off left idle, re-signals grants a crash may have swallowed, tries
  preemption again for queued jobs of a preempting priority, reaps slots held by jobs that
  are gone, and prunes empty lanes.

Every step is a compare-and-set on one document or an idempotent write, so any number of
control and API processes may dispatch at once with no coordination beyond the store.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from gigafactory.budgets import SIGNAL_PREEMPT, PreemptRequest
from gigafactory.contracts import (
    SIGNAL_SLOT_GRANTED,
    BeginAttemptInput,
    FinishRunInput,
    RouteInput,
    RouteResult,
    SlotGrant,
    TransitionInput,
)
from gigafactory.job_rules import route_data
from gigafactory.models import (
    TERMINAL_STAGES,
    Factory,
    Priority,
    QueueEntry,
    QueueLane,
    RunOutcome,
    SlotReservation,
    Stage,
    WaitReason,
)
from gigafactory.observability.metrics import PREEMPTIONS, ROUTING_DECISIONS, SLOT_HANDOFFS
from gigafactory.services.clock import Clock
from gigafactory.services.controller import ControllerClient
from gigafactory.services.fleet_cache import FleetSnapshot
from gigafactory.services.fleet_view import factory_view, job_request, plan_wire, summary_wire
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.services.queue import Queue, entry_request
from gigafactory.services.routing import RoutePlan, RoutingService
from gigafactory.services.workflow_ops import WorkflowOps
from gigafactory.settings import Settings
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore
from routing import PreemptionPlan, rank_jobs
from routing.filters import factory_exclusion

__all__ = ["Dispatcher", "FillResult"]

logger = logging.getLogger(__name__)

# A reservation younger than this is never reaped: its job may be between being handed the
# slot and starting its attempt.
REAP_AFTER = timedelta(seconds=30)


@dataclass
class FillResult:
    """What one fill pass on a factory did."""

    granted: list[str] = field(default_factory=list)  # job ids handed a slot
    placed: RouteResult | None = None  # the calling job's own placement, if it got one


class Dispatcher:
    """Slots to jobs, over the store and Temporal."""

    def __init__(
        self,
        store: FleetStore,
        temporal: Client,
        settings: Settings,
        lifecycle: Lifecycle,
        routing: RoutingService,
        queue: Queue,
        controllers: ControllerClient,
        workflows: WorkflowOps,
        clock: Clock,
    ) -> None:
        self.store = store
        self.temporal = temporal
        self.settings = settings
        self.lifecycle = lifecycle
        self.routing = routing
        self.queue = queue
        self.controllers = controllers
        self.workflows = workflows
        self.clock = clock

    # --- a job asks -----------------------------------------------------------------------------
    async def place(self, inp: RouteInput) -> RouteResult:
        """Place one attempt: a slot and an open lease, a preemption, or the queue."""
        began = time.perf_counter()
        result = await self._place(inp)
        outcome = (
            "queued"
            if result.factory_id is None
            else ("preempting" if result.evicted else "placed")
        )
        ROUTING_DECISIONS.labels(outcome).observe(time.perf_counter() - began)
        return result

    async def _place(self, inp: RouteInput) -> RouteResult:
        now = self.clock()
        snapshot = await self.routing.snapshot()
        since = inp.waiting_since or now
        request = job_request(
            inp.job_id,
            engine=inp.engine,
            capabilities=inp.capabilities,
            priority=inp.priority,
            preferred_labels=inp.preferred_labels,
            waiting_since=since,
            previous_factory_id=inp.previous_factory_id,
        )
        plan = await self.routing.plan(
            request,
            inp.product_id,
            inp.weights_override,
            snapshot,
            now=now,
            avoid=inp.avoid_factories,
            may_preempt=inp.preemption,
        )
        base = _base(plan)
        for factory_id in plan.takeable:
            factory = snapshot.factories.get(factory_id)
            reservation = _reservation(inp, now)
            if factory and await self.store.reserve_slot(factory_id, factory.slots, reservation):
                self.routing.fleet.reserved(factory_id, reservation)
                return await self._open(inp, plan, base, factory_id, now)
        if plan.preemption is not None:
            placed = await self._preempt(inp, plan, plan.preemption, snapshot, base, now)
            if placed is not None:
                return placed
        return await self._queue(inp, plan, base, since, now)

    async def _open(
        self,
        inp: RouteInput,
        plan: RoutePlan,
        base: RouteResult,
        factory_id: str,
        now: datetime,
        **extra: Any,
    ) -> RouteResult:
        """The slot is the job's: open its attempt's lease (projection, run, event)."""
        score = next((c.score for c in plan.candidates if c.factory_id == factory_id), 0.0)
        result = base.model_copy(
            update={
                "factory_id": factory_id,
                "score": score,
                "stop_grace_s": await self.routing.grace_for(inp.product_id),
                **extra,
            }
        )
        opened = await self.lifecycle.begin_attempt(
            BeginAttemptInput(
                job_id=inp.job_id,
                product_id=inp.product_id,
                epoch=inp.epoch,
                factory_id=factory_id,
                engine=inp.engine,
                at=now,
                event_id=f"{inp.job_id}.{inp.epoch}.dispatched",
                data={"score": score, **route_data(result)},
            )
        )
        if not opened:
            # The job ended meanwhile (a cancel raced its placement): give the slot back.
            await self.release(factory_id, inp.job_id, inp.epoch, reason="job ended")
            return base.model_copy(update={"waiting_reason": "the job has ended"})
        await self.routing.record_shadow(
            inp.job_id, inp.product_id, inp.epoch, plan, factory_id, now
        )
        return result

    async def _queue(
        self, inp: RouteInput, plan: RoutePlan, base: RouteResult, since: datetime, now: datetime
    ) -> RouteResult:
        """Nothing free for this job now: queue it, then hand the free slots held for better
        jobs to them (the job itself may be handed one, if it ranks well enough by then)."""
        if inp.workflow_id is None:
            raise ValueError(f"job {inp.job_id}: a job that may queue names its workflow")
        await self.queue.enqueue(
            QueueEntry(
                id=inp.workflow_id,
                lane="",
                job_id=inp.job_id,
                job_product_id=inp.product_id,
                workflow_id=inp.workflow_id,
                epoch=inp.epoch,
                engine=inp.engine,
                capabilities=inp.capabilities,
                preferred_labels=inp.preferred_labels,
                previous_factory_id=inp.previous_factory_id,
                priority=inp.priority,
                waiting_since=since,
                may_preempt=inp.preemption,
            )
        )
        for factory_id in plan.held:
            filled = await self.fill(factory_id, me=inp.job_id, plan=plan)
            if filled.placed is not None:
                return filled.placed
        reason = plan.waiting_reason(inp.engine)
        await self.lifecycle.transition_if_changed(
            TransitionInput(
                job_id=inp.job_id,
                product_id=inp.product_id,
                event_id=f"{inp.job_id}.{inp.epoch}.waiting.{int(now.timestamp() * 1000)}",
                at=now,
                stage=Stage.WAITING,
                wait_reason=WaitReason.CAPACITY,
                reason=reason,
                data=route_data(base),
            )
        )
        return base.model_copy(update={"waiting_reason": reason, "queued": True})

    # --- slots handed out -------------------------------------------------------------------
    async def fill(
        self,
        factory_id: str,
        *,
        me: str | None = None,
        plan: RoutePlan | None = None,
    ) -> FillResult:
        """Hand each free slot of a factory to the best waiting job it can serve.

        Args:
            factory_id: The factory.
            me: A job placing itself: if it is handed a slot, its placement is returned
                (no signal) instead.
            plan: That job's routing plan (its placement's explanation).
        """
        result = FillResult()
        try:
            factory = await self.store.get_factory(factory_id)
        except NotFound:
            return result
        now = self.clock()
        table = await self.store.get_slots(factory_id)
        view = factory_view(factory, table, "")
        if factory_exclusion(view, self.routing.context(now)) is not None:
            return result
        free = view.free
        heads = await self.queue.heads(view) if free > 0 else []
        while free > 0 and heads:
            requests = [entry_request(h) for h in heads]
            if result.granted:  # the table changed with the last hand-off: its load too
                view = factory_view(factory, await self.store.get_slots(factory_id), "")
            ranked = rank_jobs(requests, view, self.routing.context(now), self.routing.defaults)
            if not ranked:
                break
            best = next(h for h in heads if h.id == ranked[0].job_id)
            outcome = await self._hand_off(best, factory, ranked[0].score, now, me, plan)
            if outcome == "full":
                break
            if outcome == "granted":
                free -= 1
                result.granted.append(best.job_id)
                SLOT_HANDOFFS.inc()
            elif isinstance(outcome, RouteResult):
                free -= 1
                result.granted.append(best.job_id)
                result.placed = outcome
            heads = [h for h in heads if h.lane != best.lane]
            heads += await self.store.lane_heads(best.lane)
        if result.granted:
            logger.info("factory %s: slots handed to %s", factory_id, ", ".join(result.granted))
        return result

    async def _hand_off(
        self,
        entry: QueueEntry,
        factory: Factory,
        score: float,
        now: datetime,
        me: str | None,
        plan: RoutePlan | None,
    ) -> str | RouteResult:
        """Reserve a slot for a queued job, take it out of the queue, open its lease and
        tell its workflow. Returns "full", "lost" (another dispatcher took the job, or it
        left), "gone" (its workflow ended), "granted", or the caller's own placement."""
        reservation = SlotReservation(
            job_id=entry.job_id,
            product_id=entry.job_product_id,
            epoch=entry.epoch,
            priority=entry.priority,
            reserved_at=now,
        )
        if not await self.store.reserve_slot(factory.id, factory.slots, reservation):
            return "full"
        if not await self.store.claim(entry):
            await self.store.release_slot(factory.id, entry.job_id, entry.epoch)
            return "lost"
        if entry.job_id == me and plan is not None:
            inp = _route_input(entry)
            return await self._open(inp, plan, _base(plan), factory.id, now)
        grace = await self.routing.grace_for(entry.job_product_id)
        grant = SlotGrant(factory_id=factory.id, epoch=entry.epoch, score=score, stop_grace_s=grace)
        opened = await self.lifecycle.begin_attempt(
            BeginAttemptInput(
                job_id=entry.job_id,
                product_id=entry.job_product_id,
                epoch=entry.epoch,
                factory_id=factory.id,
                engine=entry.engine,
                at=now,
                event_id=f"{entry.job_id}.{entry.epoch}.dispatched",
                data={
                    "factoryId": factory.id,
                    "score": score,
                    "grantedFrom": "queue",
                    "waitedS": max(0.0, (now - entry.waiting_since).total_seconds()),
                },
            )
        )
        if not opened or not await self._grant(entry.workflow_id, grant):
            await self._abandon(entry, factory.id, now, "its workflow had ended")
            return "gone"
        return "granted"

    async def _grant(self, workflow_id: str, grant: SlotGrant) -> bool:
        """Signal the grant; False when the workflow no longer runs."""
        try:
            await self.temporal.get_workflow_handle(workflow_id).signal(SIGNAL_SLOT_GRANTED, grant)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def _abandon(self, entry: QueueEntry, factory_id: str, now: datetime, why: str) -> None:
        """A slot handed to a job whose workflow had ended: close the attempt, free the slot."""
        logger.info("job %s: slot on %s given back: %s", entry.job_id, factory_id, why)
        try:
            await self.lifecycle.record_run(
                FinishRunInput(
                    job_id=entry.job_id,
                    product_id=entry.job_product_id,
                    epoch=entry.epoch,
                    factory_id=factory_id,
                    engine=entry.engine,
                    started_at=now,
                    finished_at=now,
                    outcome=RunOutcome.CANCELLED,
                    reason=f"never started: {why}",
                )
            )
        except NotFound:
            pass
        await self.store.release_slot(factory_id, entry.job_id, entry.epoch)

    async def release(self, factory_id: str, job_id: str, epoch: int, *, reason: str) -> None:
        """Free a job's slot and hand it to the best waiting job."""
        if await self.store.release_slot(factory_id, job_id, epoch):
            self.routing.fleet.released(factory_id, job_id, epoch)
            await self.fill(factory_id)

    # --- preemption -----------------------------------------------------------------------------
    async def _preempt(
        self,
        inp: RouteInput,
        plan: RoutePlan,
        preemption: PreemptionPlan,
        snapshot: FleetSnapshot,
        base: RouteResult,
        now: datetime,
    ) -> RouteResult | None:
        """Evict strictly lower-priority jobs for a job nothing else fits (FLEET_PREEMPTION).

        The slot is reserved for the job at once (over capacity until the victims stop), and
        each victim's product controller is told to preempt it. None when the fleet changed
        meanwhile (the next round decides again).
        """
        reservation = _reservation(inp, now)
        factory = snapshot.factories[preemption.factory_id]
        victims = {r.job_id: r for r in snapshot.tables[factory.id].reservations}
        if not await self.store.reserve_slot(
            factory.id, factory.slots, reservation, evicting=preemption.evict
        ):
            return None
        grace = 0.0
        for victim_id in preemption.evict:
            victim = victims[victim_id]
            grace = max(grace, await self.routing.grace_for(victim.product_id))
            await self._signal_preempt(victim, inp, preemption.reason)
        PREEMPTIONS.inc(len(preemption.evict))
        logger.info("job %s preempts %s on %s", inp.job_id, preemption.evict, factory.id)
        return await self._open(
            inp,
            plan,
            base,
            factory.id,
            now,
            evicted=list(preemption.evict),
            preemption=plan_wire(preemption),
            victim_grace_s=grace,
        )

    async def _signal_preempt(self, victim: SlotReservation, inp: RouteInput, why: str) -> None:
        """Through the victim's product controller (started if missing), to its workflow."""
        try:
            job = await self.store.get_job(victim.job_id, victim.product_id)
        except NotFound:
            return
        await self.controllers.signal(
            victim.product_id,
            SIGNAL_PREEMPT,
            PreemptRequest(
                victim_job_id=victim.job_id,
                victim_workflow_id=job.workflow_id,
                preemptor_job_id=inp.job_id,
                reason=f"preempted by {inp.priority.value} job {inp.job_id}: {why}",
            ),
        )

    # --- the reconciler -------------------------------------------------------------------------
    async def reconcile(self) -> None:
        """One pass: reap, re-grant, preempt for queued urgent jobs, fill, prune."""
        now = self.clock()
        snapshot = await self.routing.snapshot()
        for factory_id, table in snapshot.tables.items():
            for r in table.reservations:
                if now - r.reserved_at >= REAP_AFTER:
                    await self._check_reservation(factory_id, r, now)
        lanes = await self.store.queue_lanes()
        if not lanes:
            return
        await self._preempt_for_queued(lanes, now)
        for factory in snapshot.factories.values():
            await self.fill(factory.id)
        for lane in lanes:
            await self.store.prune_lane(lane)

    async def _check_reservation(self, factory_id: str, r: SlotReservation, now: datetime) -> None:
        """A reservation held a while: free it if its job is gone or moved on; re-signal a
        grant its workflow never acted on."""
        try:
            job = await self.store.get_job(r.job_id, r.product_id)
        except NotFound:
            job = None
        if job is None or job.stage in TERMINAL_STAGES or r.epoch < job.lease_epoch:
            logger.warning("reaping the slot of %s on %s: its job moved on", r.job_id, factory_id)
            await self.release(factory_id, r.job_id, r.epoch, reason="reaped")
            return
        if not await self.workflows.is_open(job.workflow_id):
            logger.warning(
                "reaping the slot of %s on %s: its workflow is gone", r.job_id, factory_id
            )
            await self.release(factory_id, r.job_id, r.epoch, reason="reaped")
            return
        stale_after = timedelta(seconds=self.settings.dispatch_timeout_s + REAP_AFTER.seconds)
        if (
            job.stage == Stage.DISPATCHED
            and job.lease_epoch == r.epoch
            and now - r.reserved_at >= stale_after
        ):
            # Dispatched long ago and never started: the grant may have been lost in a crash
            # between writing it and signalling it. The workflow ignores a repeated grant.
            grace = await self.routing.grace_for(r.product_id)
            grant = SlotGrant(factory_id=factory_id, epoch=r.epoch, stop_grace_s=grace)
            await self._grant(job.workflow_id, grant)

    async def _preempt_for_queued(self, lanes: list[QueueLane], now: datetime) -> None:
        """The heads of lanes whose priority may preempt somewhere: evict for them now if a
        plan exists (their victims may have passed their minimum runtime since)."""
        urgent = [lane for lane in lanes if lane.priority.rank > Priority.LOW.rank]
        heads = [h for lane in urgent for h in await self.store.lane_heads(lane.id)]
        for entry in heads:
            if not entry.may_preempt:
                continue
            policy = await self.routing.policy_for(entry.job_product_id)
            if entry.priority.value not in policy.preempting:
                continue
            inp = _route_input(entry)
            snapshot = await self.routing.snapshot()
            plan = await self.routing.plan(
                entry_request(entry),
                entry.job_product_id,
                None,
                snapshot,
                now=now,
                may_preempt=True,
            )
            if plan.preemption is None or not await self.store.claim(entry):
                continue
            placed = await self._preempt(inp, plan, plan.preemption, snapshot, _base(plan), now)
            if placed is None or placed.factory_id is None:
                await self.queue.enqueue(entry)  # the fleet changed: it keeps its place
                continue
            grant = SlotGrant(
                factory_id=placed.factory_id,
                epoch=entry.epoch,
                score=placed.score,
                stop_grace_s=placed.stop_grace_s,
                evicted=placed.evicted,
                victim_grace_s=placed.victim_grace_s,
            )
            if not await self._grant(entry.workflow_id, grant):
                await self._abandon(entry, placed.factory_id, now, "its workflow had ended")


def _base(plan: RoutePlan) -> RouteResult:
    """What every routing result carries: the explanation of its decision."""
    return RouteResult(
        candidates=plan.candidates,
        summary=summary_wire(plan.decision.summary),
        weights=plan.weights.as_dict(),
        shadow=plan.shadow,
    )


def _reservation(inp: RouteInput, now: datetime) -> SlotReservation:
    return SlotReservation(
        job_id=inp.job_id, product_id=inp.product_id, epoch=inp.epoch, priority=inp.priority,
        reserved_at=now,
    )  # fmt: skip


def _route_input(entry: QueueEntry) -> RouteInput:
    """A queued job's placement request, as its workflow would have asked."""
    return RouteInput(
        job_id=entry.job_id,
        product_id=entry.job_product_id,
        epoch=entry.epoch,
        workflow_id=entry.workflow_id,
        engine=entry.engine,
        capabilities=entry.capabilities,
        priority=entry.priority,
        waiting_since=entry.waiting_since,
        preferred_labels=entry.preferred_labels,
        previous_factory_id=entry.previous_factory_id,
        preemption=entry.may_preempt,
    )
