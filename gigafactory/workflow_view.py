"""How a job's workflow looks in the Temporal UI: id, summary, details, search attributes,
task-queue priority. Pure, so the API (submit) and a parent's workflow (its children) share it.
"""

from __future__ import annotations

import uuid

from temporalio.common import Priority as TemporalPriority
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from gigafactory.models import JobSpec, Priority, Stage
from gigafactory.search_attributes import (
    FLEET_ENGINE,
    FLEET_PRIORITY,
    FLEET_PRODUCT_ID,
    FLEET_STAGE,
)

__all__ = [
    "TEMPORAL_PRIORITY_KEY",
    "initial_search_attributes",
    "new_job_id",
    "temporal_priority",
    "workflow_details",
    "workflow_summary",
]


# Temporal's task-queue priority: a lower key is served first (1 is the highest).
TEMPORAL_PRIORITY_KEY: dict[Priority, int] = {
    Priority.CRITICAL: 1,
    Priority.HIGH: 2,
    Priority.NORMAL: 3,
    Priority.LOW: 4,
}

_SUMMARY_MAX = 200
_PROMPT_EXCERPT = 600


def new_job_id() -> str:
    """A fresh job id (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def workflow_summary(job_id: str, spec: JobSpec) -> str:
    """The one-line summary the Temporal UI shows for a job's workflow."""
    what = spec.title or _first_line(spec.prompt)
    return f"{spec.priority.value} {spec.engine} job {job_id} for {spec.product_id}: {what}"[
        :_SUMMARY_MAX
    ]


def _cell(value: object) -> str:
    # Pipes and newlines would break the Markdown table.
    return str(value).replace("|", "\\|").replace("\n", " ")


def workflow_details(job_id: str, spec: JobSpec) -> str:
    """The Markdown details the Temporal UI shows for a job's workflow."""
    rows: list[tuple[str, object]] = [
        ("job", job_id),
        ("product", spec.product_id),
        ("engine", spec.engine),
        ("priority", spec.priority.value),
        ("cwd", spec.cwd),
        ("yolo", spec.yolo),
        ("lock", spec.lock or "-"),
        ("timeout", f"{spec.timeout_s:g}s"),
        ("capabilities", ", ".join(spec.capabilities) or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(spec.labels.items())) or "-"),
        (
            "estimated cost",
            "-" if spec.estimated_cost_usd is None else f"${spec.estimated_cost_usd:.2f}",
        ),
    ]
    if spec.title:
        rows.insert(1, ("title", spec.title))
    table = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    prompt = spec.prompt
    if len(prompt) > _PROMPT_EXCERPT:
        prompt = prompt[:_PROMPT_EXCERPT] + "\n..."
    return f"| field | value |\n|---|---|\n{table}\n\n**Prompt**\n\n```\n{prompt}\n```\n"


def initial_search_attributes(spec: JobSpec) -> TypedSearchAttributes:
    """What a job's workflow starts with; the workflow keeps stage and factory current."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(FLEET_PRODUCT_ID, spec.product_id),
            SearchAttributePair(FLEET_STAGE, Stage.QUEUED.value),
            SearchAttributePair(FLEET_PRIORITY, spec.priority.value),
            SearchAttributePair(FLEET_ENGINE, spec.engine),
        ]
    )


def temporal_priority(spec: JobSpec) -> TemporalPriority:
    """The task-queue priority of the job's workflow and activities."""
    return TemporalPriority(priority_key=TEMPORAL_PRIORITY_KEY[spec.priority])
