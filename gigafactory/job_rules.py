"""The JobWorkflow's decision rules, pure: how an attempt's end is classified, when a job
gives up, what a child's end means to its parent, how the job reads in the Temporal UI.

No I/O, no clock, no Temporal types: the workflow translates what Temporal tells it
(an activity's timeout type, an error's type) into these plain values first, so every rule
is unit-tested without a server and replays deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gigafactory.contracts import JobTiming, RouteResult
from gigafactory.models import ChildSpec, RunOutcome, Stage, WaitReason

__all__ = [
    "FINAL_STAGES",
    "FINAL_OR_SHIPPED",
    "AttemptEnd",
    "FailureKind",
    "Verdict",
    "child_stage",
    "children_summary",
    "classify_failure",
    "dispatch_timeout_s",
    "gives_up",
    "progress_of",
    "route_data",
    "stage_after_run",
    "stage_label",
]

# Stages a job's workflow ends in (shipped comes later, from an operator).
FINAL_STAGES = frozenset({Stage.SUCCEEDED, Stage.FAILED, Stage.CANCELLED, Stage.BLOCKED})
FINAL_OR_SHIPPED = FINAL_STAGES | {Stage.SHIPPED}


class FailureKind(StrEnum):
    """Why `run_agent` ended without a result, as the workflow saw it."""

    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # the factory stopped heartbeating the lease
    DISPATCH_TIMEOUT = "dispatch_timeout"  # the factory never picked the run up
    RUN_TIMEOUT = "run_timeout"  # the job's own timeout (start-to-close)
    FENCED = "fenced"  # the factory reported a stale lease
    FACTORY_CANCELLED = "factory_cancelled"  # cancelled at the factory's end
    FACTORY_SHUTDOWN = "factory_shutdown"  # the factory's worker stopped under the agent
    ERROR = "error"  # anything else run_agent raised


@dataclass(frozen=True)
class Verdict:
    """How an attempt that failed is recorded, and whether the job is requeued."""

    outcome: RunOutcome
    reason: str
    requeue: bool
    # The factory stopped answering for the run (its lease or pick-up timed out): routing
    # skips it until it heartbeats again.
    factory_unresponsive: bool = False


def classify_failure(
    kind: FailureKind, factory_id: str, message: str, timing: JobTiming, timeout_s: float
) -> Verdict:
    """The run's outcome and reason for a failed `run_agent`; lost leases requeue the job."""
    if kind == FailureKind.HEARTBEAT_TIMEOUT:
        reason = (
            f"factory {factory_id} stopped heartbeating "
            f"(lease of {timing.lease_heartbeat_timeout_s:g}s expired)"
        )
        return Verdict(RunOutcome.LOST, reason, requeue=True, factory_unresponsive=True)
    if kind == FailureKind.DISPATCH_TIMEOUT:
        reason = (
            f"factory {factory_id} did not pick the job up within {timing.dispatch_timeout_s:g}s"
        )
        return Verdict(RunOutcome.LOST, reason, requeue=True, factory_unresponsive=True)
    if kind == FailureKind.RUN_TIMEOUT:
        return Verdict(RunOutcome.TIMED_OUT, f"timed out after {timeout_s:g}s", requeue=False)
    if kind == FailureKind.FENCED:
        reason = f"factory {factory_id} reported a stale lease: {message}"
        return Verdict(RunOutcome.LOST, reason, requeue=True)
    if kind == FailureKind.FACTORY_CANCELLED:
        reason = f"run on {factory_id} was cancelled by the factory"
        return Verdict(RunOutcome.LOST, reason, requeue=True)
    if kind == FailureKind.FACTORY_SHUTDOWN:
        # Not the job's fault: it runs again elsewhere, from its checkpoint.
        reason = f"factory {factory_id} shut down while the agent ran"
        return Verdict(RunOutcome.LOST, reason, requeue=True)
    return Verdict(RunOutcome.FAILED, f"run_agent failed on {factory_id}: {message}", requeue=False)


def gives_up(lost_attempts: int, timing: JobTiming) -> bool:
    """Whether a job whose attempts were lost this many times stops being requeued."""
    return lost_attempts >= timing.max_lost_attempts


@dataclass(frozen=True)
class AttemptEnd:
    """What the job does after a run that returned a result."""

    stage: Stage | None  # None: the run was cancelled on the job's behalf
    reason: str | None


def stage_after_run(outcome: RunOutcome, reason: str | None) -> AttemptEnd:
    """The job's stage after a run that returned: succeeded, failed (with the run's
    reason), or None when the agent was stopped for a cancel that raced its completion."""
    if outcome == RunOutcome.SUCCEEDED:
        return AttemptEnd(Stage.SUCCEEDED, "agent succeeded")
    if outcome == RunOutcome.CANCELLED:
        return AttemptEnd(None, reason)
    return AttemptEnd(Stage.FAILED, reason or str(outcome))


def dispatch_timeout_s(timing: JobTiming, evicting: bool, victim_grace_s: float) -> float:
    """How long a factory may take to pick the run up: a preemptor's slot frees only once
    its victims stopped (their grace period, twice, and some slack)."""
    extra = 2 * victim_grace_s + 30 if evicting else 0.0
    return timing.dispatch_timeout_s + extra


def child_stage(result_stage: Stage | None, *, cancelled: bool) -> Stage:
    """A child's terminal stage as its parent counts it: the stage it returned, cancelled
    when its workflow was cancelled, failed when it crashed or returned anything else."""
    if result_stage is None:
        return Stage.CANCELLED if cancelled else Stage.FAILED
    return result_stage if result_stage in FINAL_OR_SHIPPED else Stage.FAILED


def children_summary(children: Sequence[ChildSpec], stages: Mapping[str, Stage | None]) -> str:
    """`children done: 3 succeeded, 1 failed, 1 blocked` in the children's order."""
    counts: dict[str, int] = {}
    for child in children:
        stage = stages.get(child.id)
        name = stage.value if stage else "not started"
        counts[name] = counts.get(name, 0) + 1
    return "children done: " + ", ".join(f"{n} {name}" for name, n in counts.items())


def progress_of(details: Sequence[Any]) -> dict[str, Any] | None:
    """The agent's progress in an activity failure's details: a heartbeat's
    `{epoch, logSeq, progress}` (its `progress`), or a checkpoint handed back as is."""
    if not details or not isinstance(details[0], dict):
        return None
    first = details[0]
    progress = first.get("progress") if "epoch" in first else first
    return dict(progress) if isinstance(progress, dict) and progress else None


def stage_label(stage: Stage, wait_reason: WaitReason | None) -> str:
    """`waiting(capacity)`, `running`: a stage as the Temporal UI's details show it."""
    return f"{stage.value}({wait_reason.value})" if wait_reason else stage.value


def route_data(route: RouteResult) -> dict[str, Any]:
    """What a routing event records: every candidate's breakdown, the weights, the shadow."""
    data: dict[str, Any] = {
        "factoryId": route.factory_id,
        "candidates": [c.wire() for c in route.candidates],
        "weights": route.weights,
    }
    if route.summary is not None:
        data["summary"] = route.summary
    if route.shadow is not None:
        data["shadow"] = route.shadow
    if route.preemption is not None:
        data["preemption"] = route.preemption
    return data
