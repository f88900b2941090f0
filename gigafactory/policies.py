"""Retry policies and timeouts shared by every activity call (one place to tune them)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

__all__ = [
    "AGENT_RETRY",
    "CONTROL_RETRY",
    "CONTROL_SCHEDULE_TO_CLOSE",
    "CONTROL_START_TO_CLOSE",
    "WORKSPACE_RETRY",
    "agent_start_to_close",
]

# Store writes and Temporal calls from the control plane: transient failures (a locked
# SQLite file, a 429 from Cosmos, a restarting server) are retried for up to ten minutes.
CONTROL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
CONTROL_START_TO_CLOSE = timedelta(seconds=30)
CONTROL_SCHEDULE_TO_CLOSE = timedelta(minutes=10)

# run_agent is never retried by Temporal: a retry must be re-routed (maybe to another
# factory) under a new lease epoch, which only the workflow can decide.
AGENT_RETRY = RetryPolicy(maximum_attempts=1)


# A factory's workspace operations (ship, remove): git's own transient failures (a network
# blip on fetch or push) are retried a few times; a refusal (`ShipRefused`) never is.
WORKSPACE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["ShipRefused"],
)


def agent_start_to_close(timeout_s: float, grace_s: float) -> timedelta:
    """The job's own timeout plus time to stop the agent and upload its log."""
    return timedelta(seconds=timeout_s + grace_s + 60)
