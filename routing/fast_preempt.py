"""The indexed preemption plan: `select_with_preemption`'s plan from `FleetTables` and a
`RunningIndex`, evaluating only the factories that can make the top rows.

A candidate factory passes every hard filter but capacity and has slots: the fresh `full`
members of the buckets that hold the job's capabilities. It needs `reserved - slots + 1`
victims. The plan order (`routing.preemption`) puts every factory needing one victim before
any needing more, and among those orders by the victim's priority, then its runtime. So:

- **walk** (many candidates): the due victims (preemptible, run their minimum) of each
  allowed priority, lowest first, shortest running first (`RunningIndex.due_victims`). The
  first victim met on a candidate factory needing one victim is that factory's cheapest,
  so factories come out in plan order up to score and id. The walk stops once it has k
  factories and the next victim costs more than the k-th (ties are kept). If it runs out
  first, every one-victim plan is known and the factories needing more (`Bucket.over`,
  few) are added. If it takes more than `walk_budget` steps (the due victims sit on
  factories that are not candidates), it gives up for the scan.
- **scan** (few candidates, or the walk gave up): each candidate's cheapest victims from
  its own jobs by priority, then the k best by (victims, priorities, work lost), ties kept.

Either way the factories kept are evaluated exactly as the reference does (`consider`) and
the plan assembled by the same code, so the factory, victims and reason are the reference's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

from routing.candidates import no_placement_reason
from routing.fast_select import fresh_cutoff_us
from routing.fleet_tables import Entry, FleetTables
from routing.funnel import Funnel, count_funnel, summarize
from routing.instants import age_s, micros
from routing.model import Exclusion, JobRequest, RoutingContext
from routing.preemption import (
    PRIORITY_RANK,
    PlanKey,
    PreemptionCandidate,
    PreemptionPlan,
    PreemptionPolicy,
    assemble_plan,
    consider,
)
from routing.running_index import Held, RunningIndex
from routing.weights import FleetWeights

__all__ = ["SCAN_BELOW", "plan_top"]

SCAN_BELOW = 64  # candidates up to which scanning them all is cheaper than walking victims
_ORDER = sorted(PRIORITY_RANK, key=PRIORITY_RANK.__getitem__)

# (victims, highest victim rank, sum of victim ranks, work lost): a plan key without the
# score and id, which only the exact evaluation computes.
_Cost = tuple[int, int, int, float]


def plan_top(
    tables: FleetTables,
    running: RunningIndex,
    job: JobRequest,
    ctx: RoutingContext,
    weights: FleetWeights,
    policy: PreemptionPolicy,
    explain_top: int,
    *,
    scan_below: int = SCAN_BELOW,
    walk_budget: int | None = None,
) -> PreemptionPlan | None:
    """The reference's plan with its best `explain_top` feasible rows and a summary.

    `scan_below` and `walk_budget` (default: 4 steps per candidate + 256) choose between
    the walk and the scan; they change the cost, never the plan.
    """
    if explain_top < 0:
        raise ValueError(f"explain_top must be >= 0, got {explain_top}")
    if job.priority not in policy.preempting:
        return None
    funnel = count_funnel(tables, job, fresh_cutoff_us(ctx))
    if funnel.eligible > 0:
        return None
    k = max(1, explain_top)
    ranks = [r for r in range(PRIORITY_RANK[job.priority]) if _ORDER[r] not in policy.never_preempt]
    candidates = funnel.counts[Exclusion.FULL] - funnel.no_slots
    search = _Search(tables, funnel, running, ranks, micros(ctx.now), policy, k)
    kept: set[str] = set()
    if ranks and candidates > 0:
        budget = walk_budget if walk_budget is not None else 4 * candidates + 256
        walked = search.walk(budget) if candidates > scan_below else None
        kept = walked if walked is not None else search.scan()

    feasible: list[tuple[PlanKey, PreemptionCandidate]] = []
    for factory_id in kept:
        view = tables.entries[factory_id].view
        key, row = consider(job, view, running.on(factory_id), ctx, weights, policy)
        if key is not None:
            feasible.append((key, row))
    feasible = sorted(feasible, key=lambda pair: pair[0])[:k]
    kinds = [kind for kind, n in funnel.counts.items() if n > 0]
    plan = assemble_plan(job, feasible, (), no_placement_reason(job, kinds))
    if plan is None:
        return None
    counts = {**funnel.counts, Exclusion.FULL: funnel.no_slots}
    summary = summarize(tables, funnel, ctx, eligible=candidates, counts=counts, slotless_only=True)
    return replace(plan, breakdown=plan.breakdown[:explain_top], summary=summary)


class _Search:
    """Finds a set of candidate factories that holds the k best plans."""

    def __init__(
        self,
        tables: FleetTables,
        funnel: Funnel,
        running: RunningIndex,
        ranks: list[int],
        now_us: int,
        policy: PreemptionPolicy,
        k: int,
    ) -> None:
        self.tables, self.funnel, self.running = tables, funnel, running
        self.ranks, self.now_us, self.policy, self.k = ranks, now_us, policy, k

    def walk(self, budget: int) -> set[str] | None:
        """Victims cheapest first; None when `budget` steps did not settle the top k."""
        entries, found = self.tables.entries, set[str]()
        kth: tuple[int, float] | None = None
        steps = 0
        for rank in self.ranks:
            for held in self.running.due_victims(rank, self.now_us, self.policy):
                steps += 1
                if steps > budget:
                    return None
                factory_id = held.job.factory_id
                if factory_id in found or self._needed(entries.get(factory_id)) != 1:
                    continue
                cost = (rank, age_s(self.now_us, held.started_us))
                if kth is not None and cost > kth:
                    return found
                found.add(factory_id)
                if len(found) == self.k:
                    kth = cost
        if len(found) >= self.k:
            return found
        return found | self._needing_more()

    def scan(self) -> set[str]:
        """Every candidate's cheapest victims; the k cheapest factories, ties kept."""
        costs: list[tuple[_Cost, str]] = []
        cutoff = self.funnel.cutoff_us
        for bucket in self.funnel.buckets:
            for heartbeat_us, factory_id in bucket.full.descending():
                if heartbeat_us < cutoff:
                    break
                view = self.tables.entries[factory_id].view
                cost = self._cheapest(factory_id, view.reserved - view.slots + 1)
                if cost is not None:
                    costs.append((cost, factory_id))
        costs.sort()
        if len(costs) <= self.k:
            return {factory_id for _, factory_id in costs}
        kth = costs[self.k - 1][0]
        return {factory_id for cost, factory_id in costs if cost <= kth}

    def _needed(self, entry: Entry | None) -> int | None:
        """Victims a candidate factory needs; None when it is not a candidate."""
        if entry is None or entry.standing is not None:
            return None
        view, job = entry.view, self.funnel.job
        if entry.heartbeat_us < self.funnel.cutoff_us or view.slots <= 0:
            return None
        if job.engine not in view.engines or not job.capabilities <= view.labels:
            return None
        return view.reserved - view.slots + 1

    def _needing_more(self) -> set[str]:
        """The candidates needing two or more victims."""
        entries, cutoff = self.tables.entries, self.funnel.cutoff_us
        return {
            factory_id
            for bucket in self.funnel.buckets
            for factory_id in bucket.over
            if entries[factory_id].heartbeat_us >= cutoff
        }

    def _cheapest(self, factory_id: str, needed: int) -> _Cost | None:
        """The cost of a factory's cheapest `needed` victims; None when it has too few."""
        picked: list[tuple[int, float]] = []
        by_rank = self.running.on_by_rank(factory_id)
        for rank in self.ranks:
            picked += sorted(
                (rank, runtime) for runtime in self._due_runtimes(by_rank.get(rank, {}).values())
            )[: needed - len(picked)]
            if len(picked) == needed:
                ranks = [r for r, _ in picked]
                return (needed, max(ranks), sum(ranks), math.fsum(t for _, t in picked))
        return None

    def _due_runtimes(self, jobs: Iterable[Held]) -> list[float]:
        """The runtimes of the preemptible jobs that have run their minimum."""
        runtimes = []
        for held in jobs:
            runtime = age_s(self.now_us, held.started_us)
            if held.job.preemptible and not runtime < held.job.min_runtime(self.policy):
                runtimes.append(runtime)
        return runtimes
