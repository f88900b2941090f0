"""Routing micro-benchmark: decisions per second of the pure `routing` module.

Every decision is measured three or four ways on the same inputs in the same process,
interleaved run by run, so the ratios are comparable across machines (the absolute rates
are not):

- the fast path: a `FleetIndex` (and `RunningIndex`) built once, then `select` and
  `plan_preemption` per decision, explaining the top 5 rows;
- the reference: `select_factory` and `select_with_preemption`, which filter, score and
  explain every factory on every decision;
- a naive scheduler that stops at the first match (so against it the ratio is O(1) against
  whatever the decision costs, and it falls as the fleet grows);
- the filtered scan: every item through routing's hard filters (`routing.filters`) with a
  trivial best (most free slots, highest priority then oldest, fewest victims needed) and no
  scores: what any scheduler that honours the filters pays.

The operations:

- `select_factory` (default weights, then with a product override resolved per decision)
  against a first-fit scan: the first factory offering the engine with a free slot;
- `select_job` (1,000 waiting jobs, one freed slot) against a FIFO scan: the first waiting
  job whose engine the factory offers (no fast path: it does not depend on the fleet);
- `select_with_preemption` (a critical job, every slot taken by low and normal jobs)
  against a first-victim scan: the first running job of a lower priority on a factory
  offering the engine;
- index updates: `FleetIndex.set_reserved` (a reservation then its release on a factory)
  against building the index again.

Each measurement is warmed up, calibrated to a number of passes over the inputs that lasts
at least `min_run_s`, then repeated `repeats` times with the garbage collector paused
(`bench.timing`); rates are medians and ratios the median of the per-run
ratios. Every fast decision is then checked (the chosen factory passes the hard filters, a
victim may be evicted, ...) and compared with the reference's (the same factory, score and
reason, or the same plan, and the same top rows), and the naive ones are checked too: the
report counts the naive decisions that break a hard filter routing enforces.
"""

from __future__ import annotations

import gc
import platform
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from bench.timing import Rates, Timing, measure, paired_ratio
from launch.cli.render import table
from routing.filters import check, factory_exclusion, job_exclusion, seconds_since
from routing.fleet_index import FleetIndex
from routing.model import (
    ACTIVE,
    CORDONED,
    PRIORITY_VALUES,
    REVOKED,
    Decision,
    FactoryView,
    JobChoice,
    JobRequest,
    RoutingContext,
)
from routing.reference import select_factory
from routing.score import rank_score
from routing.select import select_job
from routing.weights import FleetWeights, resolve_weights

try:
    from routing.preempt import PreemptionPlan, PreemptionPolicy, RunningJob
    from routing.reference import select_with_preemption
    from routing.running_index import RunningIndex

    _PREEMPTION_MISSING: str | None = None
except ImportError as exc:  # pragma: no cover - preempt.py is optional for this benchmark
    _PREEMPTION_MISSING = f"routing.preempt is not importable ({exc})"

__all__ = [
    "OPERATIONS",
    "FleetStats",
    "OpResult",
    "Rates",
    "RoutingBenchReport",
    "Scenario",
    "UpdateResult",
    "build_scenario",
    "check_job_choice",
    "check_placement",
    "check_preemption",
    "fifo",
    "first_fit",
    "first_victim",
    "render_routing_report",
    "run_routing_bench",
    "same_placement",
    "same_plan",
    "victim_problem",
]

T = TypeVar("T")
R = TypeVar("R")

# Operation keys, in report order, with how the report names them and their naive baseline.
OPERATIONS: dict[str, tuple[str, str]] = {
    "select_factory": ("select_factory", "first-fit"),
    "select_factory_override": ("select_factory + product override", "first-fit"),
    "select_job": ("select_job", "FIFO"),
    "select_with_preemption": ("select_with_preemption", "first victim"),
}

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
UNHEALTHY_AFTER_S = 60.0
ENGINES: tuple[str, ...] = ("claude", "codex", "gemini", "sim")
ENGINE_WEIGHTS: tuple[float, ...] = (0.45, 0.3, 0.15, 0.1)
LABELS: tuple[str, ...] = (
    "linux",
    "macos",
    "gpu",
    "large-disk",
    "python",
    "node",
    "rust",
    "secure-net",
)
# A product that cares about cost and affinity more than spreading load.
PRODUCT_OVERRIDE: dict[str, float] = {"costRate": 2.0, "load": 0.5, "affinity": 1.5}
MIN_RUNTIME_S = 300.0
EXPLAIN_TOP = 5  # rows the fast path explains per decision

