"""The seeded schedule of a chaos run: which jobs, which faults, when (pure, deterministic).

The same seed, sizes and factory names give the same jobs and the same faults at the same
offsets from the start of the run; only how the system answers them varies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "BUDGET_PRODUCT",
    "DAG_SIZE",
    "Fault",
    "FaultKind",
    "JobPlan",
    "PRODUCTS",
    "plan_faults",
    "plan_jobs",
]

# Products of a chaos run: the last one has a small budget ceiling its jobs reach.
PRODUCTS = ("chaosa", "chaosb")
BUDGET_PRODUCT = "chaoscap"
LOCKS = ("chaoslock1", "chaoslock2")
# One DAG parent with a diamond of four children and a tail: a, then b and c, then d, e.
DAG_SIZE = 6
_PRIORITIES = (("low", 0.3), ("normal", 0.45), ("high", 0.15), ("critical", 0.1))
# The share of the budget product's estimated spend its ceiling allows.
BUDGET_SHARE = 0.4


class FaultKind(StrEnum):
    """What a fault does."""

    KILL_FACTORY = "kill-factory"  # SIGKILL a factory process; it is started again
    FREEZE_FACTORY = "freeze-factory"  # SIGSTOP a factory (a zombie), SIGCONT it later
    RESTART_CONTROL = "restart-control"  # SIGKILL `serve control`, start it again
    RESTART_API = "restart-api"  # SIGKILL `serve api`, start it again
    RESTART_TEMPORAL = "restart-temporal"  # SIGKILL the Temporal server, start it again


@dataclass(frozen=True)
class Fault:
    """One fault at `at_s` seconds into the run; `target` names the factory it is done to,
    and `hold_s` is how long the part stays down (or frozen) before it comes back."""

    at_s: float
    kind: FaultKind
    target: str | None = None
    hold_s: float = 0.0


@dataclass(frozen=True)
class JobPlan:
    """The jobs of a run: leaf job bodies for `POST /fleet/jobs`, the DAG parent's body (or
    None when the run is too small for one), and the budget product's ceiling."""

    leaves: list[dict[str, Any]]
    dag: dict[str, Any] | None
    budget_ceiling_usd: float
    locks: tuple[str, ...] = LOCKS
    products: tuple[str, ...] = field(default=(*PRODUCTS, BUDGET_PRODUCT))

    @property
    def total_jobs(self) -> int:
        return len(self.leaves) + (DAG_SIZE if self.dag is not None else 0)


def _sim(rng: random.Random, ref: str, product: str) -> dict[str, Any]:
    duration = round(rng.uniform(0.5, 3.0), 2)
    cost = round(rng.uniform(0.01, 0.1), 3)
    priority = rng.choices([p for p, _ in _PRIORITIES], [w for _, w in _PRIORITIES])[0]
    return {
        "engine": "sim",
        "prompt": f"chaos job {ref}",
        "productId": product,
        "priority": priority,
        # Each run costs at most `cost`: the estimate is what the budget admits against.
        "estimatedCostUsd": cost,
        "labels": {"chaosRef": ref},
        "params": {"durationS": duration, "costUsd": cost},
    }


def plan_jobs(seed: int, jobs: int) -> JobPlan:
    """`jobs` sim jobs: mixed products and priorities, some under one of two shared locks,
    a sixth of them in the budget product, and a DAG (parent and five children) when
    `jobs` >= 2 * DAG_SIZE.

    Raises:
        ValueError: fewer than one job.
    """
    if jobs < 1:
        raise ValueError(f"a chaos run needs at least one job, not {jobs}")
    rng = random.Random(f"jobs-{seed}")
    dag: dict[str, Any] | None = None
    leaf_count = jobs
    if jobs >= 2 * DAG_SIZE:
        leaf_count -= DAG_SIZE
        children = []
        for child_id, deps in (("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", [])):
            body = _sim(rng, f"dag.{child_id}", PRODUCTS[0])
            children.append(
                {
                    "id": child_id,
                    "engine": "sim",
                    "prompt": body["prompt"],
                    "dependsOn": deps,
                    "params": body["params"],
                }
            )
        dag = {**_sim(rng, "dag", PRODUCTS[0]), "children": children}
    leaves = []
    budget_estimates = 0.0
    for n in range(leaf_count):
        product = BUDGET_PRODUCT if n % 6 == 5 else PRODUCTS[n % 2]
        body = _sim(rng, str(n), product)
        if product == BUDGET_PRODUCT:
            budget_estimates += body["estimatedCostUsd"]
        # The budget product's jobs take locks too: one waiting on the ceiling must not hold
        # a lock (it is admitted before it takes it), or every job of that lock would wait
        # for the drain.
        if rng.random() < 0.2:
            body["lock"] = rng.choice(LOCKS)
        leaves.append(body)
    return JobPlan(leaves, dag, round(budget_estimates * BUDGET_SHARE, 3))


def plan_faults(
    seed: int,
    *,
    every_s: float,
    count: int,
    factories: list[str],
    freeze_s: float,
    kinds: tuple[FaultKind, ...] = tuple(FaultKind),
    controls: int = 1,
) -> list[Fault]:
    """`count` faults about `every_s` apart (each offset jittered by up to a quarter of
    `every_s`); the first len(kinds) are every kind once, in a seeded order, so even a short
    run does each. A factory is never the target of a fault while it is frozen. With
    several control processes each restart targets one of them (`control-<n>`), drawn
    apart from the schedule, which stays the same as with one.

    Raises:
        ValueError: no factories, no control process, a non-positive interval, or a
            negative count.
    """
    if not factories:
        raise ValueError("a chaos run needs at least one factory")
    if controls < 1:
        raise ValueError(f"a chaos run needs at least one control process, not {controls}")
    if every_s <= 0 or count < 0:
        raise ValueError(f"faults need every_s > 0 and count >= 0 (got {every_s}, {count})")
    rng = random.Random(f"faults-{seed}")
    control_rng = random.Random(f"controls-{seed}")
    first = list(kinds)
    rng.shuffle(first)
    # Factory kills are the commonest failure; the control plane's parts fail less often.
    weights = {
        FaultKind.KILL_FACTORY: 4,
        FaultKind.FREEZE_FACTORY: 2,
        FaultKind.RESTART_CONTROL: 1,
        FaultKind.RESTART_API: 1,
        FaultKind.RESTART_TEMPORAL: 1,
    }
    frozen_until: dict[str, float] = {}
    faults: list[Fault] = []
    for i in range(count):
        at = round(every_s * (i + 1) + rng.uniform(0, every_s / 4), 2)
        kind = first[i] if i < len(first) else rng.choices(kinds, [weights[k] for k in kinds])[0]
        target = None
        hold = 1.0
        if kind is FaultKind.RESTART_CONTROL and controls > 1:
            target = f"control-{control_rng.randint(1, controls)}"
        if kind in (FaultKind.KILL_FACTORY, FaultKind.FREEZE_FACTORY):
            free = [f for f in factories if frozen_until.get(f, -1.0) < at]
            if not free:
                kind = FaultKind.RESTART_API
            else:
                target = rng.choice(free)
                if kind is FaultKind.FREEZE_FACTORY:
                    hold = freeze_s
                    frozen_until[target] = at + hold
        faults.append(Fault(at, kind, target, hold))
    return faults
