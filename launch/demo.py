"""`gigafactory demo`: the dev stack, a handful of jobs on two factories, a summary.

Each demo job says how it must end; the demo exits 0 only if every one did. The jobs go
through the public API as job-spec Markdown, exactly as a submitter's would.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import typer

from gigafactory.settings import Settings
from launch.cli.client import write_stack_file
from launch.cli.render import ago, table
from launch.stack import DevStack, LocalFactory

__all__ = ["DEMO_JOBS", "DemoJob", "run_demo"]

logger = logging.getLogger(__name__)

Check = Callable[[dict[str, Any], list[dict[str, Any]]], str | None]


@dataclass(frozen=True)
class DemoJob:
    """A demo job: its spec, the stage it must end in and an extra check (None = fine)."""

    name: str
    spec: str
    expect: str
    what: str
    check: Check | None = None
    cancel_when_waiting: bool = False


def _spec(columns: dict[str, str], prompt: str) -> str:
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)
    values = "| " + " | ".join(columns.values()) + " |"
    return f"{header}\n{rule}\n{values}\n\n{prompt}\n"


def _exit_code_named(job: dict[str, Any], _: list[dict[str, Any]]) -> str | None:
    reason = job.get("stageReason") or ""
    return None if "3" in reason and "exit" in reason else f"reason lacks the exit code: {reason}"


def _cost_reported(job: dict[str, Any], runs: list[dict[str, Any]]) -> str | None:
    return None if runs and runs[-1]["costUsd"] > 0 else "no cost reported"


DEMO_JOBS: tuple[DemoJob, ...] = (
    DemoJob(
        "hello",
        _spec(
            {"engine": "shell", "cwd": ".", "timeout": "2m", "title": "hello"},
            'echo "hello from $(hostname), in $(pwd)"\nuname -sr',
        ),
        "succeeded",
        "a shell job (only factory-a offers shell)",
    ),
    DemoJob(
        "sim-1",
        _spec(
            {"engine": "sim", "priority": "high", "params": '{"durationS": 2, "costUsd": 0.42}'},
            "Simulate an agent that works for two seconds.",
        ),
        "succeeded",
        "a sim agent reporting $0.42",
        _cost_reported,
    ),
    DemoJob(
        "sim-2",
        _spec(
            {"engine": "sim", "params": '{"durationS": 3, "costUsd": 0.17}'},
            "Simulate another agent.",
        ),
        "succeeded",
        "a second sim agent, in parallel",
        _cost_reported,
    ),
    DemoJob(
        "lock-1",
        _spec(
            {"engine": "sim", "lock": "demo-repo", "params": '{"durationS": 1.5}'},
            "Holds the demo-repo lock.",
        ),
        "succeeded",
        "two jobs sharing lock demo-repo ...",
    ),
    DemoJob(
        "lock-2",
        _spec(
            {"engine": "sim", "lock": "demo-repo", "params": '{"durationS": 1.5}'},
            "Waits for the demo-repo lock.",
        ),
        "succeeded",
        "... never overlap",
    ),
    DemoJob(
        "failing",
        _spec({"engine": "shell", "timeout": "1m"}, 'echo "about to fail" >&2\nexit 3'),
        "failed",
        "a shell job exiting 3",
        _exit_code_named,
    ),
    DemoJob(
        "devin",
        _spec(
            {"engine": "devin", "cwd": ".", "yolo": "true", "timeout": "10h"},
            "Nobody offers devin here: this job waits until cancelled.",
        ),
        "cancelled",
        "waits for an engine nobody offers, then cancelled",
        cancel_when_waiting=True,
    ),
)

DEMO_FACTORIES = (
    LocalFactory(id="factory-a", engines=("shell", "sim"), labels=("demo",), slots=2),
    LocalFactory(id="factory-b", engines=("sim",), labels=("demo",), slots=2),
)


@dataclass
class _Outcome:
    job: DemoJob
    job_id: str
    final: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    waited_for: str | None = None
    problems: list[str] = field(default_factory=list)


async def _drive(
    http: httpx.AsyncClient, outcome: _Outcome, deadline: float, poll_s: float = 0.3
) -> None:
    """Follow one job to its end (cancelling it once it waits, if it should)."""
    path = f"/fleet/jobs/{outcome.job_id}"
    cancelled = False
    while time.monotonic() < deadline:
        job = (await http.get(path)).raise_for_status().json()
        stage = job["stage"]
        if stage == "waiting" and outcome.job.cancel_when_waiting and not cancelled:
            outcome.waited_for = job.get("stageReason")
            r = await http.patch(path, json={"action": "cancel", "reason": "demo: done waiting"})
            r.raise_for_status()
            cancelled = True
        if stage in {"succeeded", "failed", "cancelled", "blocked"}:
            outcome.final = job
            outcome.runs = (await http.get(f"{path}/runs")).raise_for_status().json()["items"]
            return
        await asyncio.sleep(poll_s)
    outcome.problems.append("did not finish in time")


def _check(outcome: _Outcome) -> None:
    job, final = outcome.job, outcome.final
    if not final:
        return
    if final["stage"] != job.expect:
        outcome.problems.append(f"ended {final['stage']}, expected {job.expect}")
    if job.check is not None and (problem := job.check(final, outcome.runs)):
        outcome.problems.append(problem)
    if job.cancel_when_waiting and "devin" not in (outcome.waited_for or ""):
        outcome.problems.append(f"waited for {outcome.waited_for!r}, not the devin engine")


def _lock_overlap(outcomes: list[_Outcome]) -> str | None:
    spans: list[tuple[datetime, datetime]] = []
    for o in outcomes:
        if o.job.name.startswith("lock-"):
            for r in o.runs:
                if r.get("finishedAt"):
                    spans.append((_t(r["startedAt"]), _t(r["finishedAt"])))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        if start < end:
            return "the two lock-sharing jobs overlapped"
    return None


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def summary(outcomes: list[_Outcome]) -> str:
    rows = []
    for o in outcomes:
        f = o.final
        run = o.runs[-1] if o.runs else {}
        rows.append(
            (
                o.job.name,
                o.job_id,
                f.get("spec", {}).get("engine"),
                f.get("stage", "?"),
                run.get("factoryId"),
                f"{f.get('costUsd', 0):.2f}",
                ago(run.get("startedAt"), run.get("finishedAt")),
                "ok" if not o.problems else "WRONG: " + "; ".join(o.problems),
                (o.waited_for or f.get("stageReason") or o.job.what)[:70],
            )
        )
    return table(
        ["job", "id", "engine", "stage", "factory", "usd", "ran", "as expected", "note"], rows
    )


async def run_demo(
    settings: Settings, *, keep_running: bool = False, timeout_s: float = 180
) -> int:
    """Run the demo; 0 when every job ended as expected."""
    root = settings.data_dir.resolve() / "demo"
    root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    stack = DevStack(
        settings.model_copy(update={"data_dir": run_dir, "temporal_address": None}),
        factories=DEMO_FACTORIES,
        fallback_ports=True,
    )
    _say(f"starting the dev stack in {run_dir} ...")
    await stack.start()
    try:
        _say(f"API docs     {stack.api_url}/docs")
        _say(f"Web UI       {stack.web_url}  (sign in with the admin key)")
        _say(f"Temporal UI  {stack.ui_url}  (filter: FleetProductId = 'demo')")
        headers = {"Authorization": f"Bearer {stack.admin_key}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
            outcomes: list[_Outcome] = []
            for job in DEMO_JOBS:
                body = {"spec": job.spec, "productId": "demo", "title": job.name}
                r = await http.post("/fleet/jobs", json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"demo job {job.name} refused: {r.text}")
                outcomes.append(_Outcome(job, r.json()["id"]))
                _say(f"submitted {job.name:8} {r.json()['id']}  {job.what}")
            deadline = time.monotonic() + timeout_s
            await asyncio.gather(*(_drive(http, o, deadline) for o in outcomes))
            for o in outcomes:
                _check(o)
            wrong = [o for o in outcomes if o.problems]
            for o in wrong:  # what happened to it, while the stack can still tell
                events = (await http.get(f"/fleet/jobs/{o.job_id}/events")).json()["items"]
                _say(f"events of {o.job.name} ({o.job_id}):")
                for e in events:
                    _say(f"  {e['at'][11:23]} {e['kind']:10} {e.get('stage') or '':10} "
                         f"{e.get('reason') or ''}")  # fmt: skip
        overlap = _lock_overlap(outcomes)
        _say("")
        _say(summary(outcomes))
        ok = overlap is None and all(not o.problems for o in outcomes)
        if overlap:
            _say(f"WRONG: {overlap}")
        _say("")
        _say(
            "every job ended as expected" if ok else "some jobs did not end as expected (see above)"
        )
        if keep_running:
            _say(f"see any job with: gigafactory --data-dir {run_dir} job <id>")
            _say(f"the stack keeps running (API {stack.api_url}); Ctrl-C stops it")
            _say(f"web UI {stack.web_url}: sign in with the admin key {stack.admin_key}")
            write_stack_file(
                stack.settings,
                {"apiUrl": stack.api_url, "uiUrl": stack.ui_url},
                stack.admin_key,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return 0 if ok else 1
    finally:
        await stack.stop()
        if not keep_running:
            shutil.rmtree(run_dir, ignore_errors=True)


def _say(line: str) -> None:
    # The demo's output is its product: a terminal report, not log records.
    typer.echo(line)