_DEFAULTS = FleetWeights()
_RANK: dict[str, int] = {
    p: i for i, p in enumerate(sorted(PRIORITY_VALUES, key=PRIORITY_VALUES.__getitem__))
}


# --- report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OpResult:
    """One operation on one fleet: the fast path, the reference, the naive baseline and the
    filtered scan.

    `ours` is the fast path (the reference itself for `select_job`, which has none, and then
    `reference` is None). `checked` decisions of ours were validated, `valid` of them
    passed, `same` of them equal the reference's; `placed` chose something (a factory, a
    job, a plan). `naive_unsafe` naive decisions broke a hard filter routing enforces.
    `problems` holds the first few failed checks, for a person.
    """

    operation: str
    factories: int
    ours: Rates
    naive: Rates
    filtered: Rates
    checked: int
    valid: int
    placed: int
    naive_unsafe: int
    problems: tuple[str, ...]
    reference: Rates | None = None
    same: int | None = None

    @property
    def label(self) -> str:
        return OPERATIONS[self.operation][0]

    @property
    def baseline(self) -> str:
        return OPERATIONS[self.operation][1]

    @property
    def ratio(self) -> float:
        """Our decisions/s over the naive baseline's, the median of the paired runs."""
        return paired_ratio(self.ours, self.naive)

    @property
    def filtered_ratio(self) -> float:
        """Our decisions/s over the filtered scan's, the median of the paired runs."""
        return paired_ratio(self.ours, self.filtered)

    @property
    def reference_ratio(self) -> float:
        """The fast path's decisions/s over the reference's (the speed-up), paired; 0 if none."""
        return paired_ratio(self.ours, self.reference) if self.reference is not None else 0.0


@dataclass(frozen=True)
class UpdateResult:
    """Reservation updates on the index of one fleet: incremental beside a rebuild.

    One update is one `set_reserved` (a reservation, or its release); the rebuild builds the
    index again from the fleet with that one view changed. `valid` of `checked` decisions
    made after every timed update equal a freshly built index's.
    """

    factories: int
    incremental: Rates
    rebuild: Rates
    checked: int
    valid: int

    @property
    def ratio(self) -> float:
        """Incremental updates/s over rebuilds/s, the median of the paired runs."""
        return paired_ratio(self.incremental, self.rebuild)


@dataclass(frozen=True)
class FleetStats:
    """The shape of one generated fleet (and of its all-slots-taken preemption twin)."""

    factories: int
    slots: int
    free_slots: int
    schedulable: int  # active, healthy and fresh: what the status and health filters pass
    cordoned: int
    revoked: int
    unhealthy: int  # active but reporting unhealthy, stale or never heard from
    full: int
    running: int  # running jobs on the preemption fleet (one per slot)
    not_preemptible: int


@dataclass(frozen=True)
class RoutingBenchReport:
    seed: int
    decisions: int
    waiting_jobs: int
    repeats: int
    min_run_s: float
    python: str
    fleets: tuple[FleetStats, ...]
    results: tuple[OpResult, ...]
    skipped: tuple[str, ...]
    updates: tuple[UpdateResult, ...] = ()

    @property
    def all_valid(self) -> bool:
        """Every decision passed its checks and, where there is one, equals the reference's."""
        return all(
            r.valid == r.checked and r.same in (None, r.checked) for r in self.results
        ) and all(u.valid == u.checked for u in self.updates)

    def result(self, operation: str, factories: int) -> OpResult:
        for r in self.results:
            if r.operation == operation and r.factories == factories:
                return r
        raise KeyError(f"no result for {operation} on {factories} factories")


