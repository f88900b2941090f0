"""Routing: one pipeline from a job to a factory, used by the routing activity and the dry
run alike, so the plan shows exactly what routing would do.

The pipeline (`RoutingService.plan`): resolve the job's weights (defaults -> the product's
-> the job's; stored weights that no longer validate fall back to the defaults, with a
warning), snapshot the fleet, score it (`routing.select_factory`), order the eligible
factories (one the job just lost is tried last), and hold back free slots that a
higher-ranked waiting job should get first (the heads of the queue's lanes,
`routing.rank_jobs`, decision 0011). When nothing can be taken and the job's priority may
preempt, the pure preemption plan.

The dispatcher (`gigafactory.services.dispatch`) acts on the plan: it reserves a slot by
compare-and-set in plan order, or preempts, or queues the job. Also here: the product's
weights and preemption policy, a job's last decision, and the shadow weight set's report.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from gigafactory.contracts import CandidateScore
from gigafactory.models import (
    ApiKey,
    CamelModel,
    JobSpec,
    PreemptionSettings,
    Priority,
    Role,
    RoutingWeights,
    ShadowDecision,
)
from gigafactory.services.access import require_product, require_role
from gigafactory.services.audit import AuditLog
from gigafactory.services.clock import Clock
from gigafactory.services.errors import InvalidInput
from gigafactory.services.fleet_cache import FleetCache, FleetSnapshot
from gigafactory.services.fleet_view import (
    candidate_wire,
    job_request,
    plan_wire,
    running_jobs,
    summary_wire,
)
from gigafactory.services.jobs import JobService
from gigafactory.services.lifecycle import run_id
from gigafactory.services.queue import Queue, entry_request
from gigafactory.services.specs import Submission, build_spec, check_weights
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore
from routing import (
    TERMS,
    Decision,
    FleetWeights,
    JobRequest,
    PreemptionPlan,
    PreemptionPolicy,
    RoutingContext,
    WeightsError,
    rank_jobs,
    resolve_weights,
)
from routing.score import breakdown, total

# How long routing reuses a product's settings it read (per process).
SETTINGS_CACHE_S = 1.0
# How many of the best factories a decision explains (the rest are counted by filter).
EXPLAIN_TOP = 5

__all__ = [
    "FleetSnapshot",
    "RoutePlan",
    "RoutingExplanation",
    "RoutingPlanView",
    "RoutingService",
    "ShadowReport",
    "WeightsView",
    "fleet_preemption_policy",
    "parse_shadow_weights",
]

logger = logging.getLogger(__name__)


# --- settings as routing types ----------------------------------------------------------------
def fleet_preemption_policy(settings: Settings) -> PreemptionPolicy:
    """Who may evict whom, fleet-wide (FLEET_PREEMPTING_PRIORITIES, ..._MIN_RUNTIME_S).

    Raises:
        ValueError: a priority name is unknown.
    """
    names = frozenset(p.strip() for p in settings.preempting_priorities.split(",") if p.strip())
    try:
        return PreemptionPolicy(preempting=names, min_runtime_s=settings.preemption_min_runtime_s)
    except ValueError as err:
        raise ValueError(f"FLEET_PREEMPTING_PRIORITIES: {err}") from None


def parse_shadow_weights(settings: Settings) -> FleetWeights | None:
    """The weight set `FLEET_ROUTING_SHADOW` names: a JSON object of term -> weight.

    Raises:
        ValueError: the setting is not a JSON object of known terms and valid weights.
    """
    text = settings.routing_shadow
    if not text:
        return None
    try:
        mapping = json.loads(text)
    except ValueError as err:
        raise ValueError(f"FLEET_ROUTING_SHADOW is not JSON ({err}): {text!r}") from None
    if not isinstance(mapping, dict):
        raise ValueError(
            f"FLEET_ROUTING_SHADOW must be a JSON object of term -> weight, not {text!r}"
        )
    try:
        return FleetWeights.from_mapping(mapping, layer="FLEET_ROUTING_SHADOW")
    except WeightsError as err:
        raise ValueError(str(err)) from None


def _snake(term: str) -> str:
    """`costRate` -> `cost_rate` (a validated term name in either spelling)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", term).lower()


