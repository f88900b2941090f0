"""Request and response models of the HTTP API (camelCase on the wire).

Kept apart from the storage models in `gigafactory.models`: responses never carry token
or key hashes, and a stored field can change without changing the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, ValidationError, field_validator

from gigafactory.models import (
    ApiKey,
    Artifact,
    CamelModel,
    DependencyKind,
    FactoryStatus,
    Job,
    JobSpec,
    JobView,
    Priority,
    Role,
    Run,
    Stage,
)
from gigafactory.services.factories import FactoryState
from gigafactory.services.specs import Submission

__all__ = [
    "ApiKeyCreated",
    "ApiKeyList",
    "ApiKeyOut",
    "ArtifactList",
    "ArtifactOut",
    "AuditEventOut",
    "AuditList",
    "ChildIn",
    "CreateApiKey",
    "EnrollRequest",
    "EnrollmentTokenOut",
    "ErrorBody",
    "ErrorDetail",
    "EventList",
    "EventOut",
    "FactoryList",
    "FactoryOut",
    "FactoryTokenOut",
    "Health",
    "HeartbeatRequest",
    "JobAction",
    "JobList",
    "JobOut",
    "LogChunkIn",
    "LogChunkOut",
    "LogOut",
    "RunList",
    "RunOut",
    "SubmitJob",
]

FACTORY_ID_PATTERN = r"^[a-z0-9-]{1,40}$"


class RequestModel(CamelModel):
    """Base of request bodies: unknown fields are refused, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


# --- jobs -------------------------------------------------------------------------------------
class JobFieldsIn(RequestModel):
    """A job's fields in a request; `null` means "not given"."""

    engine: str | None = None
    prompt: str | None = None
    cwd: str | None = None
    yolo: bool | None = None
    lock: str | None = None
    timeout: str | float | None = Field(
        default=None, validation_alias=AliasChoices("timeout", "timeoutS", "timeout_s")
    )
    priority: Priority | None = None
    title: str | None = None
    capabilities: list[str] | None = None
    labels: dict[str, str] | None = None
    estimated_cost_usd: float | None = None
    params: dict[str, Any] | None = None
    children: list[ChildIn] | None = Field(
        default=None,
        description="Subtasks, each a full job run in `dependsOn` order (see docs/dag.md).",
    )
    failure_policy: Literal["fail-fast", "continue"] | None = Field(
        default=None, description="For a parent: what a failing child does to the others."
    )
    cancel_running_on_failure: bool | None = None
    preferred_labels: list[str] | None = Field(
        default=None, description="Factories with these labels score higher (affinity)."
    )
    routing_weights: dict[str, float] | None = Field(
        default=None, description='Weight overrides for this job only, e.g. {"load": 4}.'
    )
    repo: str | None = Field(
        default=None,
        description="A repository (path or git URL the factory reaches): the job runs in a "
        "git worktree on branch gigafactory/<jobId> (see docs/agents.md).",
    )
    base_ref: str | None = Field(
        default=None, description="The branch, tag or commit that branch starts from."
    )

    def job_fields(self) -> dict[str, Any]:
        """The job fields given, in camelCase, children nested as `{id, dependsOn,
        dependencyKind, spec}`, without nulls."""
        fields = self.model_dump(
            by_alias=True,
            exclude_unset=True,
            exclude_none=True,
            exclude={"spec", "children", "id", "depends_on", "dependency_kind"},
        )
        if self.children is not None:
            fields["children"] = [child.as_child() for child in self.children]
        return fields


class ChildIn(JobFieldsIn):
    """A child of a parent job: its id (local to the parent), its dependencies and its job
    fields, flat or nested under `spec`. What it leaves out it inherits from the parent
    (engine, cwd, yolo, timeout, product)."""

    id: str
    depends_on: list[str] = Field(default_factory=list)
    dependency_kind: DependencyKind = DependencyKind.SUCCEEDED
    spec: dict[str, Any] = Field(default_factory=dict)

    def as_child(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dependsOn": self.depends_on,
            "dependencyKind": self.dependency_kind.value,
            "spec": {**self.spec, **self.job_fields()},
        }


JobFieldsIn.model_rebuild()
ChildIn.model_rebuild()


class AddChildrenIn(RequestModel):
    """Children added to an open parent; validated with the parent's existing children."""

    children: list[ChildIn] = Field(min_length=1)


