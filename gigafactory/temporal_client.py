"""One way to connect to Temporal: Temporal's own env config, then our settings on top.

`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS and profiles work as in
every Temporal tool (via `temporalio.envconfig`), so the same code reaches the local dev
server, a self-hosted cluster or Temporal Cloud. `FLEET_TEMPORAL_ADDRESS` /
`FLEET_NAMESPACE` win when set. Every client uses the pydantic data converter.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile

from gigafactory.observability.runtime import temporal_runtime
from gigafactory.observability.tracing import tracing_interceptors
from gigafactory.settings import Settings

__all__ = ["connect_config", "connect_temporal"]

DEFAULT_TARGET = "localhost:7233"


def connect_config(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `Client.connect` for these settings."""
    config: dict[str, Any] = dict(ClientConfigProfile.load().to_client_connect_config())
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    if settings.namespace:
        config["namespace"] = settings.namespace
    config.setdefault("target_host", DEFAULT_TARGET)
    return config


async def connect_temporal(settings: Settings, **extra: Any) -> Client:
    """Connect a client with the pydantic data converter; with the SDK's metrics runtime and
    the tracing interceptor when the settings turn them on (workers built from this client
    inherit the interceptor)."""
    options: dict[str, Any] = {"data_converter": pydantic_data_converter}
    runtime = temporal_runtime(settings)
    if runtime is not None:
        options["runtime"] = runtime
    interceptors = tracing_interceptors(settings)
    if interceptors:
        options["interceptors"] = interceptors
    return await Client.connect(**connect_config(settings), **{**options, **extra})
