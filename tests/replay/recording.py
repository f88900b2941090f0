"""Recording workflow histories for the replay tests (tests/replay/test_replay.py).

The end-to-end tests call `record_history` on the workflows of the scenarios they run; it
does nothing unless GIGAFACTORY_RECORD_HISTORIES=1, and then writes the workflow's history
to `tests/replay/histories/<name>.json` (docs/replay-and-hygiene.md: re-recording).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus

__all__ = ["HISTORY_DIR", "RECORD_ENV", "record_history"]

RECORD_ENV = "GIGAFACTORY_RECORD_HISTORIES"
HISTORY_DIR = Path(__file__).parent / "histories"


async def record_history(
    client: Client,
    name: str,
    workflow_id: str,
    *,
    run_id: str | None = None,
    closed: bool = True,
    timeout_s: float = 30.0,
) -> None:
    """Write the history of `workflow_id` (that run, else its latest) as `<name>.json`.

    Args:
        closed: Wait until the run has closed first (a job's workflow still releases its
            lock and reports to its controller after the job reads finished); long-lived
            workflows (a lock, a product controller) are recorded as they are.
    """
    if os.environ.get(RECORD_ENV) != "1":
        return
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while closed and (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{workflow_id} still runs after {timeout_s}s: not recorded")
        await asyncio.sleep(0.2)
    history = await handle.fetch_history()
    record: dict[str, Any] = {
        "workflowId": workflow_id,
        "recordedBy": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "history": history.to_json_dict(),
    }
    HISTORY_DIR.mkdir(parents=True, exist_ok=True)
    (HISTORY_DIR / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
