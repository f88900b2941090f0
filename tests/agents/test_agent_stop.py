"""Cancelling a real agent CLI while its shell tool runs (the fake server's TOOLSLEEP: a
120 s sleep) leaves no process behind, although codex, gemini and opencode leave their tool
children running when only their top process is signalled; claude still reports what it
spent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from activities.reporter import RecordingReporter
from activities.workspace import Workspaces
from gigafactory.models import RunOutcome
from gigafactory.pricing import parse_model_prices
from tests.activities.conftest import Factory, job, make_factory, wait_for
from tests.agents.test_agent_preemption import processes_mentioning
from tests.support.agents import MODELS, PRICES, FakeLlm, git_repo, require_cli

pytestmark = pytest.mark.real_agents

SLEEPER = "time.sleep(120)"
__all__ = ["make_factory"]  # the fixture, shared with tests/activities


@pytest.mark.parametrize("engine", ["claude-code", "codex", "gemini", "opencode"])
async def test_a_cancelled_agent_leaves_no_tool_running(
    engine: str, llm: FakeLlm, make_factory: Callable[..., Factory], tmp_path: Path
) -> None:
    require_cli(engine)
    assert processes_mentioning(SLEEPER) == []
    factory = make_factory(
        stop_grace_s=8.0,
        stop_interrupt_s=3.0,
        prices=parse_model_prices(json.dumps(PRICES)),
        agent_models=MODELS,
        agent_home=tmp_path / "homes",
        workspaces=Workspaces(tmp_path / "mirrors", tmp_path / "ws"),
    )
    assert isinstance(factory.reporter, RecordingReporter)
    repo = git_repo(tmp_path / "repo")
    params = {"model": "gemini-2.5-flash"} if engine == "gemini" else {}
    task = factory.start(
        job(engine, "TOOLSLEEP then answer", yolo=True, repo=str(repo), params=params)
    )
    await wait_for(lambda: processes_mentioning(SLEEPER) != [], timeout=120)

    factory.env.cancel()
    result = await task

    assert result.outcome == RunOutcome.CANCELLED
    assert processes_mentioning(SLEEPER) == [], "the tool's sleep was stopped with the agent"
    assert result.branch == "gigafactory/j1"
    if engine == "claude-code":
        assert result.cost_source == "cli" and result.cost_usd > 0
        assert result.session_id and result.checkpoint
        assert result.checkpoint["sessionId"] == result.session_id
