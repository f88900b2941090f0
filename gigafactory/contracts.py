"""Temporal contracts: stable names, task queues, ids and the one typed input/output of every
workflow, activity, signal, update and query.

Imported by workflows (inside the sandbox), activities, the API and the CLI, so it holds no
I/O. Adding a field with a default is always safe for running histories; renaming is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import Field

from gigafactory.budgets import AdmissionResult
from gigafactory.models import (
    CamelModel,
    ChildSpec,
    JobSpec,
    Priority,
    RunDetails,
    RunFields,
    RunOutcome,
    Shipment,
    Stage,
    WaitReason,
)

# --- names ------------------------------------------------------------------------------------
JOB_WORKFLOW = "JobWorkflow"
LOCK_WORKFLOW = "LockWorkflow"
PRODUCT_CONTROLLER_WORKFLOW = "ProductControllerWorkflow"
SHIP_WORKFLOW = "ShipWorkflow"

CONTROL_TASK_QUEUE = "fleet-control"

# Signals, queries.
SIGNAL_SLOT_GRANTED = "slot_granted"
SIGNAL_LOCK_GRANTED = "lock_granted"
SIGNAL_LOCK_ACQUIRE = "acquire"
SIGNAL_LOCK_RELEASE = "release"
UPDATE_ADD_CHILDREN = "add_children"
QUERY_STATUS = "status"
QUERY_LOCK_STATE = "lock_state"

# Search attributes (Keyword) registered on the Temporal namespace.
SEARCH_ATTRIBUTES: tuple[str, ...] = (
    "FleetProductId",
    "FleetStage",
    "FleetPriority",
    "FleetFactoryId",
    "FleetEngine",
)


def factory_task_queue(factory_id: str) -> str:
    """The task queue one factory's worker polls."""
    return f"factory-{factory_id}"


def factory_ops_task_queue(factory_id: str) -> str:
    """The task queue of one factory's short workspace operations (ship, remove): apart from
    the agents' queue, so they need not wait for a free slot."""
    return f"factory-{factory_id}-ops"


def ship_workflow_id(product_id: str, job_id: str) -> str:
    """The workflow that ships one job (at most one at a time; a refused ship may be retried)."""
    return f"ship-{product_id}-{job_id}"


def job_workflow_id(product_id: str, job_id: str) -> str:
    """The deterministic workflow id of a job (children derive theirs from the parent's id)."""
    return f"job-{product_id}-{job_id}"


def child_job_id(parent_job_id: str, child_id: str) -> str:
    """A child's job id: its parent's id and its parent-local id (so the workflow id, too,
    derives from the parent's and the Temporal UI shows the family)."""
    return f"{parent_job_id}.{child_id}"


def lock_workflow_id(lock: str) -> str:
    """The workflow that owns one named lock."""
    return f"lock-{lock}"


def product_workflow_id(product_id: str) -> str:
    """The controller workflow of one product."""
    return f"product-{product_id}"


# --- JobWorkflow ------------------------------------------------------------------------------
class JobTiming(CamelModel):
    """Timeouts a JobWorkflow uses; filled from settings at submit (workflows read no env)."""

    lease_heartbeat_timeout_s: float = 15.0
    dispatch_timeout_s: float = 30.0
    stop_grace_s: float = 10.0
    lock_check_s: float = 30.0
    max_lost_attempts: int = 5
    # FLEET_BUDGETS at submit: ask the product's controller before every attempt.
    budgets: bool = False
    # FLEET_PREEMPTION at submit: may evict lower-priority jobs when nothing fits.
    preemption: bool = False


class JobWorkflowInput(CamelModel):
    """Start input of a JobWorkflow."""

    job_id: str
    product_id: str
    spec: JobSpec
    parent_workflow_id: str | None = None
    timing: JobTiming = Field(default_factory=JobTiming)
    # Carried across continue-as-new / restarts so epochs keep growing.
    lease_epoch: int = 0
    checkpoint: dict[str, Any] | None = None


