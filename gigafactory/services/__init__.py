"""The services layer: one home for each fleet operation.

The API, the web UI, the control plane's activities and (through the API) the CLI call
these, and only these, to change or read the fleet. Services know the store, a Temporal
client and the settings; they know nothing of HTTP or of workflow code, and they refuse
with the domain errors of `gigafactory.services.errors`.

`Services` builds every service once, wired to each other, for one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client

from gigafactory.services.access import Principal
from gigafactory.services.artifacts import ArtifactService
from gigafactory.services.attempts import AttemptService
from gigafactory.services.audit import AuditLog
from gigafactory.services.auth import Authenticator
from gigafactory.services.budgets import BudgetService
from gigafactory.services.clock import Clock, utcnow
from gigafactory.services.controller import ControllerClient
from gigafactory.services.dispatch import Dispatcher
from gigafactory.services.factories import FactoryService
from gigafactory.services.factory_queues import FactoryQueues
from gigafactory.services.health import HealthService
from gigafactory.services.job_tree import JobTreeService
from gigafactory.services.jobs import JobService
from gigafactory.services.keys import KeyService
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.services.metrics import MetricsService
from gigafactory.services.overview import OverviewService
from gigafactory.services.queue import Queue
from gigafactory.services.rate_limits import RateLimits
from gigafactory.services.routing import RoutingService
from gigafactory.services.sessions import SessionService
from gigafactory.services.shipping import ShippingService
from gigafactory.services.workflow_ops import WorkflowOps
from gigafactory.settings import Settings
from gigafactory.store import open_blobs
from gigafactory.store.blobs import BlobStore
from gigafactory.store.fleet_store import FleetStore
from routing import FleetWeights, PreemptionPolicy

__all__ = ["Principal", "Services"]


@dataclass
class Services:
    """Every service of one process, over one store and one Temporal client.

    Args:
        store: An open store.
        temporal: A connected client (pydantic data converter).
        settings: Validated settings.
        blobs: Artifact bytes (default: the local blob store of the data directory).
        clock: The current time (tests pin it).
        weights: The fleet's default routing weights (default: `FleetWeights()`).
        shadow_weights: The shadow weight set (default: FLEET_ROUTING_SHADOW).
        policy: The fleet's preemption policy (default: from settings).
    """

    store: FleetStore
    temporal: Client
    settings: Settings
    blobs: BlobStore | None = None
    clock: Clock = utcnow
    weights: FleetWeights | None = None
    shadow_weights: FleetWeights | None = None
    policy: PreemptionPolicy | None = None
    auth: Authenticator = field(init=False)
    audit: AuditLog = field(init=False)
    rates: RateLimits = field(init=False)
    lifecycle: Lifecycle = field(init=False)
    controllers: ControllerClient = field(init=False)
    workflows: WorkflowOps = field(init=False)
    queue: Queue = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    jobs: JobService = field(init=False)
    shipping: ShippingService = field(init=False)
    tree: JobTreeService = field(init=False)
    routing: RoutingService = field(init=False)
    factories: FactoryService = field(init=False)
    health: HealthService = field(init=False)
    budgets: BudgetService = field(init=False)
    attempts: AttemptService = field(init=False)
    keys: KeyService = field(init=False)
    artifacts: ArtifactService = field(init=False)
    sessions: SessionService = field(init=False)
    overview: OverviewService = field(init=False)
    metrics: MetricsService = field(init=False)

    def __post_init__(self) -> None:
        store, temporal, settings, clock = self.store, self.temporal, self.settings, self.clock
        queue = settings.control_task_queue
        self.auth = Authenticator(store)
        self.audit = audit = AuditLog(store, settings, clock)
        self.rates = rates = RateLimits.from_settings(settings)
        self.lifecycle = Lifecycle(store)
        self.controllers = ControllerClient(
            store, temporal, queue, settings.budget_controller_max_events
        )
        self.workflows = WorkflowOps(temporal, queue)
        self.queue = Queue(store)
        self.jobs = JobService(store, temporal, settings, self.lifecycle, clock, audit, rates)
        self.shipping = ShippingService(
            store, temporal, settings, self.lifecycle, self.jobs, clock, audit
        )
        self.tree = JobTreeService(store, temporal, settings, self.jobs)
        self.routing = RoutingService(
            store,
            settings,
            self.queue,
            self.jobs,
            clock,
            audit,
            defaults=self.weights,
            shadow=self.shadow_weights,
            policy=self.policy,
        )
        self.dispatcher = Dispatcher(
            store,
            temporal,
            settings,
            self.lifecycle,
            self.routing,
            self.queue,
            self.controllers,
            self.workflows,
            clock,
        )
        self.factories = FactoryService(
            store, settings, self.dispatcher, clock, audit, FactoryQueues(temporal), rates
        )
        self.health = HealthService(store, temporal)
        self.budgets = BudgetService(
            store, settings, self.controllers, self.lifecycle, clock, audit
        )
        self.attempts = AttemptService(
            store, self.lifecycle, self.budgets, self.dispatcher, self.jobs, self.factories
        )
        self.keys = KeyService(store, clock, audit)
        self.artifacts = ArtifactService(
            store,
            self.blobs if self.blobs is not None else open_blobs(settings),
            settings,
            self.jobs,
            clock,
            audit,
        )
        self.sessions = SessionService(store, self.auth, settings, clock)
        self.metrics = MetricsService(store, settings, clock)
        self.overview = OverviewService(
            store,
            settings,
            self.jobs,
            self.factories,
            self.routing,
            self.tree,
            self.artifacts,
            clock,
        )