# --- scenario ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Deterministic inputs for one fleet size: everything the operations are given.

    `jobs` ask `fleet` for a factory; `freed` are the factories whose slot frees for one of
    `waiting` (oldest first, as a FIFO queue holds them); `critical` ask `full_fleet`, whose
    every slot `running` holds, to preempt.
    """

    ctx: RoutingContext
    fleet: tuple[FactoryView, ...]
    jobs: tuple[JobRequest, ...]
    waiting: tuple[JobRequest, ...]
    freed: tuple[FactoryView, ...]
    full_fleet: tuple[FactoryView, ...]
    running: tuple[RunningJob, ...]
    critical: tuple[JobRequest, ...]


def build_scenario(factories: int, *, decisions: int, waiting_jobs: int, seed: int) -> Scenario:
    """The fleet, jobs and running work for `factories` factories, the same for the same seed."""
    rng = random.Random(seed * 1_000_003 + factories)
    ctx = RoutingContext(now=NOW, unhealthy_after_s=UNHEALTHY_AFTER_S, max_age_s=3600.0)
    fleet = tuple(_factory(rng, i) for i in range(factories))
    ids = [f.id for f in fleet]
    jobs = tuple(
        _job(rng, f"j{i:05d}", ids, rng.choice(("low", "normal", "high"))) for i in range(decisions)
    )
    waiting = tuple(
        sorted(
            (
                _job(rng, f"w{i:05d}", ids, rng.choice(tuple(PRIORITY_VALUES)))
                for i in range(waiting_jobs)
            ),
            key=lambda j: (j.waiting_since or NOW, j.job_id),
        )
    )
    schedulable = [f for f in fleet if factory_exclusion(f, ctx) is None] or list(fleet)
    freed = tuple(rng.choice(schedulable) for _ in range(decisions))
    full_fleet = tuple(replace(f, reserved=f.slots) for f in fleet)
    running: tuple[RunningJob, ...] = ()
    if _PREEMPTION_MISSING is None:
        running = tuple(
            RunningJob(
                job_id=f"r-{f.id}-{k}",
                factory_id=f.id,
                priority=rng.choice(("low", "normal")),
                started_at=NOW - timedelta(seconds=rng.uniform(60.0, 3 * 3600.0)),
                preemptible=rng.random() >= 0.1,
            )
            for f in full_fleet
            for k in range(f.slots)
        )
    critical = tuple(_job(rng, f"c{i:05d}", ids, "critical") for i in range(decisions))
    return Scenario(ctx, fleet, jobs, waiting, freed, full_fleet, running, critical)


def _factory(rng: random.Random, i: int) -> FactoryView:
    slots = rng.randint(1, 8)
    roll = rng.random()
    status = REVOKED if roll < 0.01 else CORDONED if roll < 0.04 else ACTIVE
    health = rng.random()
    healthy = health >= 0.04
    if health < 0.01:
        heartbeat: datetime | None = None
    elif health < 0.07:
        heartbeat = NOW - timedelta(seconds=rng.uniform(UNHEALTHY_AFTER_S + 1, 3600.0))
    else:
        heartbeat = NOW - timedelta(seconds=rng.uniform(0.0, UNHEALTHY_AFTER_S / 2))
    return FactoryView(
        id=f"f{i:05d}",
        engines=frozenset(rng.sample(ENGINES, rng.choice((1, 1, 2, 2, 3)))),
        labels=frozenset(rng.sample(LABELS, rng.randint(0, 4))),
        slots=slots,
        reserved=rng.randint(0, slots),
        status=status,
        last_heartbeat_at=heartbeat,
        reported_healthy=healthy,
        cost_rate_usd_per_hour=round(rng.uniform(0.5, 6.0), 2),
    )


def _job(rng: random.Random, job_id: str, factory_ids: Sequence[str], priority: str) -> JobRequest:
    return JobRequest(
        job_id=job_id,
        engine=rng.choices(ENGINES, ENGINE_WEIGHTS)[0],
        capabilities=frozenset(rng.sample(LABELS, rng.choice((0, 0, 1, 1, 2)))),
        priority=priority,
        waiting_since=NOW - timedelta(seconds=rng.uniform(0.0, 2 * 3600.0)),
        preferred_labels=frozenset(rng.sample(LABELS, rng.randint(0, 2))),
        previous_factory_id=rng.choice(factory_ids) if rng.random() < 0.25 else None,
    )


def _stats(s: Scenario) -> FleetStats:
    fleet = s.fleet
    active = [f for f in fleet if f.status == ACTIVE]
    schedulable = sum(1 for f in fleet if factory_exclusion(f, s.ctx) is None)
    return FleetStats(
        factories=len(fleet),
        slots=sum(f.slots for f in fleet),
        free_slots=sum(f.free for f in fleet),
        schedulable=schedulable,
        cordoned=sum(1 for f in fleet if f.status == CORDONED),
        revoked=sum(1 for f in fleet if f.status == REVOKED),
        unhealthy=len(active) - schedulable,
        full=sum(1 for f in fleet if f.free == 0),
        running=len(s.running),
        not_preemptible=sum(1 for r in s.running if not r.preemptible),
    )


# --- naive baselines and filtered scans -------------------------------------------------


def first_fit(job: JobRequest, fleet: Sequence[FactoryView]) -> FactoryView | None:
    """A naive placement: the first factory offering the engine with a free slot."""
    for f in fleet:
        if job.engine in f.engines and f.reserved < f.slots:
            return f
    return None


def fifo(waiting: Sequence[JobRequest], factory: FactoryView) -> JobRequest | None:
    """A naive pick for a freed slot: the first waiting job whose engine the factory offers."""
    for j in waiting:
        if j.engine in factory.engines:
            return j
    return None


def first_victim(
    job: JobRequest, running: Sequence[RunningJob], by_id: dict[str, FactoryView]
) -> RunningJob | None:
    """A naive eviction: the first running job of lower priority on a factory with the engine."""
    rank = _RANK[job.priority]
    for r in running:
        if _RANK[r.priority] < rank and job.engine in by_id[r.factory_id].engines:
            return r
    return None


def _filtered_factory(
    job: JobRequest, fleet: Sequence[FactoryView], ctx: RoutingContext, capacity: bool = True
) -> FactoryView | None:
    """Hard filters on every factory, then the most free slots (fewest victims when full)."""
    best: FactoryView | None = None
    for f in fleet:
        if check(job, f, ctx, capacity=capacity) is None and (
            best is None or f.slots - f.reserved > best.slots - best.reserved
        ):
            best = f
    return best


def _filtered_job(
    waiting: Sequence[JobRequest], factory: FactoryView, ctx: RoutingContext
) -> JobRequest | None:
    """Hard filters on every waiting job, then the highest priority, then the oldest."""
    if factory_exclusion(factory, ctx) is not None:
        return None
    best: JobRequest | None = None
    best_key = (0, NOW)
    for j in waiting:
        if job_exclusion(j, factory) is None:
            key = (-_RANK[j.priority], j.waiting_since or NOW)
            if best is None or key < best_key:
                best, best_key = j, key
    return best


# --- checks -----------------------------------------------------------------------------


def check_placement(
    job: JobRequest,
    fleet: Sequence[FactoryView],
    ctx: RoutingContext,
    weights: FleetWeights,
    decision: Decision,
) -> str | None:
    """Why `decision` is not a valid placement of `job`, or None when it is.

    Valid: every factory is a candidate (or, for a fast decision, counted in its summary);
    the chosen one exists, passes every hard filter, has the best score shown and was scored
    with `weights`; nothing chosen only when no factory passes the filters.
    """
    counted = len(decision.candidates) if decision.summary is None else decision.summary.factories
    if counted != len(fleet):
        return f"{job.job_id}: {counted} candidates for {len(fleet)} factories"
    if decision.factory_id is None:
        fits = next((f.id for f in fleet if check(job, f, ctx) is None), None)
        return f"{job.job_id}: not placed, but {fits} fits" if fits else None
    chosen = next((f for f in fleet if f.id == decision.factory_id), None)
    if chosen is None:
        return f"{job.job_id}: chose unknown factory {decision.factory_id}"
    out = check(job, chosen, ctx)
    if out is not None:
        return f"{job.job_id}: chose {chosen.id}, which is excluded ({out.because})"
    if not decision.candidates:
        return f"{job.job_id}: chose {chosen.id} without its row"
    top = decision.candidates[0]
    best = max(rank_score(c.score) for c in decision.candidates if c.eligible)
    if top.factory_id != chosen.id or rank_score(decision.score) != best:
        return f"{job.job_id}: chose {chosen.id} with score {decision.score}, best is {best}"
    if any(t.weight != weights.weight(t.term) for t in top.breakdown):
        return f"{job.job_id}: scored {chosen.id} without the weights asked for"
    return None


def check_job_choice(
    waiting: Sequence[JobRequest],
    factory: FactoryView,
    ctx: RoutingContext,
    choice: JobChoice | None,
) -> str | None:
    """Why `choice` is not a valid pick for a slot freeing on `factory`, or None when it is."""
    runnable = factory_exclusion(factory, ctx) is None
    if choice is None:
        fits = next((j.job_id for j in waiting if job_exclusion(j, factory) is None), None)
        return f"{factory.id}: picked nothing, but {fits} fits" if runnable and fits else None
    if not runnable:
        return f"{factory.id}: picked {choice.job_id} for a factory that runs nothing"
    job = next((j for j in waiting if j.job_id == choice.job_id), None)
    if job is None:
        return f"{factory.id}: picked unknown job {choice.job_id}"
    out = job_exclusion(job, factory)
    if out is not None:
        return f"{factory.id}: picked {job.job_id}, which it cannot run ({out.because})"
    return None


def victim_problem(
    job: JobRequest, victim: RunningJob, ctx: RoutingContext, policy: PreemptionPolicy
) -> str | None:
    """Why `victim` may not be evicted for `job`, or None when it may."""
    if _RANK[victim.priority] >= _RANK[job.priority]:
        return f"{victim.job_id} has priority {victim.priority}, not lower than {job.priority}"
    if victim.priority in policy.never_preempt:
        return f"{victim.job_id} has priority {victim.priority}, which is never preempted"
    if not victim.preemptible:
        return f"{victim.job_id} is not preemptible"
    if seconds_since(ctx.now, victim.started_at) < victim.min_runtime(policy):
        return f"{victim.job_id} has run less than {victim.min_runtime(policy):g}s"
    return None


def check_preemption(
    job: JobRequest,
    running: Sequence[RunningJob],
    fleet: Sequence[FactoryView],
    ctx: RoutingContext,
    policy: PreemptionPolicy,
    plan: PreemptionPlan | None,
) -> str | None:
    """Why `plan` is not a valid preemption for `job` on a full fleet, or None when it is.

    Valid: the factory passes the hard filters but capacity; it evicts exactly enough to
    free a slot, each victim running there and allowed to be evicted; no plan only when no
    factory could be freed that way.
    """
    on: dict[str, list[RunningJob]] = {}
    for r in running:
        on.setdefault(r.factory_id, []).append(r)

    def frees(f: FactoryView) -> bool:
        allowed = [r for r in on.get(f.id, []) if victim_problem(job, r, ctx, policy) is None]
        return f.slots > 0 and len(allowed) >= f.reserved - f.slots + 1

    if plan is None:
        fits = next(
            (f.id for f in fleet if check(job, f, ctx, capacity=False) is None and frees(f)), None
        )
        return f"{job.job_id}: no plan, but evicting on {fits} would free a slot" if fits else None
    chosen = next((f for f in fleet if f.id == plan.factory_id), None)
    if chosen is None:
        return f"{job.job_id}: plan on unknown factory {plan.factory_id}"
    out = check(job, chosen, ctx, capacity=False)
    if out is not None:
        return f"{job.job_id}: plan on {chosen.id}, which is excluded ({out.because})"
    needed = chosen.reserved - chosen.slots + 1
    if len(plan.evict) != needed or len(set(plan.evict)) != needed:
        return f"{job.job_id}: evicts {len(plan.evict)} on {chosen.id}, which needs {needed}"
    there = {r.job_id: r for r in on.get(chosen.id, [])}
    for victim_id in plan.evict:
        victim = there.get(victim_id)
        if victim is None:
            return f"{job.job_id}: evicts {victim_id}, which does not run on {chosen.id}"
        problem = victim_problem(job, victim, ctx, policy)
        if problem is not None:
            return f"{job.job_id}: evicts {problem}"
    return None


def same_placement(fast: Decision, reference: Decision) -> bool:
    """The same factory, score and reason, and the fast rows are the reference's best ones."""
    best = [c for c in reference.candidates if c.eligible][: len(fast.candidates)]
    picked = (fast.factory_id, fast.score, fast.reason)
    return picked == (reference.factory_id, reference.score, reference.reason) and (
        list(fast.candidates) == best
    )


