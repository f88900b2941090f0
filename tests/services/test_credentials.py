"""Credentials: stored only as hashes, compared in constant time; enrollment tokens are
single-use (also when two enrollments race with one token) and expire."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import re
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from gigafactory.models import Role
from gigafactory.security import hash_token
from gigafactory.services import Services
from gigafactory.services.factories import Enrollment
from gigafactory.store import FleetStore, SQLiteBackend
from gigafactory.store.fleet_store import EnrollmentRefused
from tests.conftest import REPO_ROOT
from tests.services.conftest import Clock, key, make_services

pytestmark = pytest.mark.temporal


async def test_two_enrollments_racing_with_one_token_make_one_factory(
    services: Services, client: Client, tmp_path: Path, clock: Clock
) -> None:
    """Two API processes (two stores on one file) receive the same token at once."""
    second_store = FleetStore(SQLiteBackend(tmp_path / "fleet.sqlite3"))
    await second_store.open()
    try:
        other = make_services(second_store, client, tmp_path, clock)
        for round_ in range(8):
            token, _ = await services.factories.enrollment_token(key(Role.OPERATOR))
            # The same factory id or two ids: either way one enrollment wins.
            ids = (f"race-{round_}", f"race-{round_}" if round_ % 2 else f"rival-{round_}")
            results = await asyncio.gather(
                services.factories.enroll(Enrollment(token, ids[0], engines=["shell"])),
                other.factories.enroll(Enrollment(token, ids[1], engines=["shell"])),
                return_exceptions=True,
            )
            won = [r for r in results if isinstance(r, str)]
            lost = [r for r in results if isinstance(r, BaseException)]
            assert len(won) == 1 and len(lost) == 1, results
            assert isinstance(lost[0], EnrollmentRefused)
            assert "already used" in str(lost[0])
            enrolled = {f.id for f in await services.store.list_factories()}
            assert len(enrolled & set(ids)) == 1, enrolled
    finally:
        await second_store.close()


async def test_enrollment_tokens_expire(
    store: FleetStore, client: Client, tmp_path: Path, clock: Clock
) -> None:
    services = make_services(store, client, tmp_path, clock, enrollment_ttl_s=600)
    late, expires_at = await services.factories.enrollment_token(key(Role.OPERATOR))
    timely, _ = await services.factories.enrollment_token(key(Role.OPERATOR))
    assert expires_at == clock.now + timedelta(seconds=600)
    clock.now += timedelta(seconds=599)
    assert (await services.factories.enroll(Enrollment(timely, "in-time"))).startswith("gff_")
    clock.now += timedelta(seconds=1)
    with pytest.raises(EnrollmentRefused, match="expired"):
        await services.factories.enroll(Enrollment(late, "too-late"))
    assert [f.id for f in await store.list_factories()] == ["in-time"]


async def test_secrets_are_stored_only_as_their_hashes(services: Services, tmp_path: Path) -> None:
    admin = key(Role.ADMIN)
    _, api_key = await services.keys.create(admin, name="k", role=Role.SUBMITTER, products=["p"])
    enrollment, _ = await services.factories.enrollment_token(admin)
    factory_token = await services.factories.enroll(Enrollment(enrollment, "f1"))
    rotated = await services.factories.rotate(await services.auth.principal(factory_token), "f1")
    await services.auth.ensure_bootstrap_key("a-bootstrap-secret-of-any-shape", services.clock())
    secrets = [api_key, enrollment, factory_token, rotated, "a-bootstrap-secret-of-any-shape"]

    with closing(sqlite3.connect(tmp_path / "fleet.sqlite3")) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(
            str(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')
        )
    wal = tmp_path / "fleet.sqlite3-wal"
    raw = (tmp_path / "fleet.sqlite3").read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for secret in secrets:
        # Neither the whole token nor its secret part is anywhere: only the SHA-256.
        part = secret.rsplit("_", 1)[-1]
        assert part not in dump and part.encode() not in raw
    stored = {k.id: k.key_hash for k in await services.store.list_api_keys()}
    assert stored[api_key.split("_")[1]] == hashlib.sha256(api_key.encode()).hexdigest()
    [factory] = await services.store.list_factories()
    assert factory.token_hash == hash_token(rotated)


# Identifiers that hold a credential or its hash: comparing one with == or != leaks, through
# the comparison's timing, how much of it an attacker guessed right.
_SECRET_NAME = re.compile(r"hash|secret|^token$|admin_key", re.IGNORECASE)
_CREDENTIAL_CODE = ("gigafactory", "api", "launch")


def _identifiers(node: ast.AST) -> list[str]:
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.append(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.append(sub.attr)
    return found


def test_credentials_are_never_compared_with_equality() -> None:
    offenders = []
    for folder in _CREDENTIAL_CODE:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Compare):
                    continue
                if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                    continue
                operands = [node.left, *node.comparators]
                if any(_SECRET_NAME.search(n) for o in operands for n in _identifiers(o)):
                    where = path.relative_to(REPO_ROOT)
                    offenders.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == [], "compare credentials with hmac.compare_digest:\n" + "\n".join(offenders)


def test_the_checks_use_a_constant_time_comparison() -> None:
    """Where tokens are checked, the comparison is `hmac.compare_digest`."""
    for module in ("gigafactory/security.py", "gigafactory/store/fleet_store.py"):
        source = (REPO_ROOT / module).read_text()
        assert "hmac.compare_digest(" in source, module
