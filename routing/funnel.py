"""Where the fleet stands for one job at one instant, counted from `FleetTables`.

The counts are what the exhaustive reference would tally from its rows (how many factories
each hard filter excluded first), found without visiting the factories: the standing
exclusions are kept counted, staleness is a bisection per engine-set group and per bucket,
and the buckets that hold the job's capabilities come from the label index.

A few examples per kind make the summary readable; they are picked from sorted tables, so
they do not depend on the order the factories arrived in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from routing.candidates import FUNNEL, excluded_candidate
from routing.filters import check
from routing.fleet_tables import Bucket, FleetTables, Member
from routing.model import (
    Exclusion,
    ExclusionCount,
    FactoryView,
    FleetSummary,
    JobRequest,
    RoutingContext,
)
from routing.sorted_keys import SortedKeys

__all__ = ["EXAMPLES", "Funnel", "count_funnel", "summarize"]

EXAMPLES = 3  # excluded factories shown per kind


@dataclass(frozen=True, slots=True)
class Funnel:
    """The fleet counted for `job`: heartbeats at or after `cutoff_us` are fresh.

    `buckets` are the job's engine's buckets whose labels hold its capabilities: every
    eligible factory (`eligible` of them) is a fresh free member of one.
    """

    job: JobRequest
    cutoff_us: int
    factories: int
    counts: dict[Exclusion, int]
    no_slots: int  # of counts[FULL]: fresh members with no slots at all
    eligible: int
    buckets: tuple[Bucket, ...]


def count_funnel(tables: FleetTables, job: JobRequest, cutoff_us: int) -> Funnel:
    """Count, for each hard filter, the factories it excludes first; O(groups + buckets)."""
    counts = dict.fromkeys(FUNNEL, 0)
    for kind, ids in tables.standing.items():
        counts[kind] += len(ids)
    with_engine = 0
    for engines, members in tables.groups.items():
        stale = _stale(members, cutoff_us)
        counts[Exclusion.UNHEALTHY] += stale
        if job.engine in engines:
            with_engine += len(members) - stale
        else:
            counts[Exclusion.ENGINE] += len(members) - stale
    by_labels = tables.buckets.get(job.engine, {})
    buckets = tuple(
        by_labels[labels] for labels in tables.label_sets_with(job.engine, job.capabilities)
    )
    eligible = full = no_slots = 0
    for bucket in buckets:
        eligible += _fresh(bucket.free, cutoff_us)
        full += _fresh(bucket.full, cutoff_us)
        no_slots += _fresh(bucket.empty, cutoff_us)
    counts[Exclusion.CAPABILITIES] = with_engine - eligible - full - no_slots
    counts[Exclusion.FULL] = full + no_slots
    return Funnel(job, cutoff_us, len(tables.entries), counts, no_slots, eligible, buckets)


def summarize(
    tables: FleetTables,
    funnel: Funnel,
    ctx: RoutingContext,
    *,
    eligible: int,
    counts: dict[Exclusion, int],
    slotless_only: bool = False,
) -> FleetSummary:
    """The counts as a `FleetSummary`, with up to `EXAMPLES` excluded rows per kind.

    `slotless_only`: FULL counts only factories with no slots (a preemption plan's view,
    where the full ones with slots are candidates, not exclusions).
    """
    exclusions = []
    for kind in FUNNEL:
        if counts[kind] <= 0:
            continue
        rows = []
        for view in islice(_examples(tables, funnel, kind, slotless_only), EXAMPLES):
            out = check(funnel.job, view, ctx)
            if out is not None:
                rows.append(excluded_candidate(view, out))
        exclusions.append(ExclusionCount(kind, counts[kind], tuple(rows)))
    return FleetSummary(funnel.factories, eligible, tuple(exclusions))


def _examples(
    tables: FleetTables, funnel: Funnel, kind: Exclusion, slotless_only: bool
) -> Iterator[FactoryView]:
    """The factories `kind` excluded, lazily, in an order fixed by the tables' contents."""
    return tables.members(_example_ids(tables, funnel, kind, slotless_only))


def _example_ids(
    tables: FleetTables, funnel: Funnel, kind: Exclusion, slotless_only: bool
) -> Iterator[str]:
    yield from tables.standing.get(kind, ())
    engine = funnel.job.engine
    groups = sorted(tables.groups.items(), key=lambda item: sorted(item[0]))
    cutoff: Member = (funnel.cutoff_us, "")
    if kind == Exclusion.UNHEALTHY:  # the stale ones, stalest first
        for _, members in groups:
            yield from (m[1] for m in islice(members, _stale(members, funnel.cutoff_us)))
    elif kind == Exclusion.ENGINE:
        for engines, members in groups:
            if engine not in engines:
                yield from _fresh_ids(members, cutoff)
    elif kind in (Exclusion.CAPABILITIES, Exclusion.FULL):
        fitting = {bucket.labels for bucket in funnel.buckets}
        wanted = kind == Exclusion.FULL  # FULL: the fitting buckets; CAPABILITIES: the others
        by_labels = tables.buckets.get(engine, {})
        for labels in tables.bucket_order(engine):
            if (labels in fitting) == wanted:
                for keys in _lists(by_labels[labels], kind, slotless_only):
                    yield from _fresh_ids(keys, cutoff)


def _lists(bucket: Bucket, kind: Exclusion, slotless_only: bool) -> tuple[SortedKeys[Member], ...]:
    """Where a bucket holds the members `kind` excluded."""
    if kind == Exclusion.CAPABILITIES:
        return (bucket.free, bucket.full, bucket.empty)
    return (bucket.empty,) if slotless_only else (bucket.full, bucket.empty)


def _stale(members: SortedKeys[Member], cutoff_us: int) -> int:
    return members.count_below((cutoff_us, ""))


def _fresh(members: SortedKeys[Member], cutoff_us: int) -> int:
    return len(members) - _stale(members, cutoff_us)


def _fresh_ids(members: SortedKeys[Member], cutoff: Member) -> Iterator[str]:
    """The ids of the fresh members, freshest first."""
    for member in members.descending():
        if member < cutoff:
            return
        yield member[1]
