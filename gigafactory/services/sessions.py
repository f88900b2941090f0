"""Web sessions: signing in to the control plane with an API key, kept server-side.

Signing in checks the API key once and hands back a random session secret (the cookie's
value); only its SHA-256 is stored, beside the id of the key it stands for, so a copy of the
store signs nobody in. Every request resolves the secret to its key again, so a revoked key
or an expired session is refused at once, on every API process sharing the store.

The CSRF token of a session is derived from its secret (HMAC), so it needs no storage and
changes with every sign-in; a page carries it, a forged request from another site cannot.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from gigafactory.models import ApiKey, UiSession
from gigafactory.security import hash_token
from gigafactory.services.auth import Authenticator
from gigafactory.services.clock import Clock
from gigafactory.services.errors import Forbidden, Unauthorized
from gigafactory.settings import Settings
from gigafactory.store.backend import NotFound
from gigafactory.store.fleet_store import FleetStore

__all__ = ["SESSION_PREFIX", "SessionService", "SignedIn", "WebSession"]

logger = logging.getLogger(__name__)

SESSION_PREFIX = "gfs_"
_SIGNED_OUT = "not signed in, or the sign-in expired: sign in again"


@dataclass(frozen=True)
class SignedIn:
    """A new session: the secret for the cookie (shown once) and what it stands for."""

    secret: str
    key: ApiKey
    expires_at: datetime


@dataclass(frozen=True)
class WebSession:
    """A resolved session: its key (checked now) and the CSRF token its pages carry."""

    key: ApiKey
    csrf_token: str
    expires_at: datetime


def csrf_token_of(secret: str) -> str:
    """The CSRF token of the session with this secret."""
    return hmac.new(secret.encode(), b"gigafactory-csrf", hashlib.sha256).hexdigest()


@dataclass
class SessionService:
    """Sign in, resolve, check CSRF, sign out."""

    store: FleetStore
    auth: Authenticator
    settings: Settings
    clock: Clock

    async def sign_in(self, api_key: str) -> SignedIn:
        """Check `api_key` and open a session for it.

        Raises:
            Unauthorized: the key is missing, unknown or revoked (field `apiKey`).
        """
        try:
            key = await self.auth.api_key(api_key.strip() or None)
        except Unauthorized as err:
            raise Unauthorized(err.message, field="apiKey") from None
        now = self.clock()
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        expires_at = now + timedelta(seconds=self.settings.ui_session_ttl_s)
        await self.store.create_session(
            UiSession(id=hash_token(secret), key_id=key.id, created_at=now, expires_at=expires_at)
        )
        await self._forget_expired(key.id, now)
        logger.info("web sign-in with API key %s", key.id)
        return SignedIn(secret=secret, key=key, expires_at=expires_at)

    async def resolve(self, secret: str | None) -> WebSession:
        """The session a cookie names, with its key checked now.

        Raises:
            Unauthorized: no such session, it expired, or its key was revoked or deleted.
        """
        if not secret or not secret.startswith(SESSION_PREFIX):
            raise Unauthorized(_SIGNED_OUT)
        session_id = hash_token(secret)
        try:
            session = await self.store.get_session(session_id)
        except NotFound:
            raise Unauthorized(_SIGNED_OUT) from None
        if session.expires_at <= self.clock():
            await self.store.delete_session(session_id)
            raise Unauthorized(_SIGNED_OUT)
        try:
            key = await self.store.get_api_key(session.key_id)
        except NotFound:
            raise Unauthorized(_SIGNED_OUT) from None
        if key.revoked_at is not None:
            raise Unauthorized(f"API key {key.id} was revoked; sign in with another key")
        return WebSession(key=key, csrf_token=csrf_token_of(secret), expires_at=session.expires_at)

    def check_csrf(self, secret: str, presented: str | None) -> None:
        """Refuse a state-changing request that does not carry the session's CSRF token.

        Raises:
            Forbidden: code `csrf`.
        """
        if not presented or not hmac.compare_digest(presented, csrf_token_of(secret)):
            raise Forbidden(
                "the form is stale or did not come from this site (CSRF token missing or "
                "wrong): reload the page and try again",
                code="csrf",
            )

    async def sign_out(self, secret: str | None) -> None:
        """End the session (nothing happens when there is none)."""
        if secret and secret.startswith(SESSION_PREFIX):
            await self.store.delete_session(hash_token(secret))

    async def _forget_expired(self, key_id: str, now: datetime) -> None:
        for old in await self.store.list_sessions(key_id):
            if old.expires_at <= now:
                await self.store.delete_session(old.id)
