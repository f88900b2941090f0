"""`gigafactory demo`, the README's main command, exactly as a user runs it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from launch.devserver import free_port
from tests.e2e.harness import REPO_ROOT

pytestmark = pytest.mark.temporal


async def test_demo_runs_every_job_as_expected_and_exits_zero(tmp_path: Path) -> None:
    ports = [str(free_port()) for _ in range(3)]
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "launch.cli.main",
            "demo",
            "--data-dir",
            str(tmp_path),
            "--api-port",
            ports[0],
            "--temporal-port",
            ports[1],
            "--ui-port",
            ports[2],
        ],  # fmt: skip
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "every job ended as expected" in out
    for name in ("hello", "sim-1", "sim-2", "lock-1", "lock-2", "failing", "devin"):
        assert f"\n{name} " in out, name
    assert "no factory offers engine devin" in out
    assert f"http://127.0.0.1:{ports[0]}/docs" in out
    assert f"http://127.0.0.1:{ports[2]}" in out
    assert "WRONG" not in out
    # The demo cleans up after itself unless asked to keep running.
    assert list((tmp_path / "demo").iterdir()) == []
