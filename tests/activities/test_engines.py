"""Engine adapters: command lines, cost and progress parsing, and what a factory offers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from activities.engines.base import parse_marker
from activities.engines.builtin import SimParams
from activities.engines.registry import ENGINES, available_engines
from gigafactory.models import KNOWN_ENGINES, JobSpec

PROMPT = "-fix the flaky test\nthen run it"


def spec(engine: str, yolo: bool, **extra: object) -> JobSpec:
    return JobSpec(engine=engine, prompt=PROMPT, yolo=yolo, **extra)


def test_every_known_engine_has_an_adapter() -> None:
    assert set(ENGINES) == set(KNOWN_ENGINES)
    assert all(name == engine.name for name, engine in ENGINES.items())


def fake_bin(tmp_path: Path, *names: str) -> str:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in names:
        exe = folder / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(folder)


def test_a_factory_offers_built_ins_and_the_clis_on_its_path(tmp_path: Path) -> None:
    path = fake_bin(tmp_path, "claude")

    assert available_engines(None, path) == ["shell", "sim", "claude-code"]
    assert available_engines(["claude-code", "codex", "sim", "sim"], path) == [
        "claude-code",
        "sim",
    ]
    assert available_engines(None, str(tmp_path / "empty")) == ["shell", "sim"]


def test_an_unknown_requested_engine_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown engine.*cladue"):
        available_engines(["cladue"], fake_bin(tmp_path))


SESSION = "<session>"  # stands for the session id claude-code chooses per run
QUIET_AIDER = [
    "--no-pretty",
    "--no-stream",
    "--no-auto-commits",
    "--no-gitignore",
    "--no-check-update",
    "--analytics-disable",
    "--no-show-model-warnings",
]


@pytest.mark.parametrize(
    ("engine", "yolo", "argv"),
    [
        (
            "claude-code",
            False,
            ["claude", "-p", "--output-format", "json", "--session-id", SESSION, "--", PROMPT],
        ),
        (
            "claude-code",
            True,
            [
                "claude",
                "-p",
                "--output-format",
                "json",
                "--dangerously-skip-permissions",
                "--session-id",
                SESSION,
                "--",
                PROMPT,
            ],
        ),
        (
            "codex",
            False,
            [
                "codex",
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--sandbox",
                "workspace-write",
                "--",
                PROMPT,
            ],
        ),
        (
            "codex",
            True,
            [
                "codex",
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox",
                "--",
                PROMPT,
            ],
        ),
        (
            "aider",
            False,
            ["aider", f"--message={PROMPT}", *QUIET_AIDER, "<history>", "<input-history>"],
        ),
        (
            "aider",
            True,
            [
                "aider",
                f"--message={PROMPT}",
                *QUIET_AIDER,
                "<history>",
                "<input-history>",
                "--yes-always",
            ],
        ),
        ("gemini", False, ["gemini", "--output-format", "json", f"--prompt={PROMPT}"]),
        ("gemini", True, ["gemini", "--output-format", "json", "--yolo", f"--prompt={PROMPT}"]),
        (
            "opencode",
            False,
            ["opencode", "run", "--format", "json", "--dir", "<workdir>", "--", PROMPT],
        ),
        (
            "opencode",
            True,
            ["opencode", "run", "--format", "json", "--dir", "<workdir>", "--auto", "--", PROMPT],
        ),
        ("devin", False, ["devin", "-p", "--", PROMPT]),
        ("devin", True, ["devin", "--permission-mode", "bypass", "-p", "--", PROMPT]),
    ],
)
def test_cli_adapter_argv(engine: str, yolo: bool, argv: list[str], tmp_path: Path) -> None:
    command = ENGINES[engine].build_command(spec(engine, yolo), tmp_path, None, scratch=tmp_path)

    placeholders = {
        SESSION: command.progress.get("sessionId"),
        "<workdir>": str(tmp_path),
        "<history>": f"--chat-history-file={tmp_path.parent / 'aider.chat.history.md'}",
        "<input-history>": f"--input-history-file={tmp_path.parent / 'aider.input.history'}",
    }
    assert command.argv == [placeholders.get(arg, arg) for arg in argv]
    assert command.stdin is None
    assert ENGINES[engine].executable == argv[0]


def test_shell_writes_the_prompt_to_a_script_in_the_scratch_dir(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    command = ENGINES["shell"].build_command(spec("shell", False), tmp_path, None, scratch=scratch)

    assert command.argv[0] == "bash"
    script = Path(command.argv[1])
    assert script.parent == scratch
    assert script.read_text() == PROMPT + "\n"


def test_shell_scratch_defaults_to_the_workdir(tmp_path: Path) -> None:
    command = ENGINES["shell"].build_command(spec("shell", False), tmp_path, None)

    assert Path(command.argv[1]).parent == tmp_path / ".gigafactory"


def test_sim_command_carries_params_and_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    job = spec(
        "sim",
        False,
        params={"durationS": 2, "costUsd": 0.5, "outcome": "failed", "exitCode": 7},
    )
    argv = ENGINES["sim"].build_command(job, tmp_path, {"elapsedS": 1.25}).argv

    assert argv[:3] == [sys.executable, "-I", "-S"]
    assert argv[3].endswith("activities/engines/sim_agent.py")
    options = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert options == {
        "--duration": "2.0",
        "--cost": "0.5",
        "--outcome": "failed",
        "--exit-code": "7",
        "--elapsed": "1.25",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"durationS": -1}, "durationS"),
        ({"costUsd": "a lot"}, "costUsd"),
        ({"outcome": "maybe"}, "outcome"),
        ({"exitCode": 0}, "exitCode"),
        ({"ignoreSigterm": "yes"}, "ignoreSigterm"),
    ],
)
def test_bad_sim_params_are_named(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimParams(params)


CLAUDE_STREAM = "\n".join(
    json.dumps(event)
    for event in (
        {"type": "system", "subtype": "init", "session_id": "abc-123", "tools": []},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "Done."}]}},
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": "Done.",
            "session_id": "abc-123",
            "total_cost_usd": 0.0731,
            "num_turns": 3,
        },
    )
)

AIDER_LOG = """\
Aider v0.86.1
Tokens: 2.5k sent, 310 received. Cost: $0.01 message, $0.01 session.
Applied edit to app.py
Tokens: 3.1k sent, 120 received. Cost: $0.0042 message, $0.0142 session.
"""


def test_cost_parsing_from_sample_outputs() -> None:
    assert ENGINES["claude-code"].parse_cost(CLAUDE_STREAM) == pytest.approx(0.0731)
    assert ENGINES["claude-code"].parse_cost('{"type": "assistant"}\nnot json') is None
    assert ENGINES["aider"].parse_cost(AIDER_LOG) == pytest.approx(0.0142)
    assert ENGINES["aider"].parse_cost("no cost here") is None
    assert ENGINES["codex"].parse_cost("tokens used: 12,345") is None
    assert ENGINES["gemini"].parse_cost("anything") is None
    assert ENGINES["devin"].parse_cost("anything") is None
    sim_log = 'GF-PROGRESS {"elapsedS": 1}\nGF-COST {"usd": 0.05}\nsim agent: done\n'
    assert ENGINES["sim"].parse_cost(sim_log) == pytest.approx(0.05)
    assert ENGINES["sim"].parse_cost("killed before it printed a cost") is None
    assert ENGINES["shell"].parse_cost("hello") == 0.0
    assert ENGINES["shell"].parse_cost('GF-COST {"usd": 1.5}') == 1.5


def test_progress_parsing() -> None:
    assert ENGINES["sim"].parse_progress('GF-PROGRESS {"elapsedS": 1.0}') == {"elapsedS": 1.0}
    assert ENGINES["sim"].parse_progress("GF-PROGRESS not-json") is None
    assert ENGINES["shell"].parse_progress("plain output") is None
    claude = ENGINES["claude-code"]
    first = CLAUDE_STREAM.splitlines()[0]
    assert claude.parse_progress(first) == {"sessionId": "abc-123"}
    assert claude.parse_progress(CLAUDE_STREAM.splitlines()[1]) is None
    assert parse_marker('GF-COST ["not", "an", "object"]', "GF-COST") is None


async def test_sim_agent_stops_on_sigterm_with_a_last_progress_line() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "activities.engines.sim_agent",
        "--duration",
        "5",
        "--cost",
        "1",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = await proc.stdout.readline()
    assert first.startswith(b"sim agent: starting")
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    rest = (await proc.stdout.read()).decode()

    assert await proc.wait() == 143
    lines = rest.splitlines()
    progress = [p for p in (parse_marker(line, "GF-PROGRESS") for line in lines) if p]
    assert progress, "a last progress line was printed"
    last_progress = progress[-1]
    assert 0.2 < last_progress["elapsedS"] < 5
    cost = next(parse_marker(line, "GF-COST") for line in lines if line.startswith("GF-COST"))
    assert cost is not None and 0 < cost["usd"] < 1


async def test_sim_agent_traces_its_start_ticks_and_stop_with_its_cost(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    env = {
        **os.environ,
        "GIGAFACTORY_SIM_TRACE": str(trace),
        "GIGAFACTORY_JOB_ID": "j1",
        "GIGAFACTORY_EPOCH": "3",
        "GIGAFACTORY_FACTORY_ID": "f1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "activities.engines.sim_agent", "--duration", "1.2", "--cost",
        "0.4", stdout=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert await proc.wait() == 0

    records = [json.loads(line) for line in trace.read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "stop" and "tick" in events
    assert {(r["job"], r["epoch"], r["factory"], r["pid"]) for r in records} == {
        ("j1", 3, "f1", proc.pid)
    }
    assert records[-1]["how"] == "done" and records[-1]["costUsd"] == 0.4
    assert records[-1]["at"] - records[0]["at"] >= 1.2
