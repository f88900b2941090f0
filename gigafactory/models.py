"""Domain models shared by the API, the store, workflows and activities.

Everything here is plain pydantic v2 with camelCase aliases on the wire and no I/O, so the
workflow sandbox can import it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from gigafactory.durations import parse_duration

__all__ = [
    "ApiKey",
    "Artifact",
    "AuditEvent",
    "CamelModel",
    "ChildSpec",
    "CostSource",
    "DependencyKind",
    "EnrollmentToken",
    "Event",
    "Factory",
    "FactoryStatus",
    "FLEET_PARTITION",
    "Job",
    "JobView",
    "JobSpec",
    "KNOWN_ENGINES",
    "MAX_PARAMS_DEPTH",
    "LogChunk",
    "PreemptionSettings",
    "Priority",
    "PRODUCT_RECORD_ID",
    "ProductRecord",
    "QueueEntry",
    "QueueLane",
    "PRIORITY_RANK",
    "Role",
    "RoutingWeights",
    "ShadowDecision",
    "Shipment",
    "SpendRecord",
    "StoredBudget",
    "UiSession",
    "Run",
    "RunDetails",
    "RunFields",
    "RunOutcome",
    "SlotReservation",
    "SlotTable",
    "Stage",
    "TERMINAL_STAGES",
    "WaitReason",
]

# Fleet-wide documents (factories, keys, slots) live in this partition of every store.
FLEET_PARTITION = "_fleet"

# The longest headline (title or first prompt line) lists show for a job.
HEADLINE_MAX = 120

# Engines the job-spec parser accepts. A factory advertises a subset (what it finds on PATH).
KNOWN_ENGINES: tuple[str, ...] = (
    "claude-code",
    "codex",
    "aider",
    "gemini",
    "opencode",
    "devin",
    "shell",
    "sim",
)


# How deeply a job's params (free JSON handed to its engine) may nest: deeper documents would
# exceed what the store and Temporal's payloads serialise.
MAX_PARAMS_DEPTH = 20


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and dicts in `value` nest more than `limit` levels (iteratively, so a
    hostile document cannot exhaust the stack)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class CamelModel(BaseModel):
    """Base model: camelCase on the wire, snake_case in Python, either accepted on input."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        """The JSON-ready camelCase document for this model."""
        return self.model_dump(mode="json", by_alias=True)


class Priority(StrEnum):
    """Job priority; the rank orders dispatch and decides who may preempt whom."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return PRIORITY_RANK[self]


PRIORITY_RANK: dict[Priority, int] = {
    Priority.LOW: 0,
    Priority.NORMAL: 1,
    Priority.HIGH: 2,
    Priority.CRITICAL: 3,
}


