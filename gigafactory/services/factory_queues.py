"""Stopping and restarting Temporal's dispatch to a factory's task queue.

A revoked factory's fleet token is refused at once, but its worker holds Temporal
credentials of its own and keeps polling `factory-<id>`. Setting that queue's rate limit to
0 requests per second makes the Temporal server hand it no new activity task from that
moment, whatever the worker does; re-enrolling the factory removes the limit. Running
activities are not affected (see docs/security.md for what happens to them).

The call needs a Temporal server with task-queue configuration (`UpdateTaskQueueConfig`,
from late 2025 on, such as the 1.32 dev server) and the permission to call it. Where it is
refused the revocation still stands (the token is void, routing skips the factory); the
failure is logged and returned so the caller can record it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client
from temporalio.service import RPCError

from gigafactory.contracts import factory_task_queue

__all__ = ["FactoryQueues"]

logger = logging.getLogger(__name__)


@dataclass
class FactoryQueues:
    """Pauses and resumes the dispatch of factories' task queues."""

    temporal: Client

    async def pause(self, factory_id: str, reason: str) -> str | None:
        """Stop dispatching new tasks to the factory's queue.

        Returns:
            None when done, else why it could not be done.
        """
        return await self._set(factory_id, RateLimit(requests_per_second=0), reason)

    async def resume(self, factory_id: str, reason: str) -> str | None:
        """Dispatch to the factory's queue again (the server's default rate).

        Returns:
            None when done, else why it could not be done.
        """
        return await self._set(factory_id, None, reason)

    async def _set(self, factory_id: str, limit: RateLimit | None, reason: str) -> str | None:
        queue = factory_task_queue(factory_id)
        update = UpdateTaskQueueConfigRequest.RateLimitUpdate(reason=reason[:200])
        if limit is not None:
            update.rate_limit.CopyFrom(limit)
        request = UpdateTaskQueueConfigRequest(
            namespace=self.temporal.namespace,
            identity=self.temporal.identity,
            task_queue=queue,
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            update_queue_rate_limit=update,
        )
        try:
            await self.temporal.workflow_service.update_task_queue_config(request)
        except (RPCError, RuntimeError) as err:
            # RuntimeError: a lazily connected client that cannot reach the server.
            logger.warning("task queue %s: rate limit not changed: %s", queue, err)
            return f"{type(err).__name__}: {err}"
        what = "paused (0 tasks/s)" if limit is not None else "resumed"
        logger.info("task queue %s %s: %s", queue, what, reason)
        return None
