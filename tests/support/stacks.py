"""Dev stacks of real processes for end-to-end tests, on the session's Temporal dev server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gigafactory.settings import Settings
from launch.devserver import TemporalDevServer, free_port

__all__ = ["process_stack_settings"]


def process_stack_settings(
    server: TemporalDevServer, data_dir: Path, name: str, **overrides: Any
) -> Settings:
    """Settings of a stack of its own on `server`: its control queue, a free API port,
    budgets on and quick factory heartbeats; `overrides` on top."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "temporal_address": server.address,
        "control_task_queue": f"fleet-control-{name}-{free_port()}",
        "api_port": free_port(),
        "budgets": True,
        "factory_heartbeat_interval_s": 0.5,
    }
    return Settings(**{**base, **overrides})