class AddChildren(CamelModel):
    """Update input: children added to an open parent (projections already written)."""

    children: list[ChildSpec]


class JobWorkflowResult(CamelModel):
    """How a job ended."""

    job_id: str
    product_id: str
    stage: Stage
    reason: str | None = None
    lease_epoch: int = 0
    factory_id: str | None = None
    exit_code: int | None = None
    cost_usd: float = 0.0


class JobStatus(CamelModel):
    """What the `status` query returns: the workflow's own view of the job."""

    job_id: str
    stage: Stage
    wait_reason: WaitReason | None = None
    reason: str | None = None
    lease_epoch: int = 0
    factory_id: str | None = None


class SlotGrant(CamelModel):
    """Signal to a waiting job: a slot on `factory_id` is reserved for it and its lease
    `epoch` is open (the dispatcher wrote the attempt); run there now."""

    factory_id: str
    epoch: int
    score: float = 0.0
    stop_grace_s: float | None = None
    # A preemptor's grant: the slot frees once these victims stop (their longest grace).
    evicted: list[str] = Field(default_factory=list)
    victim_grace_s: float = 0.0


# --- locks ------------------------------------------------------------------------------------
class LockRequest(CamelModel):
    """Signal to a LockWorkflow: `holder` wants the lock."""

    holder_workflow_id: str
    priority: Priority = Priority.NORMAL


class LockRelease(CamelModel):
    """Signal to a LockWorkflow: `holder` gives the lock back (or leaves the queue)."""

    holder_workflow_id: str


class LockGranted(CamelModel):
    """Signal from a LockWorkflow to the holder it granted the lock to."""

    lock: str


class LockState(CamelModel):
    """Query result of a LockWorkflow."""

    lock: str
    holder: str | None = None
    waiting: list[str] = Field(default_factory=list)


class LockWorkflowInput(CamelModel):
    """Start input of a LockWorkflow (also carried across continue-as-new)."""

    lock: str
    check_holder_s: float = 30.0
    idle_exit_s: float = 60.0
    holder: str | None = None
    waiting: list[LockRequest] = Field(default_factory=list)


class RequestLockInput(CamelModel):
    """Activity input: signal-with-start the lock's workflow on behalf of a job."""

    lock: str
    request: LockRequest


class WithdrawInput(CamelModel):
    """Activity input: a queued job stopped waiting (cancelled); its queue entry goes."""

    workflow_id: str


class FenceInput(CamelModel):
    """Activity input: record a stale report (older lease epoch) against a job."""

    job_id: str
    product_id: str
    epoch: int
    actor: str
    what: str
    at: datetime


class WorkflowIsOpenInput(CamelModel):
    """Activity input: is this workflow still running?"""

    workflow_id: str


# --- control activities -----------------------------------------------------------------------
class TransitionInput(CamelModel):
    """Activity input: move a job's projection to a stage and append the event."""

    job_id: str
    product_id: str
    event_id: str
    at: datetime
    stage: Stage | None = None  # None: only the event is recorded
    wait_reason: WaitReason | None = None
    reason: str | None = None
    actor: str = "workflow"
    epoch: int | None = None
    factory_id: str | None = None
    cost_usd: float | None = None
    exit_code: int | None = None
    kind: str = "stage"
    data: dict[str, Any] = Field(default_factory=dict)


class RouteInput(CamelModel):
    """Activity input: place one attempt of a job: a slot reserved on a factory and the
    attempt's lease opened, or the job queued until a slot is handed to it."""

    job_id: str
    product_id: str
    epoch: int
    # The job's workflow, which a queued job's slot grant is signalled to.
    workflow_id: str | None = None
    engine: str
    capabilities: list[str] = Field(default_factory=list)
    priority: Priority = Priority.NORMAL
    waiting_since: datetime | None = None
    avoid_factories: list[str] = Field(default_factory=list)
    preferred_labels: list[str] = Field(default_factory=list)
    previous_factory_id: str | None = None
    weights_override: dict[str, float] | None = None
    preemption: bool = False


