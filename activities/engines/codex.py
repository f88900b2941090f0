"""OpenAI's Codex CLI (`codex`, npm `@openai/codex`)."""

from __future__ import annotations

import json
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
    write_if_changed,
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

__all__ = ["CodexEngine"]

# The provider the adapter configures when the factory names an OpenAI-compatible endpoint.
PROVIDER = "gigafactory"


class CodexEngine(Engine):
    """`codex exec --json --skip-git-repo-check <mode> [-m M] -- <prompt>`.

    yolo runs `--dangerously-bypass-approvals-and-sandbox` (for machines that are sandboxes
    themselves); otherwise `--sandbox workspace-write` (the agent may edit its workspace; the
    default read-only sandbox makes every edit fail). stdin is /dev/null: with an open pipe
    codex waits for its end. A resumed attempt runs `codex exec ... resume <thread> <prompt>`.

    Its config lives in `$CODEX_HOME/config.toml` under the factory's home: analytics and
    the plugin sync off (the only traffic besides the model), and, when the factory's
    environment has `OPENAI_BASE_URL`, a provider for it (Responses API, key from
    `OPENAI_API_KEY`). Codex prints tokens, not a price: the cost is tokens x the price
    table. Its `turn.completed` usage is cumulative over a resumed thread, so the checkpoint
    keeps the totals and a run reports the difference.
    """

    name = "codex"
    executable = "codex"
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
        codex_home = ctx.home / ".codex"
        write_if_changed(codex_home / "config.toml", _config(ctx))
        mode = (
            ["--dangerously-bypass-approvals-and-sandbox"]
            if spec.yolo
            else ["--sandbox", "workspace-write"]
        )
        argv = ["codex", "exec", "--json", "--skip-git-repo-check", *mode]
        model = model_for(spec, ctx)
        if model:
            argv += ["-m", model]
        resumed = session_of(checkpoint)
        if resumed:
            argv += ["resume", resumed, "--", RESUME_PROMPT]
        else:
            argv += ["--", spec.prompt]
        env = cli_env(ctx)
        env["CODEX_HOME"] = str(codex_home)
        progress: dict[str, Any] = {"model": model} if model else {}
        return EngineCommand(argv=argv, env=env, progress=progress)

    def parse_progress(self, line: str) -> dict[str, Any] | None:
        event = json_documents(line)
        first = next(event, None)
        if first is not None and first.get("type") == "thread.started":
            thread = first.get("thread_id")
            if isinstance(thread, str):
                return {"sessionId": thread}
        return super().parse_progress(line)

    def report(
        self, log_text: str, checkpoint: Mapping[str, Any] | None, ctx: EngineContext | None
    ) -> AgentReport:
        session = session_of(checkpoint)
        usage: dict[str, Any] | None = None
        errors: list[str] = []
        for event in json_documents(log_text):
            kind = event.get("type")
            if kind == "thread.started" and isinstance(event.get("thread_id"), str):
                session = event["thread_id"]
            elif kind == "turn.completed" and isinstance(event.get("usage"), dict):
                usage = event["usage"]
            elif kind == "turn.failed":
                errors.append(_message(event.get("error")))
            elif kind == "error":
                errors.append(_message(event))
        model = (checkpoint or {}).get("model")
        model = model if isinstance(model, str) else (ctx.model if ctx else None)
        progress: dict[str, Any] = {"sessionId": session} if session else {}
        tokens_in = tokens_out = None
        if usage is not None:
            total_in = non_negative_int(usage.get("input_tokens")) or 0
            total_out = (non_negative_int(usage.get("output_tokens")) or 0) + (
                non_negative_int(usage.get("reasoning_output_tokens")) or 0
            )
            tokens_in = int(delta(total_in, checkpoint, "cliInputTokens") or 0)
            tokens_out = int(delta(total_out, checkpoint, "cliOutputTokens") or 0)
            progress.update(cliInputTokens=total_in, cliOutputTokens=total_out)
        cost = None
        if tokens_in is not None and tokens_out is not None and ctx is not None:
            cost = ctx.prices.cost(model, tokens_in, tokens_out)
        return AgentReport(
            error="; ".join(errors) if errors and usage is None else None,
            cost_usd=cost,
            cost_source=None if cost is None else CostSource.PRICE_TABLE,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            session_id=session,
            model=model,
            progress=progress,
        )

    # --- sessions: the rollout file, at the same place under CODEX_HOME ----------------------
    def has_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bool:
        return _rollout(ctx, session_id) is not None

    def save_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bytes | None:
        path = _rollout(ctx, session_id)
        if path is None:
            return None
        return pack_files({str(path.relative_to(ctx.home)): path.read_bytes()})

    def restore_session(
        self, ctx: EngineContext, session_id: str, workdir: Path, bundle: bytes
    ) -> None:
        for name, data in unpack_files(bundle).items():
            target = (ctx.home / name).resolve()
            if ctx.home.resolve() in target.parents:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)


def _config(ctx: EngineContext) -> str:
    lines = ["# Written by Gigafactory for this factory's codex runs.\n"]
    base_url = ctx.env.get("OPENAI_BASE_URL")
    if base_url:
        lines.append(f"model_provider = {json.dumps(PROVIDER)}\n")
    lines += ["[analytics]\n", "enabled = false\n", "[features]\n", "plugins = false\n"]
    if base_url:
        lines += [
            f"[model_providers.{PROVIDER}]\n",
            f"name = {json.dumps(PROVIDER)}\n",
            f"base_url = {json.dumps(base_url)}\n",
            'env_key = "OPENAI_API_KEY"\n',
            'wire_api = "responses"\n',
        ]
    return "".join(lines)


def _rollout(ctx: EngineContext, session_id: str) -> Path | None:
    found = sorted((ctx.home / ".codex" / "sessions").glob(f"**/rollout-*-{session_id}.jsonl"))
    return found[-1] if found else None


def _message(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("message") or value)
    return str(value)
