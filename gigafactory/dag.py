"""Job DAGs: validate a parent's children, then plan what to start, block and cancel next.

Pure: the standard library and ``gigafactory.models`` only, no I/O, clock or randomness, so a
parent job's workflow can call it inside the Temporal sandbox and replay gets the same answer.
These rules are the product's semantics for children; ``docs/job-spec.md`` describes how to
write them.

The graph
    A parent's children form a directed acyclic graph. Ids are local to the parent;
    ``dependsOn`` lists sibling ids (naming one twice counts once). ``dependencyKind`` belongs
    to the child and applies to every one of its ``dependsOn`` edges:

    =============  ===========  =========================================================
    kind           Slurm        a dependency is *satisfied* once it ended ...
    =============  ===========  =========================================================
    ``succeeded``  afterok      succeeded or shipped (the default)
    ``failed``     afternotok   failed; cancelled and blocked are not "failed"
    ``finished``   afterany     in any terminal stage, cancelled and blocked included
    =============  ===========  =========================================================

    A dependency that ended in a stage its kind does not accept is *unmet*: it can never be
    satisfied. A ``finished`` child is never blocked by its dependencies.

Validation (``validate_dag``)
    Checks run in this order and the first problem raises ``DagError`` (a ``ValueError``)
    whose message names the ids and whose ``ids`` holds them:

    1. id shape (new children only): 1 to 64 letters, digits, ``_``, ``-`` or ``.``:
       ``invalid child id 'a b': use 1 to 64 letters, digits, '_', '-' or '.'``
    2. duplicates, in declaration order, ``existing`` first:
       ``duplicate child id 'a'`` (``... (already a child of this parent)`` against existing)
    3. self-edges: ``child 'a' depends on itself``
    4. unknown ids: ``child 'b' depends on unknown id 'x'`` (``ids`` = the edge, child first)
    5. cycles: ``cycle: a -> b -> c -> a (each child depends on the one before it)``; the path
       is a real cycle, starts at its earliest-declared child, ``ids`` holds it once each
    6. width, the number of children directly under the parent (existing + new):
       ``42 children; the limit is 40`` (``ids`` is empty)
    7. depth, the number of children on the longest dependency chain:
       ``the DAG is 12 levels deep; the limit is 10 (longest chain: a -> b -> ... -> l)``
       (``ids`` holds the whole chain)

    It returns a topological order of every id, existing and new: Kahn's algorithm, ties
    broken by declaration order (``existing`` first), so the same input gives the same order.
    ``existing`` are the children the parent already has (``POST /children`` adds more later):
    new children may depend on them, and they cannot be redeclared.

Planning (``plan``)
    ``stages`` maps a child id to its stage; a missing id or ``None`` means *not started* (no
    child job yet), a non-terminal stage (queued ... preempted) means *started* (in flight),
    ``TERMINAL_STAGES`` mean *ended*. Shipped counts as succeeded everywhere. Ids that are not
    children are ignored. ``plan`` is a function of its input: the caller records a stage
    (e.g. queued) for every child it starts and ``blocked`` for every child in ``block``, and
    cancels the children in ``cancel``, before it asks again.

    Not-started children are decided in topological order; a child this call blocks counts as
    ``blocked`` for the children after it, so blocks cascade within one call:

    1. *Blocked by a dependency* when one of its dependencies is unmet, with the reason for the
       first one: ``dependency 'b' failed`` (or ``cancelled``, ``blocked``) for a ``succeeded``
       child, ``dependency 'a' succeeded; this child runs only if it failed`` for a ``failed``
       child.
    2. *Blocked by fail-fast* (policy ``fail-fast`` only, once it is triggered, below):
       ``fail-fast: child 'x' failed``, naming the first triggering child in topological order.
       Exempt, so they still run: every ``finished`` child (it runs whatever its dependencies
       did: cleanup, reports) and every ``failed`` child that depends on a failed child (a
       fix-up). An exempt child may still be blocked by a dependency (rule 1).
    3. *Started* (listed in ``start``, topological order) when every dependency is satisfied.
    4. Otherwise it waits.

    Fail-fast is triggered by a child that failed and whose failure nobody will handle: no
    fix-up of it (a ``failed`` child listing it in ``dependsOn``) succeeded or may still run
    (is not started or in flight, and not blocked). A failure with a live fix-up is expected by
    the DAG's author, so it does not stop the other branches; if every fix-up fails or is
    blocked, the failure triggers fail-fast then. Once triggered, not-started children are
    blocked (rule 2); with ``cancel_running`` the started, non-terminal, non-exempt children
    are listed in ``cancel`` (topological order), else they run to their end. Under
    ``continue``, only rule 1 blocks: independent branches keep running; ``cancel_running``
    has no effect.

    ``done`` is true when every child ended or is blocked by this call; ``progress`` is
    (children ended or blocked by this call, all children) and never goes down as stages move
    forward.

Outcome (``parent_outcome``, and ``Plan.failed`` so far)
    A child counts as the parent's failure when it:

    * failed, unless its failure was *handled*: a ``failed`` child listing it succeeded (or
      shipped). A ``finished`` child that ran after it does not handle it;
    * was cancelled (by an operator, or by fail-fast);
    * was blocked, except: a ``failed`` child that was blocked never counts (a fix-up that was
      not needed, or one blocked by a failure that counts itself); a child blocked by unmet
      dependencies counts only when one of them failed (handled or not: its own work did not
      happen), was cancelled, or was blocked and counts; a child blocked by fail-fast counts.
      So a child after a fix-up that was not needed is not a failure, and a child after a
      failed child is one.

    When the children are done, the parent succeeded if no child counts, else it failed with a
    reason naming the counted children in topological order: the failed ones, then the
    cancelled ones (``child 'b' failed; child 'c' was cancelled``); only when neither exists,
    the blocked ones with the first one's reason (``child 'd' was blocked: dependency 'b'
    failed``). ``Plan.failed`` lists the children that count so far: a failed child with a
    live fix-up is in it until the fix-up succeeds. ``parent_outcome`` raises ``ValueError``
    while a child has not ended and is not blocked; ``plan`` and ``parent_outcome`` raise
    ``DagError`` for a graph ``validate_dag`` would refuse (limits and id shape aside).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from gigafactory.models import TERMINAL_STAGES, ChildSpec, DependencyKind, Stage

__all__ = [
    "CHILD_ID_PATTERN",
    "DagError",
    "DagLimits",
    "FailurePolicy",
    "Plan",
    "parent_outcome",
    "plan",
    "validate_dag",
]

# The shape of a child id (the same as the job-spec parser's ``id`` column); use fullmatch.
CHILD_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_SUCCESS: frozenset[Stage] = frozenset({Stage.SUCCEEDED, Stage.SHIPPED})
_CHAIN_SHOWN = 8  # a longer chain is shown as its first and last three children


class DagError(ValueError):
    """A children graph that cannot run; the message names the ids, ``ids`` holds them."""

    ids: tuple[str, ...]

    def __init__(self, message: str, ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.ids = tuple(ids)

    def __reduce__(self) -> tuple[type[DagError], tuple[str, tuple[str, ...]]]:
        return (type(self), (str(self), self.ids))


@dataclass(frozen=True)
class DagLimits:
    """How big one parent's children may be: width (children) and depth (longest chain)."""

    max_children: int = 500
    max_depth: int = 50

    def __post_init__(self) -> None:
        if self.max_children < 1 or self.max_depth < 1:
            raise ValueError(
                f"DAG limits must be at least 1 (maxChildren {self.max_children}, "
                f"maxDepth {self.max_depth})"
            )


