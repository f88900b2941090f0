"""API keys (admins): create (the key is shown once), list, revoke."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gigafactory.models import ApiKey, Role
from gigafactory.security import API_KEY, hash_token, mint
from gigafactory.services.access import require_role
from gigafactory.services.clock import Clock
from gigafactory.services.errors import Forbidden, NotFoundError
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = ["KeyService"]

logger = logging.getLogger(__name__)


@dataclass
class KeyService:
    """API keys, over the store; secrets are only ever stored hashed."""

    store: FleetStore
    clock: Clock

    async def create(
        self, admin: ApiKey, *, name: str, role: Role, products: Sequence[str]
    ) -> tuple[ApiKey, str]:
        """A new key for `products` (only products this admin may see itself).

        Returns:
            The stored key and its secret (shown once).
        """
        require_role(admin, Role.ADMIN, "creating API keys")
        for product in products:
            if product == "*" and "*" not in admin.products:
                raise Forbidden('only an admin of every product may grant "*"', field="products")
            if product != "*" and not admin.may_see(product):
                raise NotFoundError(f"product {product} not found", field="products")
        key_id, token = mint(API_KEY)
        stored = await self.store.create_api_key(
            ApiKey(
                id=key_id,
                name=name,
                role=role,
                products=list(products),
                key_hash=hash_token(token),
                created_at=self.clock(),
            )
        )
        logger.info("API key %s (%s) created by %s", key_id, role.value, admin.id)
        return stored, token

    async def list_keys(self, admin: ApiKey) -> list[ApiKey]:
        """Every API key (hashes included: adapters must not show them)."""
        require_role(admin, Role.ADMIN, "listing API keys")
        return await self.store.list_api_keys()

    async def revoke(self, admin: ApiKey, key_id: str) -> None:
        """Revoke a key: every request with it is refused from now on."""
        require_role(admin, Role.ADMIN, "revoking API keys")
        now = self.clock()

        def revoke(key: ApiKey) -> ApiKey | None:
            if key.revoked_at is not None:
                return None
            key.revoked_at = now
            return key

        try:
            await self.store.update_api_key(key_id, revoke)
        except NotFound:
            raise NotFoundError(f"API key {key_id} not found") from None
        logger.info("API key %s revoked by %s", key_id, admin.id)
