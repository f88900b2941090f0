"""API keys (admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CallerDep, ServicesDep
from api.schemas import ApiKeyCreated, ApiKeyList, ApiKeyOut, CreateApiKey

__all__ = ["router"]

router = APIRouter(prefix="/fleet/keys", tags=["keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(body: CreateApiKey, key: CallerDep, services: ServicesDep) -> ApiKeyCreated:
    """A new API key for `products` (only products this admin may see itself)."""
    stored, token = await services.keys.create(
        key, name=body.name, role=body.role, products=body.products
    )
    return ApiKeyCreated(**ApiKeyOut.of(stored).model_dump(), key=token)


@router.get("", response_model=ApiKeyList)
async def list_keys(key: CallerDep, services: ServicesDep) -> ApiKeyList:
    """Every API key, without secrets."""
    return ApiKeyList(items=[ApiKeyOut.of(k) for k in await services.keys.list_keys(key)])


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: str, key: CallerDep, services: ServicesDep) -> Response:
    """Revoke a key: every request with it is refused from now on (401)."""
    await services.keys.revoke(key, key_id)
    return Response(status_code=204)
