"""FleetIndex: the fleet kept indexed between decisions, so that a decision does not cost
O(factories) of Python work and explains only its best few rows.

Build it once from the `FactoryView`s, keep it current with `upsert` (a heartbeat, a status
or label change), `remove` and `set_reserved` (a reservation or a release), and ask it:

- `select(job, ctx, weights, explain_top=5)`: the same factory, score and reason as
  `routing.select_factory`, with the best `explain_top` eligible rows and a `FleetSummary`
  (how many factories each hard filter excluded, with a few examples) instead of a row per
  factory;
- `plan_preemption(job, running, ctx, weights, policy, explain_top=5)`: the same plan
  (factory, victims, reason) as `routing.select_with_preemption`, with its best
  `explain_top` feasible rows and a summary.

Keys (`routing.fleet_tables`): schedulable factories by engine, then by exact label set (a
bucket), with a label index (engine -> label -> label sets) to find the buckets holding a
job's capabilities; each bucket splits its members by capacity and keeps them sorted by
heartbeat, with its best load and cost terms. Time is never stored: staleness is a
bisection at decision time. How a decision searches: `routing.fast_select` and
`routing.fast_preempt`; why: docs/decisions/0012-routing-index.md.

Running jobs live in a `routing.RunningIndex` (by factory and priority, and the preemptible
ones by priority and start), which the caller keeps current with `add` and `remove`.

Costs, with n factories, E engines a factory offers, b factories in its bucket, G distinct
engine sets and B buckets of the job's engine holding its capabilities:

- `upsert`, `remove`: O(E log n); `set_reserved`: O(E log b);
- `select`: O(G + B) to count and bound, plus the members whose bound reaches the top
  `explain_top` (a few buckets' worth when scores differ; every eligible factory when all
  tie), plus `explain_top` exact scores;
- `plan_preemption`: the same counting, plus either the due victims walked until the top
  rows are settled (a few per row when candidates are common) or, with few candidates or
  when the walk exceeds its budget, every candidate's own jobs; plus `explain_top` exact
  evaluations.

It degrades toward the reference's O(n) when every factory has its own label set (B grows
to n) or when all scores tie (every eligible factory is scored exactly).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from routing.candidates import require_unique
from routing.fast_preempt import plan_top
from routing.fast_select import select_top
from routing.fleet_tables import FleetTables
from routing.model import Decision, FactoryView, JobRequest, RoutingContext
from routing.preemption import PreemptionPlan, PreemptionPolicy, RunningJob
from routing.running_index import RunningIndex
from routing.weights import FleetWeights

__all__ = ["FleetIndex"]

_DEFAULT_POLICY = PreemptionPolicy()


class FleetIndex:
    """The fleet indexed for routing decisions; see the module docstring."""

    __slots__ = ("_tables",)

    def __init__(self, views: Iterable[FactoryView] = ()) -> None:
        """Index `views`.

        Raises:
            ValueError: two views share an id.
        """
        views = list(views)
        require_unique("factory", (v.id for v in views))
        self._tables = FleetTables()
        for view in views:
            self._tables.upsert(view)

    def __len__(self) -> int:
        return len(self._tables.entries)

    def __contains__(self, factory_id: object) -> bool:
        return factory_id in self._tables.entries

    def __iter__(self) -> Iterator[FactoryView]:
        return (entry.view for entry in self._tables.entries.values())

    def get(self, factory_id: str) -> FactoryView | None:
        """The current view of a factory, None when it is not indexed."""
        entry = self._tables.entries.get(factory_id)
        return entry.view if entry is not None else None

    def upsert(self, view: FactoryView) -> None:
        """Add a factory or replace its view (a heartbeat, a status, engine or label change)."""
        self._tables.upsert(view)

    def remove(self, factory_id: str) -> None:
        """Forget a factory.

        Raises:
            KeyError: no factory has that id.
        """
        self._tables.remove(factory_id)

    def set_reserved(self, factory_id: str, reserved: int) -> None:
        """Record that `reserved` of a factory's slots are now taken (a reservation or release).

        Raises:
            KeyError: no factory has that id.
        """
        self._tables.set_reserved(factory_id, reserved)

    def select(
        self,
        job: JobRequest,
        ctx: RoutingContext,
        weights: FleetWeights,
        explain_top: int = 5,
    ) -> Decision:
        """The best factory for `job`, as `routing.select_factory` picks it.

        Args:
            job: the job asking for a slot.
            ctx: the time and the health and aging limits.
            weights: the weight of each scoring term.
            explain_top: how many of the best eligible rows to return (0 for none).

        Returns:
            The same factory_id, score and reason as the reference; `candidates` holds the
            best `explain_top` eligible rows, best first, and `summary` counts the others.

        Raises:
            ValueError: `explain_top` is negative.
        """
        return select_top(self._tables, job, ctx, weights, explain_top)

    def plan_preemption(
        self,
        job: JobRequest,
        running: RunningIndex | Iterable[RunningJob],
        ctx: RoutingContext,
        weights: FleetWeights,
        policy: PreemptionPolicy = _DEFAULT_POLICY,
        explain_top: int = 5,
    ) -> PreemptionPlan | None:
        """The least disruptive eviction that lets `job` start, as
        `routing.select_with_preemption` plans it.

        Args:
            job: the job that found no free slot.
            running: the jobs holding slots: a `RunningIndex` kept current by the caller,
                or the jobs themselves (indexed for this call, O(running) per call).
            ctx: the time and the health and aging limits.
            weights: the weights of the routing score (a tie-break between plans).
            policy: who may preempt and who may be evicted.
            explain_top: how many of the best feasible rows to return (0 for none).

        Returns:
            None exactly when the reference returns None; else the same factory, victims
            and reason, with the best `explain_top` feasible rows (the chosen one first)
            and a summary of the rest.

        Raises:
            ValueError: `explain_top` is negative, or two running jobs share an id.
        """
        index = running if isinstance(running, RunningIndex) else RunningIndex(running)
        return plan_top(self._tables, index, job, ctx, weights, policy, explain_top)
