"""API keys (admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from api.deps import AdminDep, ClockDep, StoreDep
from api.errors import ApiError
from api.schemas import ApiKeyCreated, ApiKeyList, ApiKeyOut, CreateApiKey
from gigafactory.models import ApiKey
from gigafactory.security import API_KEY, hash_token, mint
from gigafactory.store.backend import NotFound

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/fleet/keys", tags=["keys"])


def key_out(key: ApiKey) -> ApiKeyOut:
    """The API view of a key (never its hash)."""
    return ApiKeyOut.model_validate(key.model_dump(exclude={"key_hash", "product_id"}))


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(
    body: CreateApiKey, admin: AdminDep, store: StoreDep, clock: ClockDep
) -> ApiKeyCreated:
    """A new API key for `products` (only products this admin may see itself)."""
    for product in body.products:
        if product == "*" and "*" not in admin.products:
            raise ApiError(
                403, "forbidden", 'only an admin of every product may grant "*"', field="products"
            )
        if product != "*" and not admin.may_see(product):
            raise ApiError(404, "not_found", f"product {product} not found", field="products")
    key_id, token = mint(API_KEY)
    stored = await store.create_api_key(
        ApiKey(
            id=key_id,
            name=body.name,
            role=body.role,
            products=body.products,
            key_hash=hash_token(token),
            created_at=clock(),
        )
    )
    logger.info("API key %s (%s) created by %s", key_id, body.role.value, admin.id)
    return ApiKeyCreated(**key_out(stored).model_dump(), key=token)


@router.get("", response_model=ApiKeyList)
async def list_keys(admin: AdminDep, store: StoreDep) -> ApiKeyList:
    """Every API key, without secrets."""
    return ApiKeyList(items=[key_out(k) for k in await store.list_api_keys()])


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: str, admin: AdminDep, store: StoreDep, clock: ClockDep) -> Response:
    """Revoke a key: every request with it is refused from now on (401)."""
    now = clock()

    def revoke(key: ApiKey) -> ApiKey | None:
        if key.revoked_at is not None:
            return None
        key.revoked_at = now
        return key

    try:
        await store.update_api_key(key_id, revoke)
    except NotFound:
        raise ApiError(404, "not_found", f"API key {key_id} not found") from None
    logger.info("API key %s revoked by %s", key_id, admin.id)
    return Response(status_code=204)