@dataclass(frozen=True)
class FailurePolicy:
    """What a parent does when a child fails: ``fail-fast`` or ``continue`` (module docs)."""

    mode: Literal["fail-fast", "continue"]
    cancel_running: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("fail-fast", "continue"):
            raise ValueError(f"unknown failure policy {self.mode!r}; use 'fail-fast' or 'continue'")


@dataclass(frozen=True)
class Plan:
    """What the parent does next (module docs, "Planning")."""

    start: list[str]  # not started, every dependency satisfied; topological order
    block: dict[str, str]  # not started and can never run -> why
    cancel: list[str]  # running children to cancel (fail-fast with cancel_running)
    done: bool  # every child ended or is blocked
    failed: list[str]  # children that count as the parent's failure so far; topological order
    progress: tuple[int, int]  # (children ended or blocked, all children)


_DEFAULT_LIMITS = DagLimits()


def validate_dag(
    children: Sequence[ChildSpec],
    limits: DagLimits = _DEFAULT_LIMITS,
    existing: Sequence[ChildSpec] = (),
) -> list[str]:
    """A topological order of every id (existing, then new); ``DagError`` on the first problem."""
    for child in children:
        if not CHILD_ID_PATTERN.fullmatch(child.id):
            raise DagError(
                f"invalid child id {child.id!r}: use 1 to 64 letters, digits, '_', '-' or '.'",
                (child.id,),
            )
    nodes = [*existing, *children]
    order, deps = _structure(nodes, n_existing=len(existing))
    if len(nodes) > limits.max_children:
        split = f" ({len(existing)} existing, {len(children)} new)" if existing else ""
        raise DagError(f"{len(nodes)} children; the limit is {limits.max_children}{split}")
    chain = _longest_chain(order, deps)
    if len(chain) > limits.max_depth:
        raise DagError(
            f"the DAG is {len(chain)} levels deep; the limit is {limits.max_depth} "
            f"(longest chain: {_show_chain(chain)})",
            chain,
        )
    return order


