"""Web sessions: sign in with an API key, resolve on every request, expire, CSRF."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gigafactory.models import Role
from gigafactory.security import hash_token
from gigafactory.services import Services
from gigafactory.services.errors import Forbidden, Unauthorized
from tests.services.conftest import Clock


async def _new_key(services: Services, role: Role = Role.OPERATOR) -> str:
    created = await services.keys.create(
        await services.auth.api_key(await _admin(services)), name="ui", role=role, products=["acme"]
    )
    return created[1]


async def _admin(services: Services) -> str:
    secret = "gfk-test-admin-secret"
    await services.auth.ensure_bootstrap_key(secret, services.clock())
    return secret


async def test_a_session_stands_for_its_key_and_only_its_hash_is_stored(
    services: Services,
) -> None:
    token = await _new_key(services)
    signed = await services.sessions.sign_in(token)
    assert signed.secret.startswith("gfs_") and token not in signed.secret
    stored = await services.store.get_session(hash_token(signed.secret))
    assert stored.key_id == signed.key.id
    assert signed.secret not in stored.wire().values()
    session = await services.sessions.resolve(signed.secret)
    assert session.key.id == signed.key.id and session.key.role is Role.OPERATOR
    # Two sign-ins are two sessions with their own CSRF tokens.
    other = await services.sessions.sign_in(token)
    assert (await services.sessions.resolve(other.secret)).csrf_token != session.csrf_token


async def test_bad_keys_unknown_sessions_and_sign_out_are_refused(services: Services) -> None:
    with pytest.raises(Unauthorized) as err:
        await services.sessions.sign_in("gfk_000000000000_nope-nope-nope-nope")
    assert err.value.field == "apiKey"
    with pytest.raises(Unauthorized):
        await services.sessions.sign_in("   ")
    for secret in (None, "", "gfs_unknown", "gfk_000000000000_whatever-whatever"):
        with pytest.raises(Unauthorized):
            await services.sessions.resolve(secret)
    signed = await services.sessions.sign_in(await _new_key(services))
    await services.sessions.sign_out(signed.secret)
    await services.sessions.sign_out(signed.secret)  # twice is harmless
    with pytest.raises(Unauthorized):
        await services.sessions.resolve(signed.secret)


async def test_sessions_expire_and_a_revoked_key_ends_them_at_once(
    services: Services, clock: Clock
) -> None:
    token = await _new_key(services)
    signed = await services.sessions.sign_in(token)
    clock.now += timedelta(seconds=services.settings.ui_session_ttl_s - 1)
    await services.sessions.resolve(signed.secret)
    clock.now += timedelta(seconds=1)
    with pytest.raises(Unauthorized):
        await services.sessions.resolve(signed.secret)
    # The expired session was removed; a new sign-in forgets the key's other expired ones.
    stale = await services.sessions.sign_in(token)
    clock.now += timedelta(seconds=services.settings.ui_session_ttl_s)
    fresh = await services.sessions.sign_in(token)
    assert [s.id for s in await services.store.list_sessions(fresh.key.id)] == [
        hash_token(fresh.secret)
    ]
    del stale
    admin = await services.auth.api_key(await _admin(services))
    await services.keys.revoke(admin, fresh.key.id)
    with pytest.raises(Unauthorized):
        await services.sessions.resolve(fresh.secret)


async def test_csrf_token_is_checked_in_constant_time_against_the_session(
    services: Services,
) -> None:
    signed = await services.sessions.sign_in(await _new_key(services))
    session = await services.sessions.resolve(signed.secret)
    services.sessions.check_csrf(signed.secret, session.csrf_token)
    for forged in (None, "", "0" * 64, session.csrf_token[:-1]):
        with pytest.raises(Forbidden) as err:
            services.sessions.check_csrf(signed.secret, forged)
        assert err.value.code == "csrf"
