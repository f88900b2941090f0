"""Soft constraints: one score per (job, factory) pair, as a sum of weighted terms.

Every term's value is in [0, 1], so a weight reads directly as "how many points this
preference is worth at most". The same pair score serves both directions (ranking factories
for a job, ranking waiting jobs for a freed slot), so a job's score means one thing.

Terms:
- capability_fit: (needed + 1) / (needed + 1 + extra), where `needed` is the number of
  capabilities the job requires and `extra` the factory's labels the job neither requires
  nor prefers. 1 for a tight fit; falls as the factory is more specialised than the job
  needs, which keeps specialised factories free for the jobs that need them.
- load: free slots after placement / slots. Spreads work over the fleet.
- health: 1 - heartbeat age / unhealthy_after_s. Prefers factories heard from recently.
- affinity: the mean of the soft hints the job gives: the share of its preferred labels the
  factory has, and 1 or 0 for "is its previous factory". 0 when it gives none.
- cost_rate: 1 / (1 + USD per hour). Cheaper is better, never below 0.
- age: min(1, waited / max_age_s). Aging, capped, so nothing starves.
- priority: low .25, normal .5, high .75, critical 1.

age and priority are the same for every factory, so they never change which factory wins;
they are kept in every breakdown so that a score means the same thing everywhere.

The terms are grouped by what they depend on (`label_terms`: the job and the factory's
labels; `factory_terms`: the factory alone; `health_term`: the heartbeat's age; `job_terms`:
the job alone), so that an index can compute each group once per bucket, factory or job and
still get the very floats `term_values` gets.
"""

from __future__ import annotations

import math

from routing.filters import seconds_since
from routing.model import PRIORITY_VALUES, FactoryView, JobRequest, RoutingContext, ScoreTerm
from routing.weights import TERMS, FleetWeights

__all__ = [
    "breakdown",
    "factory_terms",
    "health_term",
    "job_terms",
    "label_terms",
    "rank_score",
    "term_values",
    "total",
]


def term_values(job: JobRequest, factory: FactoryView, ctx: RoutingContext) -> dict[str, float]:
    """Every term's value in [0, 1], keyed by term name in `TERMS` order."""
    fit, affinity = label_terms(job, factory.labels, previous=factory.id == job.previous_factory_id)
    load, cost_rate = factory_terms(factory)
    age, priority = job_terms(job, ctx)
    values = {
        "capability_fit": fit,
        "load": load,
        "health": _health(factory, ctx),
        "affinity": affinity,
        "cost_rate": cost_rate,
        "age": age,
        "priority": priority,
    }
    return {term: values[term] for term in TERMS}


def label_terms(job: JobRequest, labels: frozenset[str], *, previous: bool) -> tuple[float, float]:
    """capability_fit and affinity of a factory with `labels` (`previous`: the job's last one)."""
    return _unit(_capability_fit(job, labels)), _unit(_affinity(job, labels, previous))


def factory_terms(factory: FactoryView) -> tuple[float, float]:
    """load and cost_rate: the terms that depend on the factory alone."""
    return _unit(_load(factory)), _unit(_cost_rate(factory))


def job_terms(job: JobRequest, ctx: RoutingContext) -> tuple[float, float]:
    """age and priority: the terms that are the same for every factory."""
    return _unit(_age(job, ctx)), _unit(PRIORITY_VALUES[job.priority])


def health_term(age_s: float, unhealthy_after_s: float) -> float:
    """health of a factory reporting healthy whose last heartbeat is `age_s` old."""
    return _unit(1.0 - age_s / unhealthy_after_s)


def breakdown(
    job: JobRequest, factory: FactoryView, ctx: RoutingContext, weights: FleetWeights
) -> tuple[ScoreTerm, ...]:
    """Every term with its value, weight and contribution (`value * weight`)."""
    terms = []
    for term, value in term_values(job, factory, ctx).items():
        weight = weights.weight(term)
        terms.append(ScoreTerm(term=term, value=value, weight=weight, contribution=value * weight))
    return tuple(terms)


def total(terms: tuple[ScoreTerm, ...]) -> float:
    """The score: the exactly rounded sum of the contributions, whatever their order."""
    return math.fsum(t.contribution for t in terms)


def rank_score(score: float) -> float:
    """The score as ranking compares it: equal to 1e-9, so float noise never beats a tie-break."""
    return round(score, 9)


def _capability_fit(job: JobRequest, labels: frozenset[str]) -> float:
    needed = len(job.capabilities)
    extra = len(labels - job.capabilities - job.preferred_labels)
    return (needed + 1) / (needed + 1 + extra)


def _load(factory: FactoryView) -> float:
    if factory.slots <= 0:
        return 0.0
    return (factory.slots - factory.reserved - 1) / factory.slots


def _health(factory: FactoryView, ctx: RoutingContext) -> float:
    if (
        not factory.reported_healthy
        or factory.last_heartbeat_at is None
        or factory.lease_lost is not None
    ):
        return 0.0
    age = seconds_since(ctx.now, factory.last_heartbeat_at)
    return health_term(age, ctx.unhealthy_after_s)


def _affinity(job: JobRequest, labels: frozenset[str], previous: bool) -> float:
    hints = []
    if job.preferred_labels:
        hints.append(len(job.preferred_labels & labels) / len(job.preferred_labels))
    if job.previous_factory_id is not None:
        hints.append(1.0 if previous else 0.0)
    return sum(hints) / len(hints) if hints else 0.0


def _cost_rate(factory: FactoryView) -> float:
    rate = factory.cost_rate_usd_per_hour
    if math.isnan(rate):
        return 0.0  # unknown cost ranks as the most expensive
    return 1.0 / (1.0 + max(0.0, rate))


def _age(job: JobRequest, ctx: RoutingContext) -> float:
    if job.waiting_since is None:
        return 0.0
    return seconds_since(ctx.now, job.waiting_since) / ctx.max_age_s


def _unit(value: float) -> float:
    """Clamp to [0, 1]; NaN counts as 0 so one bad input cannot poison a ranking."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))