# --- views ------------------------------------------------------------------------------------
class WeightsView(CamelModel):
    """A product's routing settings: the fleet defaults, its overrides, what its jobs route
    with, and its preemption policy (overrides and effective)."""

    product_id: str
    defaults: dict[str, float]
    overrides: dict[str, float]
    effective: dict[str, float]
    terms: list[str]
    preemption: PreemptionSettings = Field(
        default_factory=PreemptionSettings, description="The product's own policy fields."
    )
    effective_preemption: PreemptionSettings = Field(
        default_factory=PreemptionSettings, description="The policy its jobs are routed with."
    )
    updated_at: datetime | None = None
    updated_by: str | None = None


class RoutingExplanation(CamelModel):
    """A job's last routing decision: each candidate's score term by term, or exclusion."""

    job_id: str
    at: datetime | None = None
    stage: str | None = None
    reason: str | None = None
    factory_id: str | None = None
    score: float | None = None
    weights: dict[str, float] = Field(default_factory=dict)
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    shadow: dict[str, Any] | None = None


class RoutingPlanView(CamelModel):
    """What routing would decide for a job now (nothing is reserved, evicted or created)."""

    factory_id: str | None = None
    reason: str | None = None
    weights: dict[str, float]
    candidates: list[dict[str, Any]]
    summary: dict[str, Any] | None = Field(
        default=None, description="Factories considered, eligible, excluded by each filter."
    )
    preemption: dict[str, Any] | None = Field(
        default=None, description="The jobs it would evict when nothing fits (pure plan)."
    )
    preemption_enabled: bool = Field(description="FLEET_PREEMPTION: whether it would act.")


class ShadowPair(CamelModel):
    """How often the live weights picked `factory_id` where the shadow set picked another."""

    factory_id: str | None
    shadow_factory_id: str | None
    count: int


class ShadowReport(CamelModel):
    """How the shadow weight set would have decided, for one product over a window."""

    product_id: str
    enabled: bool = Field(description="FLEET_ROUTING_SHADOW is set.")
    shadow_weights: dict[str, float] | None = None
    since: datetime
    until: datetime
    decisions: int
    differing: int
    differing_share: float
    mean_score_gap: float = Field(
        description=(
            "Over differing decisions, the mean of the live pick's score minus the shadow "
            "pick's score, both under the live weights: what following the shadow would cost."
        )
    )
    pairs: list[ShadowPair] = Field(default_factory=list)


# --- the pipeline -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RoutePlan:
    """What routing decided, before anything is reserved."""

    request: JobRequest
    weights: FleetWeights
    decision: Decision
    candidates: list[CandidateScore]
    shadow: dict[str, Any] | None
    # Eligible factories whose free slots this job may take, in the order to try them.
    takeable: list[str] = field(default_factory=list)
    # Eligible factories whose free slots go to higher-ranked waiting jobs first.
    held: list[str] = field(default_factory=list)
    preemption: PreemptionPlan | None = None

    @property
    def factory_id(self) -> str | None:
        """The factory the job would be placed on now, if any."""
        return self.takeable[0] if self.takeable else None

    def waiting_reason(self, engine: str) -> str:
        """Why the job waits, when it cannot take a slot."""
        if self.held and not self.decision.reason:
            return f"free slots on {', '.join(self.held)} go to higher-ranked waiting jobs first"
        eligible = any(c.eligible for c in self.candidates)
        return self.decision.reason or (
            f"all factories offering engine {engine} are full"
            if eligible
            else "no factory has a free slot"
        )


