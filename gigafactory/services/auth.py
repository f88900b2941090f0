"""Authentication: a bearer token to the API key or factory it belongs to.

Tokens are `<kind>_<id>_<secret>` (gigafactory.security): the id names the stored record,
so a token costs one point read and one constant-time comparison of hashes. The bootstrap
admin key (`FLEET_ADMIN_KEY`) may have any shape and is stored under the id "bootstrap".
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime

from gigafactory.models import ApiKey, Factory, FactoryStatus, Role
from gigafactory.security import API_KEY, FACTORY_TOKEN, hash_token, parse_token, verify
from gigafactory.services.access import Principal
from gigafactory.services.errors import Unauthorized
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = ["BOOTSTRAP_KEY_ID", "Authenticator"]

logger = logging.getLogger(__name__)

# The id under which `settings.admin_key` is stored (it may have any shape).
BOOTSTRAP_KEY_ID = "bootstrap"

_BAD_KEY = "invalid API key: check the Authorization: Bearer header (gfk_...)"
_BAD_FACTORY_TOKEN = (
    "invalid factory token: it was never issued, was rotated or revoked; enroll the "
    "factory again with a new enrollment token"
)


@dataclass
class Authenticator:
    """Checks API keys and factory tokens against the store."""

    store: FleetStore

    async def principal(self, token: str | None) -> Principal:
        """An API key or a factory token, whichever the caller presents."""
        token = _present(token)
        if token.startswith(f"{FACTORY_TOKEN}_"):
            return Principal(factory=await self.factory(token))
        return Principal(key=await self.api_key(token))

    async def api_key(self, token: str | None) -> ApiKey:
        """The API key `token` belongs to. Raises Unauthorized (unknown, revoked...)."""
        token = _present(token)
        try:
            kind, key_id = parse_token(token)
        except ValueError:
            kind, key_id = API_KEY, BOOTSTRAP_KEY_ID  # the bootstrap key may have any shape
        if kind != API_KEY:
            raise Unauthorized(f"a {kind} token is not an API key: use a gfk_... key here")
        candidates = [key_id] if key_id == BOOTSTRAP_KEY_ID else [key_id, BOOTSTRAP_KEY_ID]
        for candidate in candidates:
            try:
                key = await self.store.get_api_key(candidate)
            except NotFound:
                continue
            if verify(token, key.key_hash):
                if key.revoked_at is not None:
                    raise Unauthorized(f"API key {key.id} was revoked; ask an admin for a new one")
                return key
        raise Unauthorized(_BAD_KEY)

    async def factory(self, token: str | None) -> Factory:
        """The factory `token` belongs to. Raises Unauthorized (rotated, revoked...)."""
        token = _present(token)
        try:
            kind, token_id = parse_token(token)
        except ValueError:
            raise Unauthorized(_BAD_FACTORY_TOKEN) from None
        if kind != FACTORY_TOKEN:
            raise Unauthorized(f"a {kind} token is not a factory token: use the gff_... token")
        try:
            factory = await self.store.find_factory_by_token_id(token_id)
        except NotFound:
            raise Unauthorized(_BAD_FACTORY_TOKEN) from None
        if factory.status == FactoryStatus.REVOKED or not verify(token, factory.token_hash):
            raise Unauthorized(_BAD_FACTORY_TOKEN)
        return factory

    async def ensure_bootstrap_key(self, admin_key: str, now: datetime) -> None:
        """Store `admin_key` as the admin key "bootstrap" (all products), hashed.

        A key already stored with the same hash is left alone, so an admin's revocation
        sticks; a different configured key replaces the hash and is active again.
        """
        key_hash = hash_token(admin_key)
        try:
            existing = await self.store.get_api_key(BOOTSTRAP_KEY_ID)
        except NotFound:
            await self.store.create_api_key(
                ApiKey(
                    id=BOOTSTRAP_KEY_ID,
                    name="bootstrap admin (FLEET_ADMIN_KEY)",
                    role=Role.ADMIN,
                    products=["*"],
                    key_hash=key_hash,
                    created_at=now,
                )
            )
            logger.info("stored the bootstrap admin key")
            return
        if hmac.compare_digest(existing.key_hash.encode(), key_hash.encode()):
            return

        def replace(key: ApiKey) -> ApiKey:
            key.key_hash = key_hash
            key.role = Role.ADMIN
            key.products = ["*"]
            key.revoked_at = None
            return key

        await self.store.update_api_key(BOOTSTRAP_KEY_ID, replace)
        logger.info("replaced the bootstrap admin key (FLEET_ADMIN_KEY changed)")


def _present(token: str | None) -> str:
    if not token:
        raise Unauthorized("missing credentials: send Authorization: Bearer <API key or token>")
    return token
