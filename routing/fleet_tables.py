"""The tables behind `FleetIndex`: factories kept sorted by what the hard filters ask.

Every factory is in exactly one of two places:

- `standing`: excluded whatever the time and the job (revoked, cordoned, an unknown status,
  reporting unhealthy, never heard from), ids sorted by kind;
- schedulable (active, reporting healthy, heard from): in `groups`, keyed by its exact
  engine set, and in one `Bucket` per engine it offers, keyed by its exact label set.

Members are stored as `(last heartbeat in microseconds, id)`. Staleness depends on the
time, which the tables never store: at a decision, every member whose heartbeat is below
the cutoff is stale, and a bisection counts them.

A bucket splits its members by capacity (`free`, `full`, `empty`) and keeps, for its free
members, the load and cost_rate terms sorted, so that its best possible score is known
without looking at its members. `with_label` maps engine -> label -> the label sets with
that label, so the buckets that have a job's capabilities are found without visiting the
others.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from routing.filters import Excluded, standing_exclusion
from routing.instants import micros
from routing.model import Exclusion, FactoryView
from routing.score import factory_terms
from routing.sorted_keys import SortedKeys

__all__ = ["Bucket", "Entry", "FleetTables", "Member"]

Member = tuple[int, str]  # (last heartbeat in microseconds since the epoch, factory id)

_K = TypeVar("_K", bound=Hashable)
_T = TypeVar("_T", str, Member)


@dataclass(slots=True)
class Entry:
    """One factory as the tables hold it: its view and what sorting it needs."""

    view: FactoryView
    standing: Excluded | None
    heartbeat_us: int
    load: float
    cost_rate: float

    @property
    def member(self) -> Member:
        return (self.heartbeat_us, self.view.id)


@dataclass(slots=True)
class Bucket:
    """The schedulable factories offering one engine with one exact label set."""

    labels: frozenset[str]
    free: SortedKeys[Member] = field(default_factory=SortedKeys)  # a slot free
    full: SortedKeys[Member] = field(default_factory=SortedKeys)  # every slot taken
    empty: SortedKeys[Member] = field(default_factory=SortedKeys)  # no slots at all
    over: set[str] = field(default_factory=set)  # full ones needing 2+ evictions
    loads: SortedKeys[float] = field(default_factory=SortedKeys)  # of the free ones
    costs: SortedKeys[float] = field(default_factory=SortedKeys)  # of the free ones

    def __len__(self) -> int:
        return len(self.free) + len(self.full) + len(self.empty)

    def place(self, entry: Entry) -> None:
        """Add a member to the capacity list its reservations put it in."""
        view, free = entry.view, entry.view.reserved < entry.view.slots
        self._capacity_list(view).add(entry.member)
        if free:
            self.loads.add(entry.load)
            self.costs.add(entry.cost_rate)
        elif view.reserved > view.slots > 0:
            self.over.add(view.id)

    def unplace(self, entry: Entry) -> None:
        """Remove a member from the capacity list it is in."""
        view = entry.view
        self._capacity_list(view).remove(entry.member)
        if view.reserved < view.slots:
            self.loads.remove(entry.load)
            self.costs.remove(entry.cost_rate)
        self.over.discard(view.id)

    def _capacity_list(self, view: FactoryView) -> SortedKeys[Member]:
        if view.reserved < view.slots:
            return self.free
        return self.empty if view.slots <= 0 else self.full


class FleetTables:
    """The fleet indexed for the hard filters; see the module docstring."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.standing: dict[Exclusion, SortedKeys[str]] = {}
        self.groups: dict[frozenset[str], SortedKeys[Member]] = {}
        self.buckets: dict[str, dict[frozenset[str], Bucket]] = {}
        self.with_label: dict[str, dict[str, set[frozenset[str]]]] = {}
        # Label sets per engine in a fixed order, for examples that do not depend on the
        # order factories arrived in; rebuilt only when a bucket appears or goes.
        self._order: dict[str, list[frozenset[str]]] = {}

    def upsert(self, view: FactoryView) -> None:
        """Add a factory or replace its view: O(log n) per engine it offers."""
        old = self.entries.get(view.id)
        if old is not None:
            self._delete(old)
        self._insert(_entry(view))

    def remove(self, factory_id: str) -> None:
        """Forget a factory.

        Raises:
            KeyError: no factory has that id.
        """
        self._delete(self.entries[factory_id])

    def set_reserved(self, factory_id: str, reserved: int) -> None:
        """Change one factory's reservations: O(log b) per engine, b its bucket's size.

        Raises:
            KeyError: no factory has that id.
        """
        entry = self.entries[factory_id]
        if entry.view.reserved == reserved:
            return
        buckets = self._buckets_of(entry)
        for bucket in buckets:
            bucket.unplace(entry)
        view = replace(entry.view, reserved=reserved)
        entry.view = view
        entry.load = factory_terms(view)[0]
        for bucket in buckets:
            bucket.place(entry)

    def bucket_order(self, engine: str) -> list[frozenset[str]]:
        """The label sets of an engine's buckets, sorted by their sorted labels."""
        order = self._order.get(engine)
        if order is None:
            order = sorted(self.buckets.get(engine, {}), key=sorted)
            self._order[engine] = order
        return order

    def label_sets_with(
        self, engine: str, capabilities: frozenset[str]
    ) -> Iterable[frozenset[str]]:
        """The label sets of an engine's buckets that hold every capability."""
        buckets = self.buckets.get(engine)
        if not buckets:
            return ()
        if not capabilities:
            return buckets.keys()
        index = self.with_label[engine]
        sets = [index.get(label, set()) for label in capabilities]
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:])

    def members(self, factory_ids: Iterable[str]) -> Iterator[FactoryView]:
        """The views of known ids, skipping unknown ones."""
        for factory_id in factory_ids:
            entry = self.entries.get(factory_id)
            if entry is not None:
                yield entry.view

    def _buckets_of(self, entry: Entry) -> list[Bucket]:
        if entry.standing is not None:
            return []
        view = entry.view
        return [self.buckets[engine][view.labels] for engine in view.engines]

    def _insert(self, entry: Entry) -> None:
        view = entry.view
        self.entries[view.id] = entry
        if entry.standing is not None:
            self.standing.setdefault(entry.standing.kind, SortedKeys()).add(view.id)
            return
        self.groups.setdefault(view.engines, SortedKeys()).add(entry.member)
        for engine in view.engines:
            buckets = self.buckets.setdefault(engine, {})
            bucket = buckets.get(view.labels)
            if bucket is None:
                bucket = buckets[view.labels] = Bucket(view.labels)
                index = self.with_label.setdefault(engine, {})
                for label in view.labels:
                    index.setdefault(label, set()).add(view.labels)
                self._order.pop(engine, None)
            bucket.place(entry)

    def _delete(self, entry: Entry) -> None:
        view = entry.view
        del self.entries[view.id]
        if entry.standing is not None:
            _discard(self.standing, entry.standing.kind, view.id)
            return
        _discard(self.groups, view.engines, entry.member)
        for engine in view.engines:
            bucket = self.buckets[engine][view.labels]
            bucket.unplace(entry)
            if len(bucket) == 0:
                del self.buckets[engine][view.labels]
                for label in view.labels:
                    self.with_label[engine][label].discard(view.labels)
                self._order.pop(engine, None)


def _entry(view: FactoryView) -> Entry:
    standing = standing_exclusion(view)
    heartbeat = view.last_heartbeat_at
    load, cost_rate = factory_terms(view)
    heartbeat_us = micros(heartbeat) if heartbeat is not None else 0
    return Entry(view, standing, heartbeat_us, load, cost_rate)


def _discard(table: dict[_K, SortedKeys[_T]], key: _K, item: _T) -> None:
    """Remove `item` from the keys at `key`, and the keys when they become empty."""
    keys = table[key]
    keys.remove(item)
    if not keys:
        del table[key]