class SubmitJob(JobFieldsIn):
    """Submit a job: the job's fields, or `spec` (job-spec Markdown) plus fields overriding it.

    `null` means "not given". `timeout` takes seconds or a duration such as "90s", "15m",
    "10h" or "1d". `productId` may be left out when the key has exactly one product.
    """

    spec: str | None = Field(default=None, description="A job-spec Markdown file, as text.")
    product_id: str | None = None

    def job_fields(self) -> dict[str, Any]:
        fields = super().job_fields()
        if self.product_id is not None:
            fields["productId"] = self.product_id
        return fields

    def submission(self) -> Submission:
        """What the services take: the fields given and the spec file."""
        return Submission(fields=self.job_fields(), spec_text=self.spec)


class JobOut(JobView):
    """A job as the API shows it."""

    @classmethod
    def of(cls, job: Job) -> JobOut:
        """The API view of a stored job."""
        return cls.model_validate(job.model_dump(include=set(cls.model_fields)))


class JobList(CamelModel):
    """A page of jobs, newest first; pass `continuation` back for the next page."""

    items: list[JobOut]
    continuation: str | None = None


class JobAction(RequestModel):
    """Change a job: `cancel` it (submitters) or `ship` a succeeded one (operators)."""

    action: Literal["cancel", "ship"]
    reason: str | None = Field(default=None, max_length=2000)


class EventOut(CamelModel):
    """One thing that happened to a job."""

    id: str
    job_id: str
    product_id: str
    at: datetime
    kind: str
    actor: str
    stage: Stage | None = None
    from_stage: Stage | None = None
    reason: str | None = None
    epoch: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class EventList(CamelModel):
    """A job's events, oldest first."""

    items: list[EventOut]
    continuation: str | None = None


class RunOut(Run):
    """One attempt of a job on a factory: its lease epoch, factory, times, outcome, cost
    (and where the figure came from), tokens, agent session and commit."""


class RunList(CamelModel):
    """A job's runs by lease epoch."""

    items: list[RunOut]


# --- logs -------------------------------------------------------------------------------------
class StartedIn(RequestModel):
    """A factory's report that the agent of lease `epoch` started (or stopped)."""

    product_id: str
    epoch: int = Field(ge=0)


class LogChunkIn(RequestModel):
    """A factory's log report for lease `epoch`; the same (epoch, seq) twice is stored once."""

    product_id: str
    epoch: int = Field(ge=0)
    seq: int = Field(ge=0)
    text: str = Field(description="At most FLEET_MAX_LOG_CHUNK_BYTES bytes of UTF-8 (else 413).")
    agent_stopped: bool = Field(
        default=False, description="The last chunk: the agent stopped, its slot may be reused."
    )


class LogChunkOut(CamelModel):
    """A piece of a run's log."""

    epoch: int
    seq: int
    at: datetime
    text: str


class LogOut(CamelModel):
    """Log chunks in (epoch, seq) order, joined in `text`; poll with `afterSeq=nextSeq`."""

    items: list[LogChunkOut]
    text: str
    next_seq: int = Field(
        description="The afterSeq of the next poll: the last seq returned (or the one asked)."
    )


# --- artifacts --------------------------------------------------------------------------------
class ArtifactOut(CamelModel):
    """Metadata of a file a job produced; GET `.../content` for its bytes."""

    id: str
    job_id: str
    product_id: str
    name: str
    size: int
    sha256: str
    content_type: str
    epoch: int | None = None
    created_at: datetime
    uploaded_by: str

    @classmethod
    def of(cls, artifact: Artifact) -> ArtifactOut:
        """The API view of stored artifact metadata."""
        return cls.model_validate(artifact.model_dump())


class ArtifactList(CamelModel):
    """A job's artifacts, oldest first."""

    items: list[ArtifactOut]


# --- factories --------------------------------------------------------------------------------
class EnrollmentTokenOut(CamelModel):
    """A one-time enrollment token, shown once."""

    token: str
    expires_at: datetime


class EnrollRequest(RequestModel):
    """A new (or re-enrolling) factory presents its enrollment token."""

    enrollment_token: str
    factory_id: str = Field(pattern=FACTORY_ID_PATTERN)
    engines: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    slots: int = Field(default=1, ge=0, le=1024)
    hostname: str | None = Field(default=None, max_length=255)
    cost_rate_usd_per_hour: float = Field(default=0.0, ge=0)