def plan(
    children: Sequence[ChildSpec],
    stages: Mapping[str, Stage | None],
    policy: FailurePolicy,
) -> Plan:
    """What to start, block and cancel now, given every child's stage (module docs)."""
    state = _evaluate(children, stages, policy)
    ended = sum(1 for id_ in state.order if _ended(state.stage[id_]))
    return Plan(
        start=state.start,
        block=state.block,
        cancel=state.cancel,
        done=ended == len(state.order),
        failed=state.failed,
        progress=(ended, len(state.order)),
    )


def parent_outcome(
    children: Sequence[ChildSpec],
    stages: Mapping[str, Stage | None],
    policy: FailurePolicy,
) -> tuple[Stage, str | None]:
    """(succeeded, None) or (failed, reason) once the children are done; ValueError before."""
    state = _evaluate(children, stages, policy)
    ended = sum(1 for id_ in state.order if _ended(state.stage[id_]))
    if ended < len(state.order):
        raise ValueError(f"the children are not done: {ended} of {len(state.order)} ended")
    if not state.failed:
        return Stage.SUCCEEDED, None
    return Stage.FAILED, _describe_failure(state)


# --- graph structure -------------------------------------------------------------------------
def _structure(
    nodes: Sequence[ChildSpec], n_existing: int
) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Duplicate, self-edge, unknown-id and cycle checks; (topological order, dependencies)."""
    first: dict[str, int] = {}
    for index, node in enumerate(nodes):
        if node.id in first:
            where = " (already a child of this parent)" if first[node.id] < n_existing else ""
            raise DagError(f"duplicate child id {node.id!r}{where}", (node.id,))
        first[node.id] = index
    deps = {node.id: tuple(dict.fromkeys(node.depends_on)) for node in nodes}
    for node in nodes:
        if node.id in deps[node.id]:
            raise DagError(f"child {node.id!r} depends on itself", (node.id,))
    for node in nodes:
        for dep in deps[node.id]:
            if dep not in first:
                raise DagError(f"child {node.id!r} depends on unknown id {dep!r}", (node.id, dep))
    ids = [node.id for node in nodes]
    order = _kahn(ids, deps)
    if len(order) < len(ids):
        raise _cycle_error(ids, deps, set(order))
    return order, deps


def _kahn(ids: Sequence[str], deps: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Kahn's algorithm, ties broken by declaration order; shorter than ``ids`` on a cycle."""
    position = {id_: index for index, id_ in enumerate(ids)}
    waiting = {id_: len(deps[id_]) for id_ in ids}
    dependents: dict[str, list[str]] = {id_: [] for id_ in ids}
    for id_ in ids:
        for dep in deps[id_]:
            dependents[dep].append(id_)
    ready = [position[id_] for id_ in ids if waiting[id_] == 0]  # ascending: already a heap
    order: list[str] = []
    while ready:
        id_ = ids[heapq.heappop(ready)]
        order.append(id_)
        for nxt in dependents[id_]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, position[nxt])
    return order


def _cycle_error(
    ids: Sequence[str], deps: Mapping[str, tuple[str, ...]], placed: set[str]
) -> DagError:
    """One real cycle among the children Kahn's algorithm could not place."""
    left = [id_ for id_ in ids if id_ not in placed]
    unplaced = set(left)
    # Every unplaced child has an unplaced dependency: follow the first until one repeats.
    path: list[str] = []
    seen_at: dict[str, int] = {}
    node = left[0]
    while node not in seen_at:
        seen_at[node] = len(path)
        path.append(node)
        node = next(dep for dep in deps[node] if dep in unplaced)
    loop = path[seen_at[node] :]  # each depends on the next, the last on the first
    loop.reverse()  # each depends on the one before it
    position = {id_: index for index, id_ in enumerate(ids)}
    start = min(range(len(loop)), key=lambda k: position[loop[k]])
    loop = loop[start:] + loop[:start]
    return DagError(
        f"cycle: {' -> '.join([*loop, loop[0]])} (each child depends on the one before it)",
        loop,
    )


def _longest_chain(order: Sequence[str], deps: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The longest dependency chain, first child first (the first such in topological order)."""
    level: dict[str, int] = {}
    via: dict[str, str | None] = {}
    for id_ in order:
        best: str | None = None
        for dep in deps[id_]:
            if best is None or level[dep] > level[best]:
                best = dep
        level[id_] = 1 + (level[best] if best is not None else 0)
        via[id_] = best
    if not order:
        return []
    node: str | None = max(order, key=level.__getitem__)
    chain: list[str] = []
    while node is not None:
        chain.append(node)
        node = via[node]
    chain.reverse()
    return chain


def _show_chain(chain: Sequence[str]) -> str:
    if len(chain) > _CHAIN_SHOWN:
        return " -> ".join([*chain[:3], "...", *chain[-3:]])
    return " -> ".join(chain)


# --- planning --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _State:
    """Everything ``plan`` and ``parent_outcome`` derive from the children and their stages."""

    order: list[str]
    stage: dict[str, Stage | None]  # effective: this call's blocks count as blocked
    block: dict[str, str]
    start: list[str]
    cancel: list[str]
    failed: list[str]
    blocked_why: dict[str, str]  # every blocked child -> why, when that can still be told


def _ended(stage: Stage | None) -> bool:
    return stage is not None and stage in TERMINAL_STAGES


def _satisfies(kind: DependencyKind, stage: Stage | None) -> bool:
    if not _ended(stage):
        return False
    if kind == DependencyKind.SUCCEEDED:
        return stage in _SUCCESS
    if kind == DependencyKind.FAILED:
        return stage == Stage.FAILED
    return True


def _unmet(kind: DependencyKind, stage: Stage | None) -> bool:
    return _ended(stage) and not _satisfies(kind, stage)


def _evaluate(
    children: Sequence[ChildSpec],
    stages: Mapping[str, Stage | None],
    policy: FailurePolicy,
) -> _State:
    order, deps = _structure(children, n_existing=0)
    kinds = {child.id: child.dependency_kind for child in children}
    stage: dict[str, Stage | None] = {id_: stages.get(id_) for id_ in order}
    fixups: dict[str, list[str]] = {id_: [] for id_ in order}
    for id_ in order:
        if kinds[id_] == DependencyKind.FAILED:
            for dep in deps[id_]:
                fixups[dep].append(id_)

    def dependency_block(id_: str) -> str | None:
        kind = kinds[id_]
        for dep in deps[id_]:
            dep_stage = stage[dep]
            if dep_stage is not None and _unmet(kind, dep_stage):
                if kind == DependencyKind.FAILED:
                    return (
                        f"dependency {dep!r} {dep_stage.value}; this child runs only if it failed"
                    )
                return f"dependency {dep!r} {dep_stage.value}"
        return None

    block: dict[str, str] = {}
    for id_ in order:
        if stage[id_] is None and (reason := dependency_block(id_)) is not None:
            block[id_] = reason
            stage[id_] = Stage.BLOCKED

    def live_or_succeeded(fixup: str) -> bool:
        return not _ended(stage[fixup]) or stage[fixup] in _SUCCESS

    def exempt(id_: str) -> bool:
        kind = kinds[id_]
        if kind == DependencyKind.FINISHED:
            return True
        return kind == DependencyKind.FAILED and any(stage[d] == Stage.FAILED for d in deps[id_])

    trigger: str | None = None
    if policy.mode == "fail-fast":
        trigger = next(
            (
                id_
                for id_ in order
                if stage[id_] == Stage.FAILED and not any(map(live_or_succeeded, fixups[id_]))
            ),
            None,
        )
    cancel: list[str] = []
    if trigger is not None:
        fail_fast = f"fail-fast: child {trigger!r} failed"
        for id_ in order:
            if stage[id_] is None:
                reason = dependency_block(id_) if exempt(id_) else fail_fast
                if reason is not None:
                    block[id_] = reason
                    stage[id_] = Stage.BLOCKED
            elif not _ended(stage[id_]) and policy.cancel_running and not exempt(id_):
                cancel.append(id_)

    start = [
        id_
        for id_ in order
        if stage[id_] is None and all(_satisfies(kinds[id_], stage[d]) for d in deps[id_])
    ]

    counts: dict[str, bool] = {}
    for id_ in order:
        now = stage[id_]
        if now == Stage.FAILED:
            counts[id_] = not any(stage[f] in _SUCCESS for f in fixups[id_])
        elif now == Stage.CANCELLED:
            counts[id_] = True
        elif now == Stage.BLOCKED and kinds[id_] != DependencyKind.FAILED:
            unmet = [d for d in deps[id_] if _unmet(kinds[id_], stage[d])]
            counts[id_] = not unmet or any(
                stage[d] in (Stage.FAILED, Stage.CANCELLED) or counts[d] for d in unmet
            )
        else:
            counts[id_] = False

    blocked_why: dict[str, str] = {}
    for id_ in order:
        if stage[id_] == Stage.BLOCKED:
            why = block.get(id_) or dependency_block(id_)
            if why is None and trigger is not None:
                why = f"fail-fast: child {trigger!r} failed"
            if why is not None:
                blocked_why[id_] = why

    return _State(
        order=order,
        stage=stage,
        block={id_: block[id_] for id_ in order if id_ in block},
        start=start,
        cancel=cancel,
        failed=[id_ for id_ in order if counts[id_]],
        blocked_why=blocked_why,
    )


def _describe_failure(state: _State) -> str:
    """Why the parent failed: its failed children, then cancelled ones, else blocked ones."""
    failed = [id_ for id_ in state.failed if state.stage[id_] == Stage.FAILED]
    cancelled = [id_ for id_ in state.failed if state.stage[id_] == Stage.CANCELLED]
    parts: list[str] = []
    if failed:
        parts.append(f"{_name_children(failed)} failed")
    if cancelled:
        parts.append(f"{_name_children(cancelled)} {_was(cancelled)} cancelled")
    if parts:
        return "; ".join(parts)
    blocked = [id_ for id_ in state.failed if state.stage[id_] == Stage.BLOCKED]
    message = f"{_name_children(blocked)} {_was(blocked)} blocked"
    reason = state.blocked_why.get(blocked[0])
    if reason is None:
        return message
    return f"{message}: {reason}" if len(blocked) == 1 else f"{message} ({blocked[0]!r}: {reason})"


def _name_children(ids: Sequence[str]) -> str:
    quoted = [repr(id_) for id_ in ids]
    if len(quoted) == 1:
        return f"child {quoted[0]}"
    if len(quoted) > 3:
        return f"children {', '.join(quoted[:3])} and {len(quoted) - 3} more"
    return f"children {', '.join(quoted[:-1])} and {quoted[-1]}"


def _was(ids: Sequence[str]) -> str:
    return "was" if len(ids) == 1 else "were"
