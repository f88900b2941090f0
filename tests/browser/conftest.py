"""A real browser (Debian's chromium, driven by Playwright for Python) on the real dev stack.

One `DevStack` per module (its own Temporal dev server with its UI, the control worker, the
API serving /ui, two local `sim` factories; budgets enforced), shared by the module's
scenarios. Playwright's own browser download is not used: `chromium` comes from Debian
(`make test` installs it). A missing browser fails these tests with the reason; it never
skips them.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bench.ui import CHROMIUM_ARGS
from gigafactory.settings import Settings
from launch.devserver import free_port
from launch.stack import DevStack, LocalFactory

__all__ = ["CHROMIUM_ARGS", "SCREENSHOTS", "chromium_path"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "docs" / "ui"
FACTORIES = (
    LocalFactory(id="factory-a", engines=("sim",), labels=("linux",), slots=2),
    LocalFactory(id="factory-b", engines=("sim", "shell"), labels=("linux", "gpu"), slots=2),
)


def chromium_path() -> str:
    """Debian's chromium, or the test fails saying how to install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is not installed: the web UI tests drive Debian's chromium "
            "(`apt-get update && apt-get install -y chromium`, which `make test` runs)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevStack]:
    """The dev stack, with budgets on and short timers; stopped after the module."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("ui-stack"),
        api_port=free_port(),
        temporal_port=free_port(),
        ui_port=free_port(),
        budgets=True,
        factory_heartbeat_interval_s=0.5,
        factory_unhealthy_after_s=5,
        log_chunk_interval_s=0.3,
        ui_poll_interval_s=1,
    )
    stack = DevStack(settings, factories=FACTORIES, fallback_ports=True)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@pytest.fixture(scope="module")
async def api(stack: DevStack) -> AsyncIterator[httpx.AsyncClient]:
    """The stack's API with the admin key (to set up what a scenario starts from)."""
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        yield http
