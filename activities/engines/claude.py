"""Anthropic's Claude Code (`claude`, npm `@anthropic-ai/claude-code`)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from activities.engines.base import (
    AgentReport,
    Engine,
    EngineCommand,
    EngineContext,
    pack_files,
    unpack_files,
)
from activities.engines.cli import (
    RESUME_PROMPT,
    cli_env,
    context_for,
    delta,
    json_documents,
    model_for,
    non_negative_int,
    session_of,
)
from gigafactory.models import CostSource, JobSpec

__all__ = ["ClaudeCodeEngine"]

_TRANSCRIPT = "transcript.jsonl"


class ClaudeCodeEngine(Engine):
    """`claude -p --output-format json --session-id <uuid> -- <prompt>`.

    `--output-format json` rather than `stream-json`: only the former prints its result
    object (with the partial `total_cost_usd`) when the run is interrupted with SIGINT. The
    session id is chosen here (`--session-id`), so the checkpoint has it from the first
    heartbeat; a resumed attempt runs `--resume <id>`. yolo adds
    `--dangerously-skip-permissions`, which claude refuses as root unless `IS_SANDBOX=1`.

    `total_cost_usd` and `modelUsage` are cumulative over a resumed session: the checkpoint
    keeps them (`cliCostUsd`, `cliInputTokens`, `cliOutputTokens`) and a run reports the
    difference. A turn interrupted by SIGINT is reported with its partial cost but is not
    part of the total the resumed session reports later (seen with 2.1.330), so it does not
    move the checkpoint's totals. The transcript (`~/.claude/projects/<cwd-slug>/<id>.jsonl`)
    is what another factory needs to resume; its folder depends on the working directory, so
    it is moved to the new one's slug on restore.
    """

    name = "claude-code"
    executable = "claude"
    interrupt_first = True

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
        ctx: EngineContext | None = None,
    ) -> EngineCommand:
        ctx = context_for(ctx, workdir, scratch)
        argv = ["claude", "-p", "--output-format", "json"]
        if spec.yolo:
            argv.append("--dangerously-skip-permissions")
        model = model_for(spec, ctx)
        if model:
            argv += ["--model", model]
        resumed = session_of(checkpoint)
        session = resumed or str(uuid.uuid4())
        argv += ["--resume", session] if resumed else ["--session-id", session]
        argv += ["--", RESUME_PROMPT if resumed else spec.prompt]
        env = cli_env(ctx)
        env.update(
            {
                "CLAUDE_CONFIG_DIR": str(ctx.home / ".claude"),
                # Exactly the model calls: no telemetry, update check or error reporting.
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_TELEMETRY": "1",
                "DISABLE_AUTOUPDATER": "1",
                "DISABLE_ERROR_REPORTING": "1",
            }
        )
        if os.geteuid() == 0:
            env["IS_SANDBOX"] = "1"
        return EngineCommand(argv=argv, env=env, progress={"sessionId": session})

    def parse_cost(self, log_text: str) -> float | None:
        result = _result(log_text)
        if result is None:
            return None
        # Older releases called the field `cost_usd`.
        for key in ("total_cost_usd", "cost_usd"):
            usd = result.get(key)
            if isinstance(usd, int | float) and not isinstance(usd, bool):
                return float(usd)
        return None

    def parse_progress(self, line: str) -> dict[str, Any] | None:
        # `stream-json` output (an operator's wrapper may use it) names the session first.
        for event in json_documents(line):
            session = event.get("session_id")
            if event.get("type") == "system" and isinstance(session, str):
                return {"sessionId": session}
            return None
        return super().parse_progress(line)

    def report(
        self, log_text: str, checkpoint: Mapping[str, Any] | None, ctx: EngineContext | None
    ) -> AgentReport:
        result = _result(log_text)
        if result is None:
            return AgentReport(session_id=session_of(checkpoint))
        total = self.parse_cost(log_text)
        usage = result.get("modelUsage")
        models = usage if isinstance(usage, dict) else {}
        tokens_in = tokens_out = 0
        for figures in models.values():
            if isinstance(figures, dict):
                for key in ("inputTokens", "cacheReadInputTokens", "cacheCreationInputTokens"):
                    tokens_in += non_negative_int(figures.get(key)) or 0
                tokens_out += non_negative_int(figures.get("outputTokens")) or 0
        progress: dict[str, Any] = {
            "cliCostUsd": total,
            "cliInputTokens": tokens_in,
            "cliOutputTokens": tokens_out,
        }
        session = result.get("session_id")
        if isinstance(session, str) and session:
            progress["sessionId"] = session
        error = None
        if result.get("is_error") or result.get("subtype") not in (None, "success"):
            detail = result.get("result") or result.get("errors") or result.get("terminal_reason")
            status = result.get("api_error_status")
            error = f"claude reported {result.get('subtype')}" + (
                f" (API status {status})" if status else ""
            )
            if detail:
                error += f": {str(detail)[:200]}"
        cost = delta(total, checkpoint, "cliCostUsd")
        if _interrupted(result):
            # An interrupted turn is reported, but not kept in the session's running total:
            # the next run's total starts from the same point, so the point stays.
            for key in ("cliCostUsd", "cliInputTokens", "cliOutputTokens"):
                progress[key] = (checkpoint or {}).get(key)
        return AgentReport(
            error=error,
            cost_usd=cost,
            cost_source=None if cost is None else CostSource.CLI,
            input_tokens=int(delta(tokens_in, checkpoint, "cliInputTokens") or 0),
            output_tokens=int(delta(tokens_out, checkpoint, "cliOutputTokens") or 0),
            session_id=progress.get("sessionId") or session_of(checkpoint),
            model=next(iter(models), None),
            progress={k: v for k, v in progress.items() if v is not None},
        )

    # --- sessions -----------------------------------------------------------------------------
    def has_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bool:
        return _transcript(ctx, session_id, workdir).is_file()

    def save_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bytes | None:
        path = _transcript(ctx, session_id, workdir)
        if not path.is_file():
            found = sorted((ctx.home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))
            if not found:
                return None
            path = found[0]
        return pack_files({_TRANSCRIPT: path.read_bytes()})

    def restore_session(
        self, ctx: EngineContext, session_id: str, workdir: Path, bundle: bytes
    ) -> None:
        data = unpack_files(bundle).get(_TRANSCRIPT)
        if data is None:
            return
        path = _transcript(ctx, session_id, workdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _result(log_text: str) -> dict[str, Any] | None:
    """The last `{"type": "result", ...}` object of a claude log."""
    found = None
    for document in json_documents(log_text):
        if document.get("type") == "result":
            found = document
    return found


def _interrupted(result: Mapping[str, Any]) -> bool:
    reason = str(result.get("terminal_reason") or "")
    return reason.startswith("aborted") or result.get("subtype") == "error_during_execution"


def _transcript(ctx: EngineContext, session_id: str, workdir: Path) -> Path:
    # Claude keeps a project's sessions under its path with every other character as '-'.
    slug = re.sub(r"[^A-Za-z0-9]", "-", str(workdir.resolve()))
    return ctx.home / ".claude" / "projects" / slug / f"{session_id}.jsonl"