class Stage(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    WAITING = "waiting"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    PREEMPTED = "preempted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    SHIPPED = "shipped"


TERMINAL_STAGES: frozenset[Stage] = frozenset(
    {Stage.SUCCEEDED, Stage.FAILED, Stage.CANCELLED, Stage.BLOCKED, Stage.SHIPPED}
)


class WaitReason(StrEnum):
    """What a waiting job waits for."""

    DEPS = "deps"
    BUDGET = "budget"
    LOCK = "lock"
    CAPACITY = "capacity"


class DependencyKind(StrEnum):
    """When a dependency counts as satisfied (Slurm's afterok / afternotok / afterany)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FINISHED = "finished"


class CostSource(StrEnum):
    """Where a run's cost comes from."""

    CLI = "cli"  # the agent CLI's own figure
    PRICE_TABLE = "price_table"  # tokens x the factory's per-model price table
    ESTIMATE = "estimate"  # the job's estimated cost


class RunOutcome(StrEnum):
    """How one attempt (run) of a job ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    LOST = "lost"  # the factory stopped heartbeating; the job was requeued elsewhere
    TIMED_OUT = "timed_out"


class ChildSpec(CamelModel):
    """A subtask of a parent job: a job spec with a parent-local id and dependencies."""

    id: str
    depends_on: list[str] = Field(default_factory=list)
    dependency_kind: DependencyKind = DependencyKind.SUCCEEDED
    spec: JobSpec


class JobSpec(CamelModel):
    """What a submitter asks for: the parsed job-spec file plus API/CLI fields."""

    engine: str
    prompt: str
    cwd: str = "."
    yolo: bool = False
    lock: str | None = None
    timeout_s: float = Field(
        default=3600.0,
        gt=0,
        validation_alias=AliasChoices("timeoutS", "timeout_s", "timeout"),
    )
    priority: Priority = Priority.NORMAL
    product_id: str = "default"
    title: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    estimated_cost_usd: float | None = Field(default=None, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
    children: list[ChildSpec] = Field(default_factory=list)
    # Routing: factories with these labels score higher (the affinity term), and weights
    # that override the product's for this job only (validated at submit).
    preferred_labels: list[str] = Field(default_factory=list)
    routing_weights: dict[str, float] | None = None
    # For a parent: what a failing child does to the others (gigafactory.dag).
    failure_policy: Literal["fail-fast", "continue"] = "fail-fast"
    cancel_running_on_failure: bool = False
    # A repository (a path or a git URL the factory can reach) to run in: the agent works in
    # a git worktree on branch `gigafactory/<jobId>` made from `base_ref` (default: the
    # repository's HEAD), and `cwd`, when relative, is inside that worktree.
    repo: str | None = None
    base_ref: str | None = None

    def headline(self) -> str:
        """What lists show for the job: its title, else its prompt's first line (shortened)."""
        if self.title and self.title.strip():
            return self.title.strip()
        first = next((line.strip() for line in self.prompt.splitlines() if line.strip()), "")
        return first if len(first) <= HEADLINE_MAX else first[: HEADLINE_MAX - 1] + "…"

    @field_validator("params", mode="before")
    @classmethod
    def _params_depth(cls, value: Any) -> Any:
        if _nested_deeper_than(value, MAX_PARAMS_DEPTH):
            raise ValueError(
                f"params are nested more than {MAX_PARAMS_DEPTH} levels deep; flatten them"
            )
        return value

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _parse_timeout(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_duration(value)
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in KNOWN_ENGINES:
            raise ValueError(f"unknown engine {value!r}; known engines: {', '.join(KNOWN_ENGINES)}")
        return value

    @field_validator("repo")
    @classmethod
    def _repo_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or value.startswith("-") or any(ord(c) < 32 for c in value):
            raise ValueError(
                f"invalid repository {value!r}: give a path or a git URL the factory can reach"
            )
        return value.strip()

    @field_validator("base_ref")
    @classmethod
    def _base_ref_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        bad = (
            not text
            or text.startswith(("-", "/"))
            or text.endswith(("/", ".lock", "."))
            or ".." in text
            or "@{" in text
            or any(ord(c) <= 32 or c in "~^:?*[\\" for c in text)
        )
        if bad:
            raise ValueError(
                f"invalid base ref {value!r}: give a branch, tag or commit of the repository"
            )
        return text

    @field_validator("product_id")
    @classmethod
    def _product_id_shape(cls, value: str) -> str:
        if (
            not value
            or not all(c.isalnum() or c in "_." for c in value)
            or value == FLEET_PARTITION
        ):
            raise ValueError(
                f"invalid productId {value!r}: use letters, digits, '_' or '.' "
                "(no '-', it separates workflow id parts)"
            )
        return value


ChildSpec.model_rebuild()


class Shipment(CamelModel):
    """Where a shipped job's branch went: the commit pushed, the remote, the forge's answer."""

    branch: str
    commit: str
    remote: str
    factory_id: str
    at: datetime
    url: str | None = None  # the pull request (or other) link the forge command printed
    output: str = ""


class JobView(CamelModel):
    """A job as everyone may read it: its spec, stage and why, lease, factory, cost, times."""

    id: str
    product_id: str
    workflow_id: str
    spec: JobSpec
    stage: Stage = Stage.QUEUED
    wait_reason: WaitReason | None = None
    stage_reason: str | None = None
    lease_epoch: int = 0
    factory_id: str | None = None
    parent_id: str | None = None
    submitted_by: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cost_usd: float = 0.0
    exit_code: int | None = None
    attempts: int = 0
    fenced_reports: int = 0
    # A shipped job with a repository: what SHIP pushed.
    shipment: Shipment | None = None
    # The Idempotency-Key it was submitted with, if any.
    idempotency_key: str | None = None


class Job(JobView):
    """The store's projection of a job: what the API and UI read fast."""

    # With an idempotency key: the digest of what was asked (a retry must ask the same).
    request_digest: str | None = None
    etag: str | None = Field(default=None, exclude=True)


class Event(CamelModel):
    """One thing that happened to a job: a stage transition, a routing decision, a fence."""

    id: str
    job_id: str
    product_id: str
    at: datetime
    kind: str  # "stage", "routing", "fenced", "log", "info", ...
    actor: str  # "workflow", "api:<keyId>", "factory:<id>"
    stage: Stage | None = None
    from_stage: Stage | None = None
    reason: str | None = None
    epoch: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class RunDetails(CamelModel):
    """What a run reports beyond its outcome and cost (None: unknown); carried as is from the
    agent's result into the run record."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    model: str | None = None
    cost_source: CostSource | None = None
    # A job with a repository: its branch and the commit the run ended on.
    branch: str | None = None
    commit: str | None = None


class RunFields(RunDetails):
    """What every record of one attempt says: its job, lease, factory, cost and reason."""

    job_id: str
    product_id: str
    epoch: int
    factory_id: str
    engine: str
    started_at: datetime
    exit_code: int | None = None
    cost_usd: float = 0.0
    cost_estimated: bool = False
    reason: str | None = None
    checkpoint: dict[str, Any] | None = None


class Run(RunFields):
    """One attempt of a job on a factory, keyed by (job, lease epoch)."""

    id: str  # "<jobId>.<epoch>"
    finished_at: datetime | None = None
    outcome: RunOutcome | None = None


class Artifact(CamelModel):
    """Metadata of a file a run produced; the bytes live in the blob store."""

    id: str
    job_id: str
    product_id: str
    name: str
    size: int
    sha256: str
    content_type: str = "application/octet-stream"
    epoch: int | None = None
    created_at: datetime
    uploaded_by: str


class LogChunk(CamelModel):
    """A piece of a run's log, streamed while the agent runs."""

    id: str  # "<jobId>.<epoch>.<seq:08d>"
    job_id: str
    product_id: str
    epoch: int
    seq: int
    at: datetime
    text: str


class FactoryStatus(StrEnum):
    """Operator-controlled state of a factory."""

    ACTIVE = "active"
    CORDONED = "cordoned"
    REVOKED = "revoked"


class Factory(CamelModel):
    """A machine that runs agents: its registry entry, token hash and last heartbeat."""

    id: str
    product_id: str = FLEET_PARTITION
    engines: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    slots: int = 1
    status: FactoryStatus = FactoryStatus.ACTIVE
    token_id: str | None = None
    token_hash: str | None = None
    hostname: str | None = None
    enrolled_at: datetime
    last_heartbeat_at: datetime | None = None
    healthy: bool = True  # what the factory itself reported at its last heartbeat
    running: int = 0  # what the factory itself reported at its last heartbeat
    cost_rate_usd_per_hour: float = 0.0
    # A run's lease on it was lost (it stopped heartbeating it, or never picked the run
    # up): when, and the sentence why. Routing skips it until its next heartbeat clears it.
    lease_lost_at: datetime | None = None
    lease_lost_reason: str | None = None
    etag: str | None = Field(default=None, exclude=True)


class SlotReservation(CamelModel):
    """A job's hold on one slot of a factory, for one lease epoch."""

    job_id: str
    product_id: str
    epoch: int
    priority: Priority = Priority.NORMAL
    reserved_at: datetime
    # Chosen as a preemption victim: it is being stopped and is not chosen again.
    evicted_by: str | None = None


class SlotTable(CamelModel):
    """The slots of one factory: the compare-and-set unit of routing (id "slots-<factoryId>")."""

    id: str
    product_id: str = FLEET_PARTITION
    factory_id: str
    reservations: list[SlotReservation] = Field(default_factory=list)
    etag: str | None = Field(default=None, exclude=True)


class Role(StrEnum):
    """What an API key may do; each role includes the ones before it."""

    SUBMITTER = "submitter"
    OPERATOR = "operator"
    ADMIN = "admin"


class PreemptionSettings(CamelModel):
    """A product's preemption policy; a field left None keeps the fleet's setting.

    `preempting_priorities`: which of the product's priorities may evict lower-priority
    jobs. `min_runtime_s`: the product's jobs are not evicted before they ran this long.
    `grace_s`: how long the product's evicted agents get to stop and checkpoint.
    """

    preempting_priorities: list[Priority] | None = None
    min_runtime_s: float | None = Field(default=None, ge=0)
    grace_s: float | None = Field(default=None, ge=0)


class RoutingWeights(CamelModel):
    """A product's routing settings: weight overrides (terms not given keep the fleet
    defaults) and its preemption policy."""

    id: str = "routing-weights"
    product_id: str
    weights: dict[str, float] = Field(default_factory=dict)
    preemption: PreemptionSettings = Field(default_factory=PreemptionSettings)
    updated_at: datetime
    updated_by: str


class ShadowDecision(CamelModel):
    """What the shadow weight set would have picked for one placement (FLEET_ROUTING_SHADOW);
    the id is the run id, so a decision is recorded once."""

    id: str
    product_id: str
    job_id: str
    at: datetime
    factory_id: str | None
    shadow_factory_id: str | None
    score: float  # the live pick's score
    shadow_score: float  # the shadow pick's score under the live weights (0: not eligible)
    differs: bool


class SpendRecord(CamelModel):
    """One run's spend in a product's ledger; the id is the run id, so it is written once."""

    id: str  # the run id, "<jobId>.<epoch>"
    product_id: str
    job_id: str
    usd: float = Field(ge=0)
    estimated: bool = False
    at: datetime


class QueueEntry(CamelModel):
    """A job waiting for a slot, in the fleet's queue (id: its workflow id).

    Entries of one lane (same engine, capabilities, preferences, previous factory and
    priority) are served oldest first, so a lane's head is its best job on any factory.
    """

    id: str
    product_id: str = FLEET_PARTITION
    lane: str
    job_id: str
    job_product_id: str
    workflow_id: str
    epoch: int  # the lease epoch the job runs under when it gets a slot
    engine: str
    capabilities: list[str] = Field(default_factory=list)
    preferred_labels: list[str] = Field(default_factory=list)
    previous_factory_id: str | None = None
    priority: Priority = Priority.NORMAL
    waiting_since: datetime
    # FLEET_PREEMPTION for the job: while it waits, dispatchers keep trying to preempt for it.
    may_preempt: bool = False
    etag: str | None = Field(default=None, exclude=True)


class QueueLane(CamelModel):
    """One lane of the fleet's queue: what its jobs need, so a freed slot looks only at
    lanes its factory can serve, one head each."""

    id: str
    product_id: str = FLEET_PARTITION
    engine: str
    capabilities: list[str] = Field(default_factory=list)
    preferred_labels: list[str] = Field(default_factory=list)
    previous_factory_id: str | None = None
    priority: Priority = Priority.NORMAL
    etag: str | None = Field(default=None, exclude=True)


PRODUCT_RECORD_ID = "product"


class ProductRecord(CamelModel):
    """That a product exists (its first job was submitted then); products are listed by it."""

    id: str = PRODUCT_RECORD_ID
    product_id: str
    created_at: datetime


class StoredBudget(CamelModel):
    """A product's budget settings as operators set them (the controller owns the counts)."""

    id: str = "budget"
    product_id: str
    config: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime
    updated_by: str


class ApiKey(CamelModel):
    """An API key: its hash, role and the products it may see (["*"] for all)."""

    id: str
    product_id: str = FLEET_PARTITION
    name: str
    role: Role
    products: list[str]
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    def may_see(self, product_id: str) -> bool:
        return "*" in self.products or product_id in self.products


class EnrollmentToken(CamelModel):
    """A one-time token an operator hands to a new factory."""

    id: str
    product_id: str = FLEET_PARTITION
    token_hash: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    used_by_factory: str | None = None
    created_by: str
    etag: str | None = Field(default=None, exclude=True)


class UiSession(CamelModel):
    """A web control plane sign-in: the hash of its cookie's secret names it, and it stands
    for one API key until it expires (the key itself is checked on every request)."""

    id: str  # SHA-256 of the session secret (the cookie holds the secret)
    product_id: str = FLEET_PARTITION
    key_id: str
    created_at: datetime
    expires_at: datetime


class AuditEvent(CamelModel):
    """One operator or admin action (or attempt): who did what to which target, when, and
    how it ended. Stored in the partition of the product it concerns, or `_fleet` for
    fleet-wide actions (factories, keys)."""

    id: str
    product_id: str = FLEET_PARTITION
    at: datetime
    actor: str  # "api:<keyId>", "factory:<id>", "enrollment:<tokenId>"
    role: str  # the actor's role: submitter, operator, admin, factory or enrollment
    action: str  # "job.cancel", "factory.revoke", "key.create", ...
    target: str  # "job:<id>", "factory:<id>", "key:<id>", "product:<id>", "fleet"
    outcome: str  # "ok", or the refusal's code: "forbidden", "not_found", "conflict", ...
    reason: str | None = None  # the caller's reason, or why it was refused
    data: dict[str, Any] = Field(default_factory=dict)