def same_plan(fast: PreemptionPlan | None, reference: PreemptionPlan | None) -> bool:
    """Both none, or the same factory, victims and reason, and the reference's best rows."""
    if fast is None or reference is None:
        return fast is reference
    best = [c for c in reference.breakdown if c.feasible][: len(fast.breakdown)]
    picked = (fast.factory_id, fast.evict, fast.reason)
    return picked == (reference.factory_id, reference.evict, reference.reason) and (
        list(fast.breakdown) == best
    )


# --- measurement ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """Routing's decisions checked, and the naive ones."""

    checked: int
    valid: int
    placed: int
    naive_unsafe: int
    problems: tuple[str, ...]


def _outcome(problems: Sequence[str | None], placed: int, naive_unsafe: int) -> _Outcome:
    found = tuple(p for p in problems if p is not None)
    return _Outcome(len(problems), len(problems) - len(found), placed, naive_unsafe, found[:5])


@dataclass(frozen=True)
class _Calls(Generic[T, R]):
    """What one operation measures on each input: ours, the reference, naive, filtered."""

    ours: Callable[[T], R]
    reference: Callable[[T], R] | None
    naive: Callable[[T], object]
    filtered: Callable[[T], object]
    same: Callable[[R, R], bool] | None = None


def _bench_op(
    operation: str,
    factories: int,
    calls: _Calls[T, R],
    inputs: Sequence[T],
    judge: Callable[[Sequence[T], Sequence[R]], _Outcome],
    timing: Timing,
) -> OpResult:
    """Warm up, calibrate, then time every call interleaved, and judge our decisions.

    Our decisions (and the reference's) are kept from the last pass, to be judged and
    compared; they are the same in every pass.
    """
    gc.collect()  # once per operation: a full collection costs more than a tiny run
    ours: list[R] = []
    expected: list[R] = []

    def keeping(call: Callable[[T], R], into: list[R]) -> Callable[[], None]:
        def run() -> None:
            into[:] = [call(item) for item in inputs]

        return run

    def pass_of(call: Callable[[T], object]) -> Callable[[], None]:
        def run() -> None:
            for item in inputs:
                call(item)

        return run

    runs = [keeping(calls.ours, ours)]
    if calls.reference is not None:
        runs.append(keeping(calls.reference, expected))
    runs += [pass_of(calls.naive), pass_of(calls.filtered)]
    warm = [calls.ours, calls.reference, calls.naive, calls.filtered]
    for call in [c for c in warm if c is not None]:
        for item in inputs[: timing.warmup]:
            call(item)
    rates = measure([(run, len(inputs)) for run in runs], timing)
    outcome = judge(inputs, ours)
    same = None
    if calls.same is not None and calls.reference is not None:
        same = sum(1 for a, b in zip(ours, expected, strict=True) if calls.same(a, b))
    return OpResult(
        operation=operation,
        factories=factories,
        ours=rates[0],
        naive=rates[-2],
        filtered=rates[-1],
        checked=outcome.checked,
        valid=outcome.valid,
        placed=outcome.placed,
        naive_unsafe=outcome.naive_unsafe,
        problems=outcome.problems,
        reference=rates[1] if calls.reference is not None else None,
        same=same,
    )


