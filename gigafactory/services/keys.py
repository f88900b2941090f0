"""API keys (admins): create (the key is shown once), list, revoke."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gigafactory.models import ApiKey, Role
from gigafactory.security import API_KEY, hash_token, mint
from gigafactory.services.access import require_role
from gigafactory.services.audit import AuditLog
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
    audit: AuditLog

    async def create(
        self, admin: ApiKey, *, name: str, role: Role, products: Sequence[str]
    ) -> tuple[ApiKey, str]:
        """A new key for `products` (only products this admin may see itself).

        Returns:
            The stored key and its secret (shown once).
        """
        data = {"name": name, "role": role.value, "products": list(products)}
        async with self.audit.action(admin, "key.create", "key:new", data=data) as entry:
            require_role(admin, Role.ADMIN, "creating API keys")
            for product in products:
                if product == "*" and "*" not in admin.products:
                    raise Forbidden(
                        'only an admin of every product may grant "*"', field="products"
                    )
                if product != "*" and not admin.may_see(product):
                    raise NotFoundError(f"product {product} not found", field="products")
            key_id, token = mint(API_KEY)
            entry.target = f"key:{key_id}"
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
        """The API keys this admin may manage: those whose products it may all see (hashes
        included: adapters must not show them)."""
        require_role(admin, Role.ADMIN, "listing API keys")
        return [k for k in await self.store.list_api_keys() if _may_manage(admin, k)]

    async def revoke(self, admin: ApiKey, key_id: str) -> None:
        """Revoke a key: every request with it is refused from now on."""
        async with self.audit.action(admin, "key.revoke", f"key:{key_id}"):
            require_role(admin, Role.ADMIN, "revoking API keys")
            now = self.clock()

            def revoke(key: ApiKey) -> ApiKey | None:
                if not _may_manage(admin, key):
                    raise NotFound(key_id)
                if key.revoked_at is not None:
                    return None
                key.revoked_at = now
                return key

            try:
                await self.store.update_api_key(key_id, revoke)
            except NotFound:
                raise NotFoundError(f"API key {key_id} not found") from None
        logger.info("API key %s revoked by %s", key_id, admin.id)


def _may_manage(admin: ApiKey, key: ApiKey) -> bool:
    """Whether `admin` may see (and revoke) `key`: it sees every product of the key, so an
    admin of some products never learns of, or touches, the keys of others."""
    if "*" in admin.products:
        return True
    return all(p != "*" and admin.may_see(p) for p in key.products)
