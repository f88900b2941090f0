"""The indexed placement: the best factories for a job, found from `FleetTables` by bounds.

Within one bucket (one engine, one exact label set) capability_fit and affinity are the same
for every member, and age and priority are the same for every factory. What differs is
load, health and cost_rate, and a bucket keeps the best of each: its largest load and
cost_rate terms, and its freshest heartbeat (health is `1 - age / limit`, so it only falls
as a heartbeat gets older; the order of members by heartbeat does not depend on the time).
So a bucket's best possible score is known without looking at its members.

The search:
1. the fitting buckets (label index) with a fresh free member, each with its bound;
2. the job's previous factory first, on its own (its affinity is not its bucket's);
3. buckets by bound, best first; stop when a bound cannot reach the k-th best estimate so far;
4. within a bucket, members freshest first; stop when the rest cannot reach it either;
5. each member visited gets an estimate (the terms summed in plain floating point);
6. every estimate within `margin` of the k-th best is scored exactly as the reference does
   (`eligible_candidate`: the breakdown and its exactly rounded sum), and sorted as the
   reference sorts (score to 1e-9, then id).

`margin` covers the two ways an estimate may differ from the exact order: float rounding
(at most a few ulps of the largest possible score, here bounded by 1e-12 times the sum of
the weights) and `rank_score`'s rounding to 1e-9, under which two scores less than 1e-9
apart may tie and fall to the id. So every factory that could be in the exact top k is
scored exactly, and the result is the reference's.
"""

from __future__ import annotations

import heapq
import math

from routing.candidates import eligible_candidate, no_placement_reason, rank_order
from routing.fleet_tables import Entry, FleetTables
from routing.funnel import Funnel, count_funnel, summarize
from routing.instants import age_s, fresh_age_us, micros
from routing.model import Candidate, Decision, JobRequest, RoutingContext
from routing.score import health_term, job_terms, label_terms
from routing.weights import FleetWeights

__all__ = ["best_rows", "fresh_cutoff_us", "select_top"]


def fresh_cutoff_us(ctx: RoutingContext) -> int:
    """The oldest heartbeat, in microseconds, that is still fresh at `ctx.now`."""
    return micros(ctx.now) - fresh_age_us(ctx.unhealthy_after_s)


def select_top(
    tables: FleetTables,
    job: JobRequest,
    ctx: RoutingContext,
    weights: FleetWeights,
    explain_top: int,
) -> Decision:
    """The reference's pick with its best `explain_top` rows and the rest summarised."""
    if explain_top < 0:
        raise ValueError(f"explain_top must be >= 0, got {explain_top}")
    funnel = count_funnel(tables, job, fresh_cutoff_us(ctx))
    summary = summarize(tables, funnel, ctx, eligible=funnel.eligible, counts=funnel.counts)
    if funnel.eligible == 0:
        kinds = [kind for kind, n in funnel.counts.items() if n > 0]
        return Decision(None, 0.0, (), no_placement_reason(job, kinds), summary)
    rows = best_rows(tables, funnel, ctx, weights, max(1, explain_top))
    return Decision(rows[0].factory_id, rows[0].score, tuple(rows[:explain_top]), None, summary)


def best_rows(
    tables: FleetTables, funnel: Funnel, ctx: RoutingContext, weights: FleetWeights, k: int
) -> list[Candidate]:
    """The k best eligible factories' rows, best first, exactly as the reference ranks them."""
    job = funnel.job
    w = weights.as_dict()
    w_fit, w_load, w_health = w["capability_fit"], w["load"], w["health"]
    w_affinity, w_cost = w["affinity"], w["cost_rate"]
    age, priority = job_terms(job, ctx)
    constant = w["age"] * age + w["priority"] * priority
    margin = 2e-9 + 1e-12 * (1.0 + math.fsum(w.values()))
    now_us, limit, cutoff = micros(ctx.now), ctx.unhealthy_after_s, funnel.cutoff_us
    entries = tables.entries

    heap: list[float] = []  # the k best estimates so far, least first
    pool: list[tuple[float, str]] = []  # every estimate that was within margin when seen

    def offer(estimate: float, factory_id: str) -> None:
        if len(heap) < k:
            heapq.heappush(heap, estimate)
        elif estimate > heap[0]:
            heapq.heapreplace(heap, estimate)
        if estimate >= heap[0] - margin:
            pool.append((estimate, factory_id))

    last = job.previous_factory_id
    previous = _eligible_previous(entries.get(last) if last is not None else None, funnel)
    if previous is not None:
        fit, affinity = label_terms(job, previous.view.labels, previous=True)
        health = health_term(age_s(now_us, previous.heartbeat_us), limit)
        estimate = constant + w_fit * fit + w_affinity * affinity + w_health * health
        offer(estimate + w_load * previous.load + w_cost * previous.cost_rate, previous.view.id)

    plans: list[tuple[float, float, float, int]] = []  # (bound, headroom, base, bucket #)
    for number, bucket in enumerate(funnel.buckets):
        freshest, best_load, best_cost = (
            bucket.free.last(),
            bucket.loads.last(),
            bucket.costs.last(),
        )
        if freshest is None or best_load is None or best_cost is None or freshest[0] < cutoff:
            continue
        fit, affinity = label_terms(job, bucket.labels, previous=False)
        base = constant + w_fit * fit + w_affinity * affinity
        headroom = base + w_load * best_load + w_cost * best_cost
        bound = headroom + w_health * health_term(age_s(now_us, freshest[0]), limit)
        plans.append((bound, headroom, base, number))
    plans.sort(reverse=True)

    previous_id = previous.view.id if previous is not None else None
    for bound, headroom, base, number in plans:
        if len(heap) == k and bound < heap[0] - margin:
            break
        for heartbeat_us, factory_id in funnel.buckets[number].free.descending():
            if heartbeat_us < cutoff:
                break
            health = health_term(age_s(now_us, heartbeat_us), limit)
            if len(heap) == k and headroom + w_health * health < heap[0] - margin:
                break
            if factory_id == previous_id:
                continue
            entry = entries[factory_id]
            offer(
                base + w_load * entry.load + w_health * health + w_cost * entry.cost_rate,
                factory_id,
            )

    floor = heap[0] - margin
    finalists = {factory_id for estimate, factory_id in pool if estimate >= floor}
    rows = [eligible_candidate(job, entries[f].view, ctx, weights) for f in finalists]
    rows.sort(key=rank_order)
    return rows[:k]


def _eligible_previous(entry: Entry | None, funnel: Funnel) -> Entry | None:
    """The job's previous factory when it passes every hard filter now, else None."""
    if entry is None or entry.standing is not None or entry.heartbeat_us < funnel.cutoff_us:
        return None
    view, job = entry.view, funnel.job
    fits = job.engine in view.engines and job.capabilities <= view.labels
    return entry if fits and view.reserved < view.slots else None