class FactoryTokenOut(CamelModel):
    """A factory token, shown once."""

    factory_id: str
    factory_token: str


class HeartbeatRequest(RequestModel):
    """What a factory reports every few seconds."""

    engines: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    slots: int = Field(default=1, ge=0, le=1024)
    healthy: bool = True
    running: int = Field(default=0, ge=0)


class FactoryOut(CamelModel):
    """A factory as operators see it."""

    id: str
    engines: list[str]
    labels: list[str]
    slots: int
    slots_in_use: int
    status: FactoryStatus
    hostname: str | None = None
    enrolled_at: datetime
    last_heartbeat_at: datetime | None = None
    healthy: bool = Field(
        description="Reported healthy at a heartbeat no older than the unhealthy threshold."
    )
    reported_healthy: bool
    lease_lost_at: datetime | None = Field(
        default=None,
        description="When a run's lease on it was lost; routing skips it until its next heartbeat.",
    )
    lease_lost_reason: str | None = None
    running: int
    cost_rate_usd_per_hour: float

    @classmethod
    def of(cls, state: FactoryState) -> FactoryOut:
        """The API view of a factory (never its token hash)."""
        f = state.factory
        return cls(
            id=f.id,
            engines=f.engines,
            labels=f.labels,
            slots=f.slots,
            slots_in_use=state.slots_in_use,
            status=f.status,
            hostname=f.hostname,
            enrolled_at=f.enrolled_at,
            last_heartbeat_at=f.last_heartbeat_at,
            healthy=state.healthy,
            reported_healthy=f.healthy,
            lease_lost_at=f.lease_lost_at,
            lease_lost_reason=f.lease_lost_reason,
            running=f.running,
            cost_rate_usd_per_hour=f.cost_rate_usd_per_hour,
        )


class FactoryList(CamelModel):
    """Every factory, by id."""

    items: list[FactoryOut]


# --- keys -------------------------------------------------------------------------------------
class CreateApiKey(RequestModel):
    """A new API key: its name, role and the products it may see ("*" for all)."""

    name: str = Field(min_length=1, max_length=200)
    role: Role
    products: list[str] = Field(min_length=1)

    @field_validator("products")
    @classmethod
    def _product_shapes(cls, products: list[str]) -> list[str]:
        for product in products:
            if product == "*":
                continue
            # The same rule as a job's productId, so every granted product is usable.
            try:
                JobSpec(engine="shell", prompt="-", product_id=product)
            except ValidationError as err:
                raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return products


class ApiKeyOut(CamelModel):
    """An API key without its secret."""

    id: str
    name: str
    role: Role
    products: list[str]
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        """The API view of a key (never its hash)."""
        return cls.model_validate(key.model_dump(exclude={"key_hash", "product_id"}))


class ApiKeyCreated(ApiKeyOut):
    """A new API key; `key` is shown this once and never stored."""

    key: str


class ApiKeyList(CamelModel):
    """Every API key, by id."""

    items: list[ApiKeyOut]


# --- health -----------------------------------------------------------------------------------
class Health(CamelModel):
    """Whether the store and Temporal are reachable."""

    status: Literal["ok", "degraded"]
    store: str
    temporal: str


# --- audit ------------------------------------------------------------------------------------
class AuditEventOut(CamelModel):
    """One operator or admin action: who did what to which target, when, how it ended."""

    id: str
    product_id: str = Field(description="The product concerned, or `_fleet` (fleet-wide).")
    at: datetime
    actor: str = Field(description="api:<keyId>, factory:<id> or enrollment:<tokenId>.")
    role: str
    action: str
    target: str
    outcome: str = Field(description='"ok", or the refusal\'s code (forbidden, not_found...).')
    reason: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class AuditList(CamelModel):
    """Audit events newest first; pass `continuation` back for the next page."""

    items: list[AuditEventOut]
    continuation: str | None = None


# --- errors -----------------------------------------------------------------------------------
class ErrorDetail(CamelModel):
    """What went wrong, in a message a person can act on."""

    code: str = Field(description="Stable and machine-readable: invalid_request, not_found...")
    message: str
    field: str | None = Field(default=None, description="The input at fault, when there is one.")


class ErrorBody(CamelModel):
    """Every error response: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail
