"""Hostile input from the API's own OpenAPI document (schemathesis), as each kind of caller.

For every operation, valid and invalid requests generated from the schema are sent to the
real app in-process (real SQLite store, the session's Temporal dev server) with the
credentials of a submitter, an operator, an admin and a factory. No response may be a
server error, answer with a status the schema does not declare, or break the schema it
declares. Examples are derandomized and bounded, so a run is deterministic and short.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from gigafactory.security import mint
from gigafactory.settings import Settings
from launch.devserver import TemporalDevServer

pytestmark = pytest.mark.temporal

# Examples per operation, role and variant: ~35 operations x 4 roles x ~2.5 variants x 3.
EXAMPLES = 3
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
ROLES = ("submitter", "operator", "admin", "factory")


class Fleet:
    """The app under test, its schema, and a credential for each role."""

    def __init__(self, tmp_path: Path, server: TemporalDevServer) -> None:
        _, self.admin_key = mint("gfk")
        self.product = f"p{uuid.uuid4().hex[:10]}"
        settings = Settings(
            data_dir=tmp_path,
            temporal_address=server.address,
            admin_key=self.admin_key,
            # A queue no worker polls: submitted jobs stay pending.
            control_task_queue=f"fleet-control-fuzz-{uuid.uuid4().hex[:8]}",
        )
        self.app = create_app(settings)
        self.schema = schemathesis.openapi.from_asgi("/openapi.json", self.app)
        self.tokens: dict[str, str] = {}
        self.known: dict[str, str] = {}

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        with asgi.get_client(self.app) as client:
            r = client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        assert r.status_code < 300, r.text
        return r.json()

    def make_credentials(self) -> None:
        for role in ("submitter", "operator"):
            body = {"name": role, "role": role, "products": [self.product]}
            self.tokens[role] = self.call("POST", "/fleet/keys", self.admin_key, json=body)["key"]
        # The admin of every product: whatever product a request names, it gets past scope.
        self.tokens["admin"] = self.admin_key
        self.tokens["factory"] = self.enroll("fuzz-1")
        # Real things for path parameters, so requests also reach what lies behind a lookup.
        body = {"productId": self.product, "engine": "shell", "prompt": "true"}
        job = self.call("POST", "/fleet/jobs", self.admin_key, json=body)
        artifact = self.call(
            "POST",
            f"/fleet/jobs/{job['id']}/artifacts?name=a.txt",
            self.admin_key,
            data=b"artifact",
        )
        target = {"name": "target", "role": "submitter", "products": [self.product]}
        self.known = {
            "job_id": job["id"],
            "artifact_id": artifact["id"],
            "factory_id": "fuzz-target",
            "product_id": self.product,
            "key_id": self.call("POST", "/fleet/keys", self.admin_key, json=target)["id"],
        }
        self.enroll("fuzz-target")

    def enroll(self, factory_id: str) -> str:
        token = self.call("POST", "/fleet/factories/enrollment-tokens", self.admin_key)["token"]
        with asgi.get_client(self.app) as client:
            body = {"enrollmentToken": token, "factoryId": factory_id, "engines": ["shell"]}
            r = client.post("/fleet/factories/enroll", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["factoryToken"])


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, temporal_server: TemporalDevServer
) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("fuzz"), temporal_server)
    fleet.make_credentials()
    try:
        yield fleet
    finally:
        asgi.shutdown_lifespans()


def _operations(fleet: Fleet) -> list[Any]:
    return [result.ok() for result in fleet.schema.get_all_operations()]


def fuzz(
    operation: Any,
    mode: GenerationMode,
    headers: dict[str, str],
    path_parameters: dict[str, str] | None = None,
) -> list[str]:
    """Send EXAMPLES generated requests of `operation`; the checks that failed."""
    failures: list[str] = []
    where = f"{operation.label} [{mode.value}{', known ids' if path_parameters else ''}]"
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as err:  # schemathesis' FailureGroup is one
            failures.append(f"{where} {type(err).__name__}: {err}")

    try:
        run()
    except Unsatisfiable:
        # Nothing of this operation can be made invalid (no parameters, no body).
        assert mode == GenerationMode.NEGATIVE, where
    return failures


def variants(fleet: Fleet, operation: Any) -> list[tuple[GenerationMode, dict[str, str] | None]]:
    """Valid and invalid requests; for an operation on a path with ids, also valid ones
    about the real job, artifact, factory, product and key."""
    names = {p.name for p in operation.path_parameters}
    found = {name: fleet.known[name] for name in names if name in fleet.known}
    runs: list[tuple[GenerationMode, dict[str, str] | None]] = [
        (GenerationMode.POSITIVE, None),
        (GenerationMode.NEGATIVE, None),
    ]
    if found:
        runs.append((GenerationMode.POSITIVE, found))
    return runs


@pytest.mark.parametrize("role", ROLES)
def test_no_server_error_and_no_schema_violation(fleet: Fleet, role: str) -> None:
    headers = {"Authorization": f"Bearer {fleet.tokens[role]}"}
    failures = [
        failure
        for operation in _operations(fleet)
        for mode, known in variants(fleet, operation)
        for failure in fuzz(operation, mode, headers, known)
    ]
    assert failures == [], "\n\n".join(failures[:20])


def test_the_fuzzed_operations_are_every_operation(fleet: Fleet) -> None:
    """The schema the fuzzers read covers the whole API (nothing hidden from them)."""
    labels = {op.label for op in _operations(fleet)}
    assert len(labels) >= 30
    assert "POST /fleet/jobs" in labels and "GET /fleet/audit" in labels