class RoutingService:
    """Routing decisions, their explanations, and the product settings they use."""

    def __init__(
        self,
        store: FleetStore,
        settings: Settings,
        queue: Queue,
        jobs: JobService,
        clock: Clock,
        audit: AuditLog,
        *,
        defaults: FleetWeights | None = None,
        shadow: FleetWeights | None = None,
        policy: PreemptionPolicy | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.queue = queue
        self.jobs = jobs
        self.clock = clock
        self.audit = audit
        self.defaults = defaults or FleetWeights()
        self.shadow_weights = shadow if shadow is not None else parse_shadow_weights(settings)
        self.policy = policy or fleet_preemption_policy(settings)
        self._cache: dict[str, tuple[float, RoutingWeights | None]] = {}
        self.fleet = FleetCache(store, settings.routing_snapshot_s)

    # --- product settings ---------------------------------------------------------------------
    async def _settings(self, product_id: str) -> RoutingWeights | None:
        """A product's routing settings as routing uses them: read at most once a second per
        process, since every placement asks (a change reaches routing within that second;
        reading and writing them through the API is never cached)."""
        now = time.monotonic()
        cached = self._cache.get(product_id)
        if cached is not None and now - cached[0] < SETTINGS_CACHE_S:
            return cached[1]
        stored = await self.store.get_routing_weights(product_id)
        self._cache[product_id] = (now, stored)
        return stored

    async def weights_for(
        self, product_id: str, request: Mapping[str, float] | None
    ) -> FleetWeights:
        """Defaults -> the product's override -> the job's own.

        Both layers are validated when written; a stored one that no longer validates (an
        older term set) must not stop routing: the defaults are used and a warning logged.
        """
        stored = await self._settings(product_id)
        try:
            return resolve_weights(self.defaults, stored.weights if stored else None, request)
        except WeightsError as err:
            logger.warning("product %s: ignoring routing weights (%s)", product_id, err)
            return self.defaults

    async def policy_for(self, product_id: str) -> PreemptionPolicy:
        """The policy the product's jobs preempt under: the fleet's, with the product's own
        preempting priorities (a victim's minimum runtime is its own product's, see
        `_protection`)."""
        stored = await self._settings(product_id)
        return self._effective_policy(stored.preemption if stored else PreemptionSettings())

    async def _protection(self, products: set[str]) -> dict[str, float]:
        """The products among `products` that protect their jobs with a minimum runtime of
        their own: a product's policy decides how long its jobs are safe from eviction."""
        protect: dict[str, float] = {}
        for product_id in sorted(products):
            stored = await self._settings(product_id)
            if stored is not None and stored.preemption.min_runtime_s is not None:
                protect[product_id] = stored.preemption.min_runtime_s
        return protect

    def _effective_policy(self, own: PreemptionSettings) -> PreemptionPolicy:
        policy = self.policy
        if own.preempting_priorities is not None:
            policy = dc_replace(
                policy, preempting=frozenset(p.value for p in own.preempting_priorities)
            )
        return policy

    async def grace_for(self, product_id: str) -> float:
        """How long the product's stopped agents get to checkpoint (its policy, else the
        fleet's FLEET_STOP_GRACE_S)."""
        stored = await self._settings(product_id)
        own = stored.preemption.grace_s if stored else None
        return self.settings.stop_grace_s if own is None else own

    async def get_weights(self, key: ApiKey, product_id: str) -> WeightsView:
        """A product's routing settings."""
        require_product(key, product_id)
        return self._view(product_id, await self.store.get_routing_weights(product_id))

    async def put_weights(
        self,
        key: ApiKey,
        product_id: str,
        weights: Mapping[str, float],
        preemption: PreemptionSettings | None = None,
    ) -> WeightsView:
        """Replace a product's weight overrides (`{}`: the defaults again) and, when given,
        its preemption policy (operators).

        Raises:
            InvalidInput: naming the bad term.
        """
        data: dict[str, Any] = {"weights": dict(weights)}
        if preemption is not None:
            data["preemption"] = preemption.model_dump(mode="json", by_alias=True)
        async with self.audit.product_action(key, "routing.weights", product_id, data=data):
            require_role(key, Role.OPERATOR, "changing routing settings")
            require_product(key, product_id)
            check_weights(weights, layer="product override", field="weights")
            previous = await self.store.get_routing_weights(product_id)
            kept = previous.preemption if previous else PreemptionSettings()
            self._cache.pop(product_id, None)
            stored = await self.store.put_routing_weights(
                RoutingWeights(
                    product_id=product_id,
                    # Stored under the canonical (snake_case) term names.
                    weights={_snake(t): float(w) for t, w in weights.items()},
                    preemption=preemption if preemption is not None else kept,
                    updated_at=self.clock(),
                    updated_by=f"api:{key.id}",
                )
            )
        return self._view(product_id, stored)

    def _view(self, product_id: str, stored: RoutingWeights | None) -> WeightsView:
        overrides = stored.weights if stored else {}
        try:
            effective = resolve_weights(self.defaults, overrides, None)
        except WeightsError:
            effective = self.defaults  # what routing does with weights that no longer validate
        own = stored.preemption if stored else PreemptionSettings()
        policy = self._effective_policy(own)
        return WeightsView(
            product_id=product_id,
            defaults=self.defaults.as_dict(),
            overrides=overrides,
            effective=effective.as_dict(),
            terms=list(TERMS),
            preemption=own,
            effective_preemption=PreemptionSettings(
                preempting_priorities=sorted(
                    (Priority(p) for p in policy.preempting), key=lambda p: p.rank
                ),
                min_runtime_s=(
                    policy.min_runtime_s if own.min_runtime_s is None else own.min_runtime_s
                ),
                grace_s=self.settings.stop_grace_s if own.grace_s is None else own.grace_s,
            ),
            updated_at=stored.updated_at if stored else None,
            updated_by=stored.updated_by if stored else None,
        )

    # --- the pipeline -------------------------------------------------------------------------
    async def snapshot(self) -> FleetSnapshot:
        """The fleet now: factories, slot tables and the routing index over them."""
        return await self.fleet.snapshot()

    def context(self, now: datetime) -> RoutingContext:
        return RoutingContext(now=now, unhealthy_after_s=self.settings.factory_unhealthy_after_s)

    async def plan(
        self,
        request: JobRequest,
        product_id: str,
        weights_override: Mapping[str, float] | None,
        snapshot: FleetSnapshot,
        *,
        now: datetime,
        avoid: Sequence[str] = (),
        may_preempt: bool,
    ) -> RoutePlan:
        """Decide for one job; reserve nothing (see the module docstring)."""
        ctx = self.context(now)
        weights = await self.weights_for(product_id, weights_override)
        decision = snapshot.index.select(request, ctx, weights, explain_top=EXPLAIN_TOP)
        # The best few eligible rows, then a few examples of each filter that excluded some
        # (the summary counts the rest).
        examples = [
            example
            for kind in (decision.summary.exclusions if decision.summary else ())
            for example in kind.examples
        ]
        candidates = [candidate_wire(c) for c in [*decision.candidates, *examples]]
        eligible = [c.factory_id for c in candidates if c.eligible]
        ordered = [f for f in eligible if f not in avoid] + [f for f in eligible if f in avoid]
        takeable: list[str] = []
        held: list[str] = []
        if ordered:
            me = dc_replace(request, waiting_since=request.waiting_since or now)
            lanes = await self.queue.lanes()
            for factory_id in ordered:
                view = snapshot.view(factory_id)
                if view.free <= 0:
                    continue
                competitors = [
                    entry_request(h)
                    for h in await self.queue.heads(view, lanes)
                    if request.job_id not in (h.id, h.job_id)
                ]
                if competitors:
                    # A freed slot goes to the best waiting job, not the first to ask.
                    ranked = [c.job_id for c in rank_jobs([*competitors, me], view, ctx, weights)]
                    if request.job_id in ranked and ranked.index(request.job_id) >= view.free:
                        held.append(factory_id)
                        continue
                takeable.append(factory_id)
        preemption = None
        if may_preempt and not takeable and not held:
            policy = await self.policy_for(product_id)
            if request.priority in policy.preempting:
                holders = {r.product_id for t in snapshot.tables.values() for r in t.reservations}
                running = running_jobs(
                    snapshot.tables,
                    exclude=request.job_id,
                    min_runtime_s=await self._protection(holders),
                )
                preemption = snapshot.index.plan_preemption(
                    request, running, ctx, weights, policy, explain_top=EXPLAIN_TOP
                )
        return RoutePlan(
            request=request,
            weights=weights,
            decision=decision,
            candidates=candidates,
            shadow=self._shadow(request, snapshot, ctx, weights, decision),
            takeable=takeable,
            held=held,
            preemption=preemption,
        )

    def _shadow(
        self,
        request: JobRequest,
        snapshot: FleetSnapshot,
        ctx: RoutingContext,
        weights: FleetWeights,
        decision: Decision,
    ) -> dict[str, Any] | None:
        """What the shadow weight set would pick, and that pick's score under the live
        weights (what following the shadow would give up); recorded, never acted on."""
        if self.shadow_weights is None:
            return None
        other = snapshot.index.select(request, ctx, self.shadow_weights, explain_top=0)
        live = (
            total(breakdown(request, snapshot.view(other.factory_id), ctx, weights))
            if other.factory_id is not None
            else 0.0
        )
        return {
            "factoryId": other.factory_id,
            "score": other.score,
            "liveScore": live,
            "differs": other.factory_id != decision.factory_id,
            "weights": self.shadow_weights.as_dict(),
        }

    async def record_shadow(
        self,
        job_id: str,
        product_id: str,
        epoch: int,
        plan: RoutePlan,
        factory_id: str,
        now: datetime,
    ) -> None:
        """Record what the shadow weight set would have picked for this placement."""
        if plan.shadow is None:
            return
        live = {c.factory_id: c.score for c in plan.candidates if c.eligible}
        shadow_pick = plan.shadow.get("factoryId")
        shadow_live = float(plan.shadow.get("liveScore") or 0.0)
        await self.store.record_shadow(
            ShadowDecision(
                id=run_id(job_id, epoch),
                product_id=product_id,
                job_id=job_id,
                at=now,
                factory_id=factory_id,
                shadow_factory_id=shadow_pick,
                score=live[factory_id],
                shadow_score=shadow_live if shadow_pick else 0.0,
                differs=shadow_pick != factory_id,
            )
        )

    # --- for people ---------------------------------------------------------------------------
    async def dry_run(self, key: ApiKey, submission: Submission) -> RoutingPlanView:
        """What routing would decide for a job spec now: the factory it would get, each
        candidate's score, which running jobs it would preempt if nothing fits (like
        `nomad plan`). Nothing is reserved, evicted or created."""
        spec: JobSpec = build_spec(submission, key, self.settings)
        now = self.clock()
        request = job_request(
            "(plan)",
            engine=spec.engine,
            capabilities=spec.capabilities,
            priority=spec.priority,
            preferred_labels=spec.preferred_labels,
            waiting_since=now,
        )
        plan = await self.plan(
            request,
            spec.product_id,
            spec.routing_weights,
            await self.snapshot(),
            now=now,
            may_preempt=True,
        )
        return RoutingPlanView(
            factory_id=plan.factory_id,
            reason=None if plan.factory_id else plan.waiting_reason(spec.engine),
            weights=plan.weights.as_dict(),
            candidates=[c.wire() for c in plan.candidates],
            summary=summary_wire(plan.decision.summary),
            preemption=plan_wire(plan.preemption) if plan.preemption else None,
            preemption_enabled=self.settings.preemption,
        )

    async def explain(self, key: ApiKey, job_id: str) -> RoutingExplanation:
        """The job's last routing decision: how every factory scored, why others were out."""
        job = await self.jobs.get(key, job_id)
        continuation = None
        for _ in range(20):  # at most 20 pages of 100 events back
            events, continuation = await self.store.list_events(
                job.id, job.product_id, limit=100, continuation=continuation, newest_first=True
            )
            for event in events:
                if "candidates" in event.data:
                    return RoutingExplanation(
                        job_id=job.id,
                        at=event.at,
                        stage=event.stage.value if event.stage else None,
                        reason=event.reason,
                        factory_id=event.data.get("factoryId"),
                        score=event.data.get("score"),
                        weights=event.data.get("weights") or {},
                        candidates=event.data["candidates"],
                        shadow=event.data.get("shadow"),
                    )
            if continuation is None:
                break
        return RoutingExplanation(job_id=job.id, reason="not routed yet")

    async def shadow_report(
        self, key: ApiKey, product_id: str, *, window: timedelta
    ) -> ShadowReport:
        """How often, and how, the shadow weights would have placed the product's jobs
        differently over the last `window`.

        Raises:
            InvalidInput: the window is not positive.
        """
        require_product(key, product_id)
        if window <= timedelta(0):
            raise InvalidInput("the window must be longer than 0 seconds", field="windowS")
        until = self.clock()
        since = until - window
        decisions = await self.store.list_shadow(product_id, since=since)
        differing = [d for d in decisions if d.differs]
        pairs: dict[tuple[str | None, str | None], int] = {}
        for d in differing:
            pairs[(d.factory_id, d.shadow_factory_id)] = (
                pairs.get((d.factory_id, d.shadow_factory_id), 0) + 1
            )
        gap = (
            sum(d.score - d.shadow_score for d in differing) / len(differing) if differing else 0.0
        )
        return ShadowReport(
            product_id=product_id,
            enabled=self.shadow_weights is not None,
            shadow_weights=self.shadow_weights.as_dict() if self.shadow_weights else None,
            since=since,
            until=until,
            decisions=len(decisions),
            differing=len(differing),
            differing_share=len(differing) / len(decisions) if decisions else 0.0,
            mean_score_gap=gap,
            pairs=[
                ShadowPair(factory_id=live, shadow_factory_id=shadow, count=n)
                for (live, shadow), n in sorted(pairs.items(), key=lambda kv: -kv[1])
            ],
        )