class ScoreTerm(CamelModel):
    """One term of a score: the raw value, its weight and the weighted contribution."""

    term: str
    value: float
    weight: float
    contribution: float


class CandidateScore(CamelModel):
    """How one factory fared: its score with a breakdown, or why it was excluded."""

    factory_id: str
    eligible: bool
    score: float = 0.0
    breakdown: list[ScoreTerm] = Field(default_factory=list)
    excluded_because: str | None = None


class RouteResult(CamelModel):
    """Activity output: a placement (slot reserved), or why nothing fits now."""

    factory_id: str | None = None
    score: float = 0.0
    # The best few factories with their breakdowns, and a few excluded ones with why.
    candidates: list[CandidateScore] = Field(default_factory=list)
    # The whole fleet in counts: factories, eligible, excluded by each hard filter.
    summary: dict[str, Any] | None = None
    waiting_reason: str | None = None
    # The weights the decision used, and what the shadow weight set would have picked.
    weights: dict[str, float] = Field(default_factory=dict)
    shadow: dict[str, Any] | None = None
    # Jobs being preempted to free the reserved slot, and the plan's explanation.
    evicted: list[str] = Field(default_factory=list)
    preemption: dict[str, Any] | None = None
    # How long the job's product lets its agents take to stop (its preemption policy).
    stop_grace_s: float | None = None
    # Preempting: the longest grace period among the victims (their products' policies).
    victim_grace_s: float = 0.0
    # Queued: the job waits for a `slot_granted` signal (the dispatcher hands it a slot).
    queued: bool = False


class BeginAttemptInput(CamelModel):
    """Activity input: a new attempt starts; the job's lease epoch becomes `epoch`."""

    job_id: str
    product_id: str
    epoch: int
    factory_id: str
    engine: str
    at: datetime
    event_id: str
    data: dict[str, Any] = Field(default_factory=dict)


class FinishRunInput(RunFields):
    """Activity input: record how an attempt ended, and the job's stage after it (one
    projection write, one event), then free its slot for the next job."""

    finished_at: datetime
    outcome: RunOutcome
    # FLEET_BUDGETS when the job was submitted: only then may its run raise a budget alert.
    budgets_enforced: bool = False
    # The run was lost because the factory stopped heartbeating it or never picked it up:
    # the factory is skipped by routing until its next heartbeat.
    factory_unresponsive: bool = False
    # The job's stage after the run (None: unchanged), with its event.
    stage: Stage | None = None
    stage_reason: str | None = None
    event_id: str | None = None
    event_kind: str = "stage"
    event_data: dict[str, Any] = Field(default_factory=dict)


# --- the factory's activity -------------------------------------------------------------------
class RunAgentInput(CamelModel):
    """Activity input: run the job's engine once, under lease `epoch`."""

    job_id: str
    product_id: str
    epoch: int
    spec: JobSpec
    checkpoint: dict[str, Any] | None = None
    # SIGTERM -> SIGKILL for this run (its product's grace); None: the factory's own.
    stop_grace_s: float | None = None


class AgentCheckpoint(CamelModel):
    """Heartbeat details of `run_agent`: the lease epoch and how far the agent got."""

    epoch: int
    log_seq: int = 0
    progress: dict[str, Any] = Field(default_factory=dict)


class RunAgentResult(RunDetails):
    """Activity output: how the engine run ended, and what the agent reported."""

    outcome: RunOutcome
    exit_code: int | None = None
    cost_usd: float = 0.0
    cost_estimated: bool = False
    reason: str | None = None
    started_at: datetime
    finished_at: datetime
    checkpoint: dict[str, Any] | None = None
    artifacts: list[str] = Field(default_factory=list)


# What a run reports beyond its outcome and cost, carried as is into its run record.
RUN_DETAIL_FIELDS: set[str] = set(RunDetails.model_fields)


class ShipBranchInput(CamelModel):
    """Activity input: publish a job's branch `gigafactory/<jobId>` (push, or a forge command)."""

    job_id: str
    product_id: str
    repo: str
    # The commit to ship (the run's); None: whatever the branch holds.
    commit: str | None = None
    title: str | None = None


