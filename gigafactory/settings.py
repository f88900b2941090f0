"""All settings, validated once: environment variables prefixed `FLEET_`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "settings_env"]


class Settings(BaseSettings):
    """Gigafactory settings (env prefix `FLEET_`, e.g. `FLEET_PREEMPTION=true`)."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    # Where the embedded store, blobs, workspaces and the dev server's database live.
    data_dir: Path = Path(".gigafactory")

    # Feature flags (default off: off means no behaviour change at all).
    preemption: bool = False
    budgets: bool = False
    # A product controller continues as new at this many history events.
    budget_controller_max_events: int = Field(default=1000, ge=50)
    routing_shadow: str | None = None
    # Preemption policy, fleet-wide (a product may set its own beside its routing weights):
    # priorities that may evict lower ones (the specification's rule: critical only), and a
    # minimum runtime before a job may be evicted.
    preempting_priorities: str = "critical"
    preemption_min_runtime_s: float = Field(default=0.0, ge=0)

    # Store.
    store: Literal["sqlite", "cosmos"] = "sqlite"
    sqlite_path: Path | None = None
    cosmos_endpoint: str | None = None
    cosmos_key: str | None = None
    cosmos_database: str = "gigafactory"
    cosmos_verify_tls: bool = True

    # Temporal. None falls back to Temporal's own env config (TEMPORAL_ADDRESS, profiles...).
    temporal_address: str | None = None
    namespace: str | None = None
    # The control plane's task queue; one per control plane sharing a Temporal namespace.
    control_task_queue: str = "fleet-control"

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str | None = None  # what clients (CLI, factories) call; default from host/port
    api_key: str | None = None  # the CLI's key
    admin_key: str | None = None  # bootstrap admin key of `gigafactory dev`
    factory_token: str | None = None  # a factory's token

    # Metrics and traces (docs/operations.md#metrics-and-traces), off by default. A process
    # with `metrics_port` serves its own Prometheus metrics there (the API serves the fleet's
    # on /metrics too); with `sdk_metrics_port`, the Temporal SDK's runtime metrics. Fleet
    # figures read from the store are reused for `metrics_cache_s`. Traces: `file` writes
    # JSON lines per process to `tracing_dir` (default <data dir>/traces), `otlp` exports
    # to the collector that the standard OTEL_EXPORTER_OTLP_* variables name.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    sdk_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_cache_s: float = Field(default=10.0, ge=0)
    tracing: Literal["off", "file", "otlp"] = "off"
    tracing_dir: Path | None = None

    # The web control plane (/ui): how long a sign-in lasts, how often live panels refresh,
    # whether its cookie is HTTPS-only (it is whenever the request itself is HTTPS), and the
    # Temporal UI that job pages link to (the dev stack sets its own).
    ui_session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    ui_poll_interval_s: float = Field(default=2.0, ge=0.5)
    ui_secure_cookie: bool = False
    temporal_ui_url: str | None = None

    # Dev stack ports.
    temporal_port: int = 7233
    ui_port: int = 8233

    # Factories and leases.
    factory_heartbeat_interval_s: float = Field(default=5.0, gt=0)
    factory_unhealthy_after_s: float = Field(default=20.0, gt=0)
    lease_heartbeat_timeout_s: float = Field(default=15.0, gt=0)
    dispatch_timeout_s: float = Field(default=30.0, gt=0)  # schedule-to-start on a factory
    # A job whose runs were lost (factory gone, lease or pick-up timed out) this many times
    # fails instead of being requeued again: a job that takes its factories down stops.
    max_lost_attempts: int = Field(default=5, ge=1)
    # Routing reads the fleet (factories, slot tables) for every decision (0), or at most
    # this often: for fleets of thousands of factories (docs/deployment.md).
    routing_snapshot_s: float = Field(default=0.0, ge=0)
    # How often each control process reconciles dispatch: fills free slots a lost hand-off
    # left idle, re-signals lost grants, preempts for queued urgent jobs, reaps dead slots.
    reconcile_s: float = Field(default=2.0, gt=0)
    stop_grace_s: float = Field(default=10.0, ge=0)  # SIGTERM -> SIGKILL for a stopped agent
    # How soon a running agent learns of a cancel or preemption (its heartbeat's answer).
    cancel_check_s: float = Field(default=2.0, gt=0)
    enrollment_ttl_s: float = Field(default=3600.0, gt=0)
    # Agent CLIs are stopped with SIGINT first (they report what they spent); how long they
    # get before SIGTERM, within stop_grace_s.
    stop_interrupt_s: float = Field(default=3.0, ge=0)

    # Agents (docs/agents.md). Prices: JSON {model: {inputPerMtok, outputPerMtok}} over the
    # defaults of gigafactory.pricing. Models: JSON {engine: model}, the model an engine uses
    # when a job's params name none.
    model_prices: str | None = None
    agent_models: str | None = None

    # Workspaces (jobs with a repository). The work remote receives WIP branches of stopped
    # runs (default: the repository itself; `{name}` is the repository's name); the ship
    # remote receives shipped branches (default: the repository); a forge command, when set,
    # is run instead of the push to ship (placeholders {branch}, {base}, {title}, {repo},
    # {remote}), e.g. `gh pr create --head {branch} --base {base} --title {title} --fill`.
    work_remote: str | None = None
    ship_remote: str | None = None
    forge_command: str | None = None
    # How long a finished job's worktree is kept before `factory cleanup` removes it.
    workspace_retention_s: float = Field(default=7 * 24 * 3600.0, ge=0)
    # SHIP of a job with a repository runs on a factory: how long it may take to pick the
    # ship up and to push, and how long the API waits for the outcome before answering 202.
    ship_pickup_timeout_s: float = Field(default=60.0, gt=0)
    ship_push_timeout_s: float = Field(default=300.0, gt=0)
    ship_wait_s: float = Field(default=30.0, ge=0)

    # Limits (docs/security.md): what one request may carry. Refused with 413 (too large)
    # or 422 (too many), before anything is stored.
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)  # a JSON body
    max_spec_bytes: int = Field(default=256 * 1024, ge=1)  # a job-spec file
    max_prompt_bytes: int | None = Field(default=None, ge=1)  # a prompt; None: max_spec_bytes
    max_log_chunk_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # one log report
    max_artifact_bytes: int = Field(default=50 * 1024 * 1024, ge=1)  # one artifact
    max_labels: int = Field(default=64, ge=0)  # labels, capabilities: entries per list
    max_label_bytes: int = Field(default=256, ge=1)  # one label (name or value)
    max_page_size: int = Field(default=5000, ge=1)  # `limit` of any list (each has its own too)
    dag_max_children: int = Field(default=500, ge=1)  # children directly under one parent
    dag_max_depth: int = Field(default=50, ge=1)  # the longest dependency chain
    log_chunk_interval_s: float = Field(default=1.0, gt=0)

    # Rate limits per API key (submits) and per factory (reports): a token bucket of
    # `burst` requests refilled at `per_s` a second, in each API process; 0 turns one off.
    rate_submit_per_s: float = Field(default=20.0, ge=0)
    rate_submit_burst: int = Field(default=200, ge=1)
    rate_report_per_s: float = Field(default=50.0, ge=0)
    rate_report_burst: int = Field(default=500, ge=1)

    log_level: str = "INFO"

    # Process hygiene: third-party HTTP logging (the Azure SDK's requests and headers,
    # httpx, uvicorn's access log) at the log level instead of WARNING.
    log_http: bool = False

    @property
    def prompt_limit(self) -> int:
        """The largest prompt (of a job or a child) in bytes."""
        return self.max_spec_bytes if self.max_prompt_bytes is None else self.max_prompt_bytes

    @property
    def resolved_sqlite_path(self) -> Path:
        return self.sqlite_path or self.data_dir / "fleet.sqlite3"

    @property
    def resolved_api_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def resolved_tracing_dir(self) -> Path:
        return self.tracing_dir or self.data_dir / "traces"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def workspace_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def mirror_dir(self) -> Path:
        """Bare mirrors of the repositories jobs name, one folder per factory below it."""
        return self.data_dir / "mirrors"

    @property
    def agent_home_dir(self) -> Path:
        """The agent CLIs' homes (config, sessions), one folder per factory below it."""
        return self.data_dir / "agent-homes"


def settings_env(settings: Settings) -> dict[str, str]:
    """The `FLEET_*` environment that gives a child process these settings: every field
    that differs from its default (so the child's own environment fills in the rest)."""
    env: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if value == info.default or value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"FLEET_{name.upper()}"] = text
    return env