def _placement_ops(s: Scenario, t: Timing) -> list[OpResult]:
    fleet, ctx = s.fleet, s.ctx

    def naive_unsafe(jobs: Sequence[JobRequest]) -> int:
        picks = [(j, first_fit(j, fleet)) for j in jobs]
        return sum(1 for j, f in picks if f is not None and check(j, f, ctx) is not None)

    def judge_with(
        weights: FleetWeights,
    ) -> Callable[[Sequence[JobRequest], Sequence[Decision]], _Outcome]:
        def judge(jobs: Sequence[JobRequest], decisions: Sequence[Decision]) -> _Outcome:
            problems = [
                check_placement(j, fleet, ctx, weights, d)
                for j, d in zip(jobs, decisions, strict=True)
            ]
            placed = sum(1 for d in decisions if d.factory_id is not None)
            return _outcome(problems, placed, naive_unsafe(jobs))

        return judge

    index = FleetIndex(fleet)
    overridden = resolve_weights(_DEFAULTS, PRODUCT_OVERRIDE, None)

    def naive(job: JobRequest) -> object:
        return first_fit(job, fleet)

    def filtered(job: JobRequest) -> object:
        return _filtered_factory(job, fleet, ctx)

    def calls(resolve: Callable[[], FleetWeights]) -> _Calls[JobRequest, Decision]:
        """The weights resolved per decision, as a product's override would be."""

        def fast(job: JobRequest) -> Decision:
            return index.select(job, ctx, resolve(), explain_top=EXPLAIN_TOP)

        def reference(job: JobRequest) -> Decision:
            return select_factory(job, fleet, ctx, resolve())

        return _Calls(fast, reference, naive, filtered, same_placement)

    def defaults() -> FleetWeights:
        return _DEFAULTS

    def product() -> FleetWeights:
        return resolve_weights(_DEFAULTS, PRODUCT_OVERRIDE, None)

    n = len(fleet)
    return [
        _bench_op("select_factory", n, calls(defaults), s.jobs, judge_with(_DEFAULTS), t),
        _bench_op("select_factory_override", n, calls(product), s.jobs, judge_with(overridden), t),
    ]


