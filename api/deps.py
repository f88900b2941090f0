"""Dependencies of the routes: the app's clients, the caller, and the permission rules.

Every request carries `Authorization: Bearer <token>` except `/healthz`, `/docs`,
`/openapi.json` and `POST /fleet/factories/enroll` (which presents an enrollment token in
its body). API keys (`gfk_...`) have a role; each role includes the ones before it. A key
sees only its products: anything of another product answers 404, exactly as if it did
not exist (Invariant 7), while a role that is too low answers 403.

| Action                                        | submitter | operator | admin | factory  |
|-----------------------------------------------|-----------|----------|-------|----------|
| submit; list, read jobs, runs, events, logs   | own       | own      | own   | -        |
| cancel a job                                  | own       | own      | own   | -        |
| ship a succeeded job                          | -         | own      | own   | -        |
| list, read, upload artifacts (no epoch)       | own       | own      | own   | -        |
| delete an artifact                            | -         | own      | own   | -        |
| report a log chunk, upload with an epoch      | -         | -        | -     | its jobs |
| heartbeat                                     | -         | -        | -     | itself   |
| rotate a factory token                        | -         | all      | all   | itself   |
| enrollment tokens; list, read, cordon,        | -         | all      | all   | -        |
| uncordon factories; revoke a factory token    |           |          |       |          |
| create, list, revoke API keys                 | -         | -        | all*  | -        |

"own" means jobs of the products listed on the key (`["*"]` is every product).
Factories serve every product, so fleet-wide operations ("all") are not product-scoped.
(*) An admin grants only products it may see itself. A factory reports for a job only
while the job's lease is assigned to it; a report from an older lease epoch is fenced
(409 `fenced`) and recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.errors import ApiError
from gigafactory.models import ApiKey, Factory, FactoryStatus, Job, Role
from gigafactory.security import API_KEY, FACTORY_TOKEN, parse_token, verify
from gigafactory.settings import Settings
from gigafactory.store.backend import NotFound
from gigafactory.store.blobs import BlobStore
from gigafactory.store.fleet_store import FleetStore

__all__ = [
    "AdminDep",
    "BOOTSTRAP_KEY_ID",
    "BlobsDep",
    "CallerDep",
    "Clock",
    "ClockDep",
    "FactoryDep",
    "OperatorDep",
    "Principal",
    "PrincipalDep",
    "SettingsDep",
    "StoreDep",
    "TemporalDep",
    "ROLE_RANK",
    "job_for",
    "require_role",
    "visible_job",
]

# The id under which `settings.admin_key` is stored (it may have any shape).
BOOTSTRAP_KEY_ID = "bootstrap"

ROLE_RANK: dict[Role, int] = {Role.SUBMITTER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}

Clock = Callable[[], datetime]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (gfk_...) or, for factory reports, a factory token (gff_...).",
)


def _state_store(request: Request) -> FleetStore:
    return cast(FleetStore, request.app.state.store)


def _state_temporal(request: Request) -> Client:
    return cast(Client, request.app.state.temporal)


def _state_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def _state_blobs(request: Request) -> BlobStore:
    return cast(BlobStore, request.app.state.blobs)


def _state_clock(request: Request) -> Clock:
    return cast(Clock, request.app.state.clock)


StoreDep = Annotated[FleetStore, Depends(_state_store)]
TemporalDep = Annotated[Client, Depends(_state_temporal)]
SettingsDep = Annotated[Settings, Depends(_state_settings)]
BlobsDep = Annotated[BlobStore, Depends(_state_blobs)]
ClockDep = Annotated[Clock, Depends(_state_clock)]


def utcnow() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


_BAD_KEY = "invalid API key: check the Authorization: Bearer header (gfk_...)"
_BAD_FACTORY_TOKEN = (
    "invalid factory token: it was never issued, was rotated or revoked; enroll the "
    "factory again with a new enrollment token"
)


@dataclass(frozen=True)
class Principal:
    """Who calls: an API key or a factory (exactly one is set)."""

    key: ApiKey | None = None
    factory: Factory | None = None

    @property
    def actor(self) -> str:
        """How events name this caller: "api:<keyId>" or "factory:<id>"."""
        if self.key is not None:
            return f"api:{self.key.id}"
        assert self.factory is not None
        return f"factory:{self.factory.id}"


async def _api_key(store: FleetStore, token: str) -> ApiKey:
    try:
        kind, key_id = parse_token(token)
    except ValueError:
        kind, key_id = API_KEY, BOOTSTRAP_KEY_ID  # the bootstrap key may have any shape
    if kind != API_KEY:
        raise _unauthorized(f"a {kind} token is not an API key: use a gfk_... key here")
    candidates = [key_id] if key_id == BOOTSTRAP_KEY_ID else [key_id, BOOTSTRAP_KEY_ID]
    for candidate in candidates:
        try:
            key = await store.get_api_key(candidate)
        except NotFound:
            continue
        if verify(token, key.key_hash):
            if key.revoked_at is not None:
                raise _unauthorized(f"API key {key.id} was revoked; ask an admin for a new one")
            return key
    raise _unauthorized(_BAD_KEY)


async def _factory(store: FleetStore, token: str) -> Factory:
    try:
        kind, token_id = parse_token(token)
    except ValueError:
        raise _unauthorized(_BAD_FACTORY_TOKEN) from None
    if kind != FACTORY_TOKEN:
        raise _unauthorized(f"a {kind} token is not a factory token: use the gff_... token")
    try:
        factory = await store.find_factory_by_token_id(token_id)
    except NotFound:
        raise _unauthorized(_BAD_FACTORY_TOKEN) from None
    if factory.status == FactoryStatus.REVOKED or not verify(token, factory.token_hash):
        raise _unauthorized(_BAD_FACTORY_TOKEN)
    return factory


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing credentials: send Authorization: Bearer <API key or token>")
    return credentials.credentials


async def current_key(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The caller's API key (401 when missing, unknown or revoked)."""
    return await _api_key(store, _token(credentials))