class ShipBranchResult(CamelModel):
    """Activity output: where the branch went and what the forge command said."""

    branch: str
    commit: str
    remote: str
    output: str = ""
    url: str | None = None


class ShipWorkflowInput(CamelModel):
    """Workflow input: ship a succeeded job's branch from a factory, then record it."""

    job_id: str
    product_id: str
    repo: str
    factory_id: str  # where to run the push: the last run's, or any factory that can reach it
    commit: str | None = None
    title: str | None = None
    actor: str
    note: str | None = None
    # How long the factory may take to pick the ship up, and to push.
    pickup_timeout_s: float = 60.0
    push_timeout_s: float = 300.0


class ShipWorkflowResult(CamelModel):
    """Workflow output: the shipment, or why the ship was refused."""

    shipped: bool
    shipment: Shipment | None = None
    reason: str | None = None


class RecordShipInput(CamelModel):
    """Activity input: record a ship's outcome (the job shipped, or an event saying why not)."""

    job_id: str
    product_id: str
    actor: str
    note: str | None = None
    at: datetime
    event_id: str
    shipment: Shipment | None = None
    refused: str | None = None


class RemoveWorkspaceInput(CamelModel):
    """Activity input: remove a job's worktree (and its local branch) from this factory."""

    job_id: str
    product_id: str
    repo: str | None = None


class RemoveWorkspaceResult(CamelModel):
    """Activity output: whether there was a worktree to remove."""

    removed: bool


class BudgetAdmitInput(CamelModel):
    """Activity input: ask the product's controller to admit an attempt of the job."""

    product_id: str
    job_id: str
    workflow_id: str
    priority: Priority = Priority.NORMAL
    estimate_usd: float | None = None  # None: the product's default estimate
    requested_at: datetime


# --- activities: one stable name, one input type, one result type each ----------------------
InT = TypeVar("InT", bound=CamelModel)
OutT = TypeVar("OutT")


@dataclass(frozen=True)
class ActivityDef(Generic[InT, OutT]):
    """An activity as callers know it: its stable name and its one input and result type.

    Workflows call activities through these (typed, never by a bare string) and the
    implementations register under `name`; a test checks that every definition has an
    implementation with exactly these types.
    """

    name: str
    input_type: type[InT]
    result_type: type[OutT]


# On the control-plane worker (they hold the store and the Temporal client).
ROUTE_JOB = ActivityDef("fleet.route_job", RouteInput, RouteResult)
RECORD_TRANSITION = ActivityDef("fleet.record_transition", TransitionInput, type(None))
FINISH_RUN = ActivityDef("fleet.finish_run", FinishRunInput, type(None))
REQUEST_LOCK = ActivityDef("fleet.request_lock", RequestLockInput, type(None))
WORKFLOW_IS_OPEN = ActivityDef("fleet.workflow_is_open", WorkflowIsOpenInput, bool)
BUDGET_ADMIT = ActivityDef("fleet.budget_admit", BudgetAdmitInput, AdmissionResult)
WITHDRAW = ActivityDef("fleet.withdraw", WithdrawInput, type(None))
RECORD_SHIP = ActivityDef("fleet.record_ship", RecordShipInput, type(None))
CONTROL_ACTIVITIES: tuple[ActivityDef[Any, Any], ...] = (
    ROUTE_JOB,
    RECORD_TRANSITION,
    FINISH_RUN,
    REQUEST_LOCK,
    WORKFLOW_IS_OPEN,
    BUDGET_ADMIT,
    WITHDRAW,
    RECORD_SHIP,
)
# The activity every factory runs, on its own task queue.
RUN_AGENT = ActivityDef("factory.run_agent", RunAgentInput, RunAgentResult)
SHIP_BRANCH = ActivityDef("factory.ship_branch", ShipBranchInput, ShipBranchResult)
REMOVE_WORKSPACE = ActivityDef(
    "factory.remove_workspace", RemoveWorkspaceInput, RemoveWorkspaceResult
)
