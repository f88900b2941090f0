"""Preempting a real claude-code job mid-stream (FLEET_PREEMPTION on): no process of the
agent is left, the partial cost claude reports on SIGINT is recorded, the work so far is
committed and pushed as WIP, and the resumed attempt continues the same session on the same
branch."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Fleet, unique_label
from tests.support.agents import FakeLlm, git, git_repo, require_cli

pytestmark = [pytest.mark.temporal, pytest.mark.real_agents]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


async def wait_until(predicate, timeout: float = 60, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.2)


async def test_preempted_claude_code_resumes_its_session_on_its_branch(
    fleet: Fleet, llm: FakeLlm, tmp_path: Path
) -> None:
    require_cli("claude-code")
    label = unique_label()
    await fleet.start_factory(engines=["claude-code", "shell"], labels=[label], slots=1)
    repo = git_repo(tmp_path / "repo")
    low = await fleet.submit(
        {
            "engine": "claude-code",
            "prompt": "SLOWCUT write a long answer",
            "productId": "agents",
            "priority": "low",
            "yolo": True,
            "capabilities": [label],
            "repo": str(repo),
            "timeoutS": 300,
        }
    )
    await fleet.wait_for(low["id"], ["running"], timeout=60)
    # The model's answer is streaming: the agent is mid-run.
    await wait_until(
        lambda: any(r.get("path", "").startswith("/v1/messages") for r in llm.requests()),
        what="claude's first model call",
    )
    await asyncio.sleep(1)

    critical = await fleet.submit(
        {
            "engine": "shell",
            "prompt": "echo urgent",
            "productId": "agents",
            "priority": "critical",
            "capabilities": [label],
        }
    )
    await fleet.wait_for(critical["id"], ["succeeded"], timeout=90)
    done = await fleet.wait_for(low["id"], ["succeeded"], timeout=180)
    assert done["leaseEpoch"] == 2

    first, second = await fleet.runs(low["id"])
    assert (first["outcome"], second["outcome"]) == ("preempted", "succeeded")
    # Nothing of the first attempt runs any more (its argv named its session id).
    session = first["sessionId"]
    assert session and processes_mentioning(session) == []
    # claude reported what the interrupted stream cost (SIGINT), and it is recorded.
    assert first["costSource"] == "cli" and first["costUsd"] > 0
    assert first["checkpoint"]["sessionBundle"], "the transcript was uploaded"
    # The resumed attempt continued the same session on the same branch, from the WIP.
    assert second["sessionId"] == session
    assert second["branch"] == first["branch"] == f"gigafactory/{low['id']}"
    assert git(repo, "rev-parse", f"refs/heads/{first['branch']}") == first["commit"]
    assert git(repo, "merge-base", "--is-ancestor", first["commit"], second["commit"]) == ""
    resumed = [
        r
        for r in llm.requests()
        if r.get("headers", {}).get("X-Claude-Code-Session-Id") == session  # type: ignore[union-attr]
    ]
    assert len(resumed) >= 2, "both attempts talked to the model in one session"
    # Per-run cost: the total is the sum of the runs, not claude's cumulative figure twice.
    assert done["costUsd"] == pytest.approx(first["costUsd"] + second["costUsd"])
    assert second["costUsd"] > 0