async def current_factory(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Factory:
    """The calling factory, by its token (401 when missing, rotated or revoked)."""
    return await _factory(store, _token(credentials))


async def current_principal(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """An API key or a factory token, whichever the caller presents."""
    token = _token(credentials)
    if token.startswith(f"{FACTORY_TOKEN}_"):
        return Principal(factory=await _factory(store, token))
    return Principal(key=await _api_key(store, token))


def require_role(role: Role) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency: the caller's key, if its role is at least `role` (else 403)."""

    async def dependency(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
        if ROLE_RANK[key.role] < ROLE_RANK[role]:
            raise ApiError(
                403,
                "forbidden",
                f"this needs the {role.value} role; API key {key.id} is a {key.role.value}",
            )
        return key

    return dependency


CallerDep = Annotated[ApiKey, Depends(current_key)]
OperatorDep = Annotated[ApiKey, Depends(require_role(Role.OPERATOR))]
AdminDep = Annotated[ApiKey, Depends(require_role(Role.ADMIN))]
FactoryDep = Annotated[Factory, Depends(current_factory)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]


def job_not_found(job_id: str) -> ApiError:
    """The one answer for a job that does not exist or that the caller may not see."""
    return ApiError(404, "not_found", f"job {job_id} not found")


async def job_for(store: FleetStore, job_id: str, product_id: str | None = None) -> Job:
    """A job by id (in `product_id` when known); 404 when there is none."""
    try:
        return await store.get_job(job_id, product_id)
    except NotFound:
        raise job_not_found(job_id) from None


async def visible_job(store: FleetStore, key: ApiKey, job_id: str) -> Job:
    """A job the key may see; a job of another product is 404, as if it did not exist."""
    job = await job_for(store, job_id)
    if not key.may_see(job.product_id):
        raise job_not_found(job_id)
    return job
