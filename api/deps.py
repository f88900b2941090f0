"""Dependencies of the routes: the process's services and the caller.

Every request carries `Authorization: Bearer <token>` except `/healthz`, `/docs`,
`/openapi.json` and `POST /fleet/factories/enroll` (which presents an enrollment token in
its body). API keys (`gfk_...`) have a role; each role includes the ones before it. A key
sees only its products: anything of another product answers 404, exactly as if it did
not exist (Invariant 7), while a role that is too low answers 403. The rules themselves
live in the services (`gigafactory.services.access`), which every adapter shares:

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
| routing weights and policy: read / change     | own / -   | own      | own   | -        |
| budgets: read, set, pause, resume             | -         | own      | own   | -        |
| create, list, revoke API keys                 | -         | -        | own*  | -        |
| read the audit log                            | -         | -        | own** | -        |
| scrape /metrics (products: own)               | -         | all      | all   | -        |

"own" means jobs of the products listed on the key (`["*"]` is every product).
Factories serve every product, so fleet-wide operations ("all") are not product-scoped.
(*) An admin grants, lists and revokes only keys whose products it may all see.
(**) Fleet-wide records (factories, keys) only for an admin of every product.
A factory reports for a job only while the job's lease is assigned to it; a report from an
older lease epoch is fenced (409 `fenced`) and recorded. A role too low is 403 whatever the
target; a target outside the key's products is 404. `tests/api/test_auth_matrix.py` holds
the full table (every route, every kind of caller) and checks it; docs/security.md explains it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gigafactory.models import ApiKey, Factory, Role
from gigafactory.services import Principal, Services
from gigafactory.services.access import require_role
from gigafactory.settings import Settings

__all__ = [
    "AdminDep",
    "CallerDep",
    "FactoryDep",
    "OperatorDep",
    "PrincipalDep",
    "ServicesDep",
    "SettingsDep",
]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (gfk_...) or, for factory reports, a factory token (gff_...).",
)


def _services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


ServicesDep = Annotated[Services, Depends(_services)]
SettingsDep = Annotated[Settings, Depends(_settings)]
_Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


async def current_key(services: ServicesDep, credentials: _Credentials) -> ApiKey:
    """The caller's API key (401 when missing, unknown or revoked)."""
    return await services.auth.api_key(_token(credentials))


async def current_factory(services: ServicesDep, credentials: _Credentials) -> Factory:
    """The calling factory, by its token (401 when missing, rotated or revoked)."""
    return await services.auth.factory(_token(credentials))


async def current_principal(services: ServicesDep, credentials: _Credentials) -> Principal:
    """An API key or a factory token, whichever the caller presents."""
    return await services.auth.principal(_token(credentials))


def require(role: Role) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency: the caller's key, if its role is at least `role` (else 403)."""

    async def dependency(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
        require_role(key, role)
        return key

    return dependency


CallerDep = Annotated[ApiKey, Depends(current_key)]
OperatorDep = Annotated[ApiKey, Depends(require(Role.OPERATOR))]
AdminDep = Annotated[ApiKey, Depends(require(Role.ADMIN))]
FactoryDep = Annotated[Factory, Depends(current_factory)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
