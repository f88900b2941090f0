"""Adapters for agent CLIs installed on a factory: claude-code, codex, aider, gemini, devin.

Each adapter knows one CLI's non-interactive invocation, its unattended ("yolo") switch and,
where the CLI prints one, how to read its cost. The flags were checked against each tool's
public documentation (noted per adapter) but not against an installed binary: none of these
CLIs is installed where this was written. The prompt is always passed so that a prompt
starting with `-` cannot be mistaken for an option (`--` or `--flag=value`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from activities.engines.base import PROGRESS_MARKER, Engine, EngineCommand, parse_marker
from gigafactory.models import JobSpec

__all__ = [
    "AiderEngine",
    "ClaudeCodeEngine",
    "CodexEngine",
    "DevinEngine",
    "GeminiEngine",
]


class ClaudeCodeEngine(Engine):
    """Anthropic's Claude Code: `claude -p --output-format stream-json --verbose -- <prompt>`.

    Print mode (`-p`) runs one task and exits; `stream-json` (which needs `--verbose` in print
    mode) prints one JSON event per line, ending with a `result` event that carries
    `total_cost_usd`. yolo adds `--dangerously-skip-permissions` (no tool-permission prompts,
    which would otherwise stall an unattended run). Source: the Claude Code CLI reference
    (docs.anthropic.com/en/docs/claude-code/cli-reference).

    The session id of the run is kept as checkpoint progress (`sessionId`) for operators, but
    a resumed job is not started with `--resume`: Claude Code keeps sessions on the machine
    that ran them, and a requeued job usually lands on another factory.
    """

    name = "claude-code"
    executable = "claude"

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
    ) -> EngineCommand:
        argv = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
        if spec.yolo:
            argv.append("--dangerously-skip-permissions")
        argv += ["--", spec.prompt]
        return EngineCommand(argv=argv)

    def parse_cost(self, log_text: str) -> float | None:
        for line in reversed(log_text.splitlines()):
            event = _json_object(line)
            if event is None or event.get("type") != "result":
                continue
            # Older releases called the field `cost_usd`.
            for key in ("total_cost_usd", "cost_usd"):
                usd = event.get(key)
                if isinstance(usd, int | float) and not isinstance(usd, bool):
                    return float(usd)
        return None

    def parse_progress(self, line: str) -> dict[str, Any] | None:
        event = _json_object(line)
        if event is None:
            return parse_marker(line, PROGRESS_MARKER)
        session = event.get("session_id")
        if event.get("type") == "system" and isinstance(session, str):
            return {"sessionId": session}
        return None


class CodexEngine(Engine):
    """OpenAI's Codex CLI: `codex exec --skip-git-repo-check <mode> -- <prompt>`.

    `codex exec` is the non-interactive mode. Without yolo it runs `--full-auto` (sandboxed:
    the agent may edit files in its workspace but not reach the network or the rest of the
    machine); yolo runs `--dangerously-bypass-approvals-and-sandbox` (no sandbox, no
    approvals), meant for machines that are themselves sandboxes. `--skip-git-repo-check`
    because a job's workspace is often not a git repository. Sources: developers.openai.com
    (codex exec) and the openai/codex docs (sandbox.md).

    Codex prints token counts, not a price, so the cost is unknown here (None) and the
    job's estimate is used.
    """

    name = "codex"
    executable = "codex"

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
    ) -> EngineCommand:
        mode = "--dangerously-bypass-approvals-and-sandbox" if spec.yolo else "--full-auto"
        return EngineCommand(
            argv=["codex", "exec", "--skip-git-repo-check", mode, "--", spec.prompt]
        )


_AIDER_COST = re.compile(r"Cost: \$(\d+(?:\.\d+)?) message, \$(\d+(?:\.\d+)?) session\.")


class AiderEngine(Engine):
    """Aider: `aider --no-pretty --message=<prompt>`, plus `--yes-always` when yolo.

    `--message` runs one instruction and exits; `--no-pretty` drops colours and boxes from
    the log; `--yes-always` answers yes to every confirmation (without it an unattended run
    declines them, stdin being empty). After each reply aider prints
    `Cost: $0.01 message, $0.05 session.`: the run's cost is the last session figure.
    Sources: aider.chat/docs/scripting.html and aider's `base_coder.py`.
    """

    name = "aider"
    executable = "aider"

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
    ) -> EngineCommand:
        argv = ["aider", "--no-pretty", f"--message={spec.prompt}"]
        if spec.yolo:
            argv.append("--yes-always")
        return EngineCommand(argv=argv)

    def parse_cost(self, log_text: str) -> float | None:
        matches = _AIDER_COST.findall(log_text)
        return float(matches[-1][1]) if matches else None


class GeminiEngine(Engine):
    """Google's Gemini CLI: `gemini --prompt=<prompt>`, plus `--yolo` when yolo.

    `-p/--prompt` is headless mode (one prompt, then exit); `-y/--yolo` approves every tool
    call. Newer releases prefer `--approval-mode=yolo` and call `--yolo` deprecated but
    still accept it. Gemini prints no cost (None). Source: geminicli.com/docs/cli and
    `gemini --help` output quoted in public posts.
    """

    name = "gemini"
    executable = "gemini"

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
    ) -> EngineCommand:
        argv = ["gemini"]
        if spec.yolo:
            argv.append("--yolo")
        argv.append(f"--prompt={spec.prompt}")
        return EngineCommand(argv=argv)


class DevinEngine(Engine):
    """Cognition's Devin CLI: `devin -p -- <prompt>`, yolo adds `--permission-mode bypass`.

    Assumption, to confirm on a machine with the CLI: docs.devin.ai/cli documents `-p` as
    single-turn mode (print the answer, exit), `--` before the prompt, and
    `--permission-mode bypass` as the mode that auto-approves every tool call (its
    in-session alias is `/yolo`); no `--yolo` flag is documented. The CLI prints no cost
    (None).
    """

    name = "devin"
    executable = "devin"

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
    ) -> EngineCommand:
        argv = ["devin"]
        if spec.yolo:
            argv += ["--permission-mode", "bypass"]
        argv += ["-p", "--", spec.prompt]
        return EngineCommand(argv=argv)


def _json_object(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