def _select_job_op(s: Scenario, t: Timing) -> OpResult:
    waiting, ctx = s.waiting, s.ctx

    def ours(factory: FactoryView) -> JobChoice | None:
        return select_job(waiting, factory, ctx, _DEFAULTS)

    def naive(factory: FactoryView) -> object:
        return fifo(waiting, factory)

    def filtered(factory: FactoryView) -> object:
        return _filtered_job(waiting, factory, ctx)

    def judge(freed: Sequence[FactoryView], choices: Sequence[JobChoice | None]) -> _Outcome:
        problems = [
            check_job_choice(waiting, f, ctx, c) for f, c in zip(freed, choices, strict=True)
        ]
        unsafe = 0
        for f in freed:
            pick = fifo(waiting, f)
            if pick is not None and check(pick, f, ctx, capacity=False) is not None:
                unsafe += 1
        return _outcome(problems, sum(1 for c in choices if c is not None), unsafe)

    return _bench_op(
        "select_job", len(s.fleet), _Calls(ours, None, naive, filtered), s.freed, judge, t
    )


def _preemption_op(s: Scenario, t: Timing) -> OpResult:
    fleet, running, ctx = s.full_fleet, s.running, s.ctx
    policy = PreemptionPolicy(min_runtime_s=MIN_RUNTIME_S)
    by_id = {f.id: f for f in fleet}
    index, running_index = FleetIndex(fleet), RunningIndex(running)

    def fast(job: JobRequest) -> PreemptionPlan | None:
        return index.plan_preemption(
            job, running_index, ctx, _DEFAULTS, policy, explain_top=EXPLAIN_TOP
        )

    def reference(job: JobRequest) -> PreemptionPlan | None:
        return select_with_preemption(job, running, fleet, ctx, _DEFAULTS, policy)

    def naive(job: JobRequest) -> object:
        return first_victim(job, running, by_id)

    def filtered(job: JobRequest) -> object:
        return _filtered_factory(job, fleet, ctx, capacity=False)

    def judge(jobs: Sequence[JobRequest], plans: Sequence[PreemptionPlan | None]) -> _Outcome:
        problems = [
            check_preemption(j, running, fleet, ctx, policy, p)
            for j, p in zip(jobs, plans, strict=True)
        ]
        unsafe = 0
        for j in jobs:
            victim = first_victim(j, running, by_id)
            if victim is not None and (
                check(j, by_id[victim.factory_id], ctx, capacity=False) is not None
                or victim_problem(j, victim, ctx, policy) is not None
            ):
                unsafe += 1
        return _outcome(problems, sum(1 for p in plans if p is not None), unsafe)

    calls = _Calls(fast, reference, naive, filtered, same_plan)
    return _bench_op("select_with_preemption", len(fleet), calls, s.critical, judge, t)


