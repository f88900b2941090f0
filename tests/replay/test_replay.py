"""Every checked-in workflow history replays against today's workflow code.

A change that makes a workflow take a different path through a recorded history (a new
activity, a timer moved, commands reordered) fails here instead of in production, where it
would break every workflow that was running when the new code was deployed. The replayer
runs the control worker's real workflows, sandbox and data converter. After an intended
change, re-record (docs/replay-and-hygiene.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from gigafactory.contracts import (
    JOB_WORKFLOW,
    LOCK_WORKFLOW,
    PRODUCT_CONTROLLER_WORKFLOW,
    SHIP_WORKFLOW,
)
from launch.workers import workflow_runner
from tests.replay.recording import HISTORY_DIR
from workflows.registry import WORKFLOWS

# The scenarios that must have a history, and the workflow type each one records.
REQUIRED: dict[str, str] = {
    "leaf-succeeded": JOB_WORKFLOW,
    "leaf-failed": JOB_WORKFLOW,
    "leaf-lease-lost": JOB_WORKFLOW,
    "leaf-lock-waiter": JOB_WORKFLOW,
    "leaf-budget-waited": JOB_WORKFLOW,
    "leaf-admitted-before-lock": JOB_WORKFLOW,
    # Recorded before the admit-before-lock patch (lock, then admission): kept as is, not
    # re-recorded, so workflows started before the patch are proven to replay.
    "leaf-locked-then-admitted": JOB_WORKFLOW,
    "leaf-preempted": JOB_WORKFLOW,
    "leaf-cancelled-running": JOB_WORKFLOW,
    "leaf-cancelled-waiting-lock": JOB_WORKFLOW,
    "dag-parent": JOB_WORKFLOW,
    "lock": LOCK_WORKFLOW,
    "product-budget-waiting": PRODUCT_CONTROLLER_WORKFLOW,
    "product-continue-as-new": PRODUCT_CONTROLLER_WORKFLOW,
    "ship": SHIP_WORKFLOW,
}


def load(path: Path) -> WorkflowHistory:
    record = json.loads(path.read_text())
    return WorkflowHistory.from_json(record["workflowId"], record["history"])


def workflow_type(history: WorkflowHistory) -> str:
    started = history.events[0].workflow_execution_started_event_attributes
    return str(started.workflow_type.name)


def recorded() -> list[Path]:
    return sorted(HISTORY_DIR.glob("*.json"))


def test_every_scenario_and_workflow_type_has_a_history() -> None:
    paths = {path.stem: path for path in recorded()}
    assert paths, f"no histories in {HISTORY_DIR}"
    missing = sorted(set(REQUIRED) - set(paths))
    assert not missing, f"no history recorded for {missing}"
    types = {name: workflow_type(load(path)) for name, path in paths.items()}
    assert {name: types[name] for name in REQUIRED} == REQUIRED
    # Every type the control worker registers (the SDK's definition carries its name).
    registered = {getattr(w, "__temporal_workflow_definition").name for w in WORKFLOWS}
    assert registered - set(types.values()) == set(), "a workflow type has no history"


@pytest.mark.parametrize("path", recorded(), ids=lambda path: path.stem)
async def test_history_replays_without_non_determinism(path: Path) -> None:
    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(load(path))
