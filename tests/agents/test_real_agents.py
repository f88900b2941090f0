"""Every agent CLI, installed at its pinned version, run by a real factory on the Temporal
dev server against the fake model server, in a git worktree of a real repository: the run
record holds the parsed cost, tokens and session id, the agent's edit is committed on
`gigafactory/<jobId>` and its diff is an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from activities.workspace import DIFF_ARTIFACT, Workspaces
from tests.e2e.harness import Fleet, unique_label
from tests.support.agents import FakeLlm, git, git_repo, require_cli

pytestmark = [pytest.mark.temporal, pytest.mark.real_agents]


async def run_agent_job(
    fleet: Fleet, tmp_path: Path, engine: str, prompt: str, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Submit a yolo job in a fresh repository to a factory offering `engine`; wait for it
    to succeed; returns the job, its one run and the repository."""
    require_cli(engine)
    label = unique_label()
    factory = await fleet.start_factory(engines=[engine], labels=[label])
    repo = git_repo(tmp_path / "repo")
    job = await fleet.submit(
        {
            "engine": engine,
            "prompt": prompt,
            "productId": "agents",
            "yolo": True,
            "capabilities": [label],
            "repo": str(repo),
            "timeoutS": 240,
            **extra,
        }
    )
    done = await fleet.wait_for(job["id"], ["succeeded"], timeout=240)
    runs = await fleet.runs(job["id"])
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["factoryId"] == factory.id
    assert run["branch"] == f"gigafactory/{job['id']}"
    return done, run, repo


async def branch_file(fleet: Fleet, run: dict[str, Any], repo: Path, name: str) -> str:
    """A file as committed on the job's branch in the factory's mirror."""
    workspaces = Workspaces(
        fleet.settings.mirror_dir / run["factoryId"], fleet.settings.workspace_dir
    )
    mirror = workspaces.mirror_for(str(repo))
    assert git(mirror, "rev-parse", run["branch"]) == run["commit"]
    author = git(mirror, "log", "-1", "--format=%an <%ae>|%s", run["branch"])
    assert author.startswith("Gigafactory <gigafactory@localhost>|gigafactory: job ")
    return git(mirror, "show", f"{run['commit']}:{name}")


async def diff_text(fleet: Fleet, job_id: str) -> str:
    artifacts = await fleet.get(f"/fleet/jobs/{job_id}/artifacts")
    items = artifacts["items"] if isinstance(artifacts, dict) else artifacts
    diff = next(a for a in items if a["name"] == DIFF_ARTIFACT)
    content = await fleet.http.get(
        f"/fleet/jobs/{job_id}/artifacts/{diff['id']}/content", headers=fleet.auth()
    )
    assert content.status_code == 200
    return content.text


def assert_tool_edit(text: str) -> None:
    assert "+TOOL_RAN" in text and "tool_ran.txt" in text


async def test_claude_code(fleet: Fleet, llm: FakeLlm, tmp_path: Path) -> None:
    done, run, repo = await run_agent_job(fleet, tmp_path, "claude-code", "TOOLONCE say hi")

    # Two model calls (the tool call, then the answer) of 100 input / 12 output tokens.
    assert (run["inputTokens"], run["outputTokens"]) == (200, 24)
    assert run["costSource"] == "cli"
    assert run["costUsd"] > 0 and done["costUsd"] == pytest.approx(run["costUsd"])
    assert run["sessionId"] and len(run["sessionId"]) == 36
    sessions = {
        r["headers"].get("X-Claude-Code-Session-Id") for r in llm.requests() if "headers" in r
    }
    assert run["sessionId"] in sessions, "the session id is the one claude sent"
    assert run["model"]
    assert (await branch_file(fleet, run, repo, "tool_ran.txt")) == "TOOL_RAN"
    assert_tool_edit(await diff_text(fleet, done["id"]))


async def test_codex(fleet: Fleet, llm: FakeLlm, tmp_path: Path) -> None:
    done, run, repo = await run_agent_job(fleet, tmp_path, "codex", "TOOLONCE say hi")

    assert (run["inputTokens"], run["outputTokens"]) == (200, 24)
    # codex prints no cost: 200 x $3/M + 24 x $15/M from the price table.
    assert run["costSource"] == "price_table"
    assert run["costUsd"] == pytest.approx(200 * 3e-6 + 24 * 15e-6)
    assert run["model"] == "fake-model"
    assert run["sessionId"] and len(run["sessionId"]) == 36
    assert (await branch_file(fleet, run, repo, "tool_ran.txt")) == "TOOL_RAN"
    assert_tool_edit(await diff_text(fleet, done["id"]))


async def test_gemini(fleet: Fleet, llm: FakeLlm, tmp_path: Path) -> None:
    done, run, repo = await run_agent_job(
        fleet, tmp_path, "gemini", "TOOLONCE say hi", params={"model": "gemini-2.5-flash"}
    )

    assert (run["inputTokens"], run["outputTokens"]) == (200, 24)
    assert run["costSource"] == "price_table"
    assert run["costUsd"] == pytest.approx(200 * 0.3e-6 + 24 * 2.5e-6)
    assert run["model"] == "gemini-2.5-flash"
    assert run["sessionId"] and len(run["sessionId"]) == 36
    assert (await branch_file(fleet, run, repo, "tool_ran.txt")) == "TOOL_RAN"
    assert_tool_edit(await diff_text(fleet, done["id"]))


async def test_opencode(fleet: Fleet, llm: FakeLlm, tmp_path: Path) -> None:
    done, run, repo = await run_agent_job(fleet, tmp_path, "opencode", "TOOLONCE say hi")

    # Two agent steps (the title request is not a step); opencode's own cost, priced by the
    # factory's table through the config the adapter writes.
    assert (run["inputTokens"], run["outputTokens"]) == (200, 24)
    assert run["costSource"] == "cli"
    assert run["costUsd"] == pytest.approx(200 * 3e-6 + 24 * 15e-6)
    assert run["sessionId"].startswith("ses_")
    assert (await branch_file(fleet, run, repo, "tool_ran.txt")) == "TOOL_RAN"
    assert_tool_edit(await diff_text(fleet, done["id"]))


async def test_aider(fleet: Fleet, llm: FakeLlm, tmp_path: Path) -> None:
    done, run, repo = await run_agent_job(fleet, tmp_path, "aider", "AIDEREDIT add created.txt")

    assert (run["inputTokens"], run["outputTokens"]) == (100, 12)
    # aider's own cost line (--no-stream: the server's usage), priced from the table.
    assert run["costSource"] == "cli"
    assert run["costUsd"] == pytest.approx(100 * 3e-6 + 12 * 15e-6)
    assert run["model"] == "openai/fake-model"
    assert run["sessionId"] is None, "aider has no session id (it resumes from its history)"
    assert (await branch_file(fleet, run, repo, "created.txt")) == "hello from fake"
    diff = await diff_text(fleet, done["id"])
    assert "+hello from fake" in diff
    assert ".aider" not in diff, "aider's own files are not the job's work"