def _update_op(s: Scenario, t: Timing) -> UpdateResult:
    """A reservation then its release on each freed factory, beside rebuilding the index."""
    index = FleetIndex(s.fleet)
    changes = [(f.id, n) for f in s.freed for n in (f.reserved + 1, f.reserved)]
    fleet = list(s.fleet)
    first = s.freed[0]
    where = fleet.index(first)

    def incremental() -> None:
        for factory_id, reserved in changes:
            index.set_reserved(factory_id, reserved)

    def rebuild() -> None:
        for reserved in (first.reserved + 1, first.reserved):
            fleet[where] = replace(first, reserved=reserved)
            FleetIndex(fleet)

    gc.collect()
    incremental_rates, rebuild_rates = measure([(incremental, len(changes)), (rebuild, 2)], t)
    fresh = FleetIndex(s.fleet)
    valid = sum(
        1
        for job in s.jobs
        if index.select(job, s.ctx, _DEFAULTS) == fresh.select(job, s.ctx, _DEFAULTS)
    )
    return UpdateResult(len(s.fleet), incremental_rates, rebuild_rates, len(s.jobs), valid)


def run_routing_bench(
    factory_counts: Sequence[int] = (1_000, 10_000),
    decisions: int = 20,
    seed: int = 0,
    *,
    waiting_jobs: int = 1_000,
    repeats: int = 5,
    warmup: int = 3,
    min_run_s: float = 0.2,
) -> RoutingBenchReport:
    """Measure every operation on a generated fleet of each size; see the module docstring.

    `decisions` distinct inputs (jobs, freed slots, critical jobs) make one pass; the first
    `warmup` of them run untimed, then one timed pass calibrates how many passes make a run
    last at least `min_run_s`; rates are the median of `repeats` runs.
    """
    if not factory_counts or any(n < 1 for n in factory_counts):
        raise ValueError(f"factory_counts must be sizes >= 1, got {tuple(factory_counts)!r}")
    for name, value in (("decisions", decisions), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if waiting_jobs < 1 or warmup < 0 or not min_run_s >= 0:
        raise ValueError("waiting_jobs must be >= 1, warmup >= 0 and min_run_s >= 0")
    timing = Timing(repeats=repeats, warmup=warmup, min_run_s=min_run_s)
    fleets: list[FleetStats] = []
    results: list[OpResult] = []
    updates: list[UpdateResult] = []
    for n in factory_counts:
        s = build_scenario(n, decisions=decisions, waiting_jobs=waiting_jobs, seed=seed)
        fleets.append(_stats(s))
        results += _placement_ops(s, timing)
        results.append(_select_job_op(s, timing))
        if _PREEMPTION_MISSING is None:
            results.append(_preemption_op(s, timing))
        updates.append(_update_op(s, timing))
    skipped = (
        () if _PREEMPTION_MISSING is None else (f"select_with_preemption: {_PREEMPTION_MISSING}",)
    )
    return RoutingBenchReport(
        seed=seed,
        decisions=decisions,
        waiting_jobs=waiting_jobs,
        repeats=repeats,
        min_run_s=min_run_s,
        python=platform.python_version(),
        fleets=tuple(fleets),
        results=tuple(results),
        skipped=skipped,
        updates=tuple(updates),
    )


# --- rendering --------------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ratio(value: float) -> str:
    if value <= 0:
        return "-"
    if value >= 10:
        return f"{value:,.0f}x"
    if value >= 0.1:
        return f"{value:.2f}x"
    return f"1/{1 / value:,.0f}"


def _ms(rate: float) -> str:
    if rate <= 0:
        return "-"
    ms = 1000 / rate
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _us(rate: float) -> str:
    return f"{1e6 / rate:.3g}" if rate > 0 else "-"


def render_routing_report(report: RoutingBenchReport) -> str:
    """The benchmark as tables of decisions/s with the ratios, then the fleets and notes."""
    head = (
        f"routing micro-benchmark, seed {report.seed}, Python {report.python}: "
        f"{report.decisions} distinct decisions per pass, median of {report.repeats} runs "
        f"of >= {report.min_run_s:g}s (ratio = ours / baseline, paired per run; ours = the "
        f"fast path, a FleetIndex explaining the top {EXPLAIN_TOP} rows)"
    )
    rows = [
        [
            r.label,
            f"{r.factories:,}",
            _rate(r.ours.median),
            _ms(r.ours.median),
            _ms(r.reference.median) if r.reference is not None else "-",
            _ratio(r.reference_ratio),
            f"{_rate(r.naive.median)} ({r.baseline})",
            _ratio(r.ratio),
            _rate(r.filtered.median),
            _ratio(r.filtered_ratio),
            f"{r.valid}/{r.checked}",
            f"{r.same}/{r.checked}" if r.same is not None else "-",
            f"{r.placed}/{r.checked}",
            f"{r.naive_unsafe}/{r.checked}",
        ]
        for r in report.results
    ]
    body = table(
        [
            "operation",
            "factories",
            "decisions/s",
            "ms/decision",
            "reference ms",
            "vs reference",
            "naive/s",
            "vs naive",
            "filtered/s",
            "vs filtered",
            "valid",
            "same",
            "placed",
            "naive unsafe",
        ],
        rows,
    )
    lines = [head, body, ""]
    if report.updates:
        updates = [
            [
                "set_reserved (reserve, release)",
                f"{u.factories:,}",
                _rate(u.incremental.median),
                _us(u.incremental.median),
                _rate(u.rebuild.median),
                _ms(u.rebuild.median),
                _ratio(u.ratio),
                f"{u.valid}/{u.checked}",
            ]
            for u in report.updates
        ]
        headers = [
            "index update",
            "factories",
            "updates/s",
            "us/update",
            "rebuilds/s",
            "ms/rebuild",
            "vs rebuild",
            "valid",
        ]
        lines += [table(headers, updates), ""]
    for f in report.fleets:
        lines.append(
            f"{f.factories:,} factories: {f.slots:,} slots ({f.free_slots:,} free, "
            f"{f.full:,} factories full), {f.schedulable:,} active and healthy, "
            f"{f.cordoned:,} cordoned, {f.revoked:,} revoked, {f.unhealthy:,} unhealthy; "
            f"preemption fleet: every slot taken by {f.running:,} low/normal jobs "
            f"({f.not_preemptible:,} not preemptible)"
        )
    lines.append(
        f"select_job ranks {report.waiting_jobs:,} waiting jobs for one freed slot (no fast "
        "path: it does not depend on the fleet); reference = select_factory / "
        "select_with_preemption, every factory scored and explained; naive baselines: "
        "first-fit = first factory with the engine and a free slot, FIFO = first waiting job "
        "with the engine, first victim = first lower-priority running job on a factory with "
        "the engine; filtered = routing's hard filters on every item, no scores; same = "
        "decisions equal to the reference's (pick, score, reason or plan, and top rows)"
    )
    for problem in (p for r in report.results for p in r.problems):
        lines.append(f"INVALID {problem}")
    for r in report.results:
        if r.same is not None and r.same != r.checked:
            lines.append(f"DIFFERS {r.label} on {r.factories:,} factories: {r.same}/{r.checked}")
    for u in report.updates:
        if u.valid != u.checked:
            lines.append(
                f"INVALID index updates on {u.factories:,} factories: {u.valid}/{u.checked}"
            )
    lines += [f"skipped {note}" for note in report.skipped]
    return "\n".join(lines)
