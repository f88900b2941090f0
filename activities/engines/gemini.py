"""Google's Gemini CLI (`gemini`, npm `@google/gemini-cli`)."""

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
    json_documents,
    model_for,
    non_negative_int,
    session_of,
)
from gigafactory.models import CostSource, JobSpec

__all__ = ["GeminiEngine"]


class GeminiEngine(Engine):
    """`gemini --output-format json [--yolo] [-m M] [--resume <id>] --prompt=<prompt>`.

    Headless mode prints one (pretty-printed) JSON object: `session_id`, `response` and
    per-model `stats`; errors come as `{session_id, error}` on stderr with a non-zero exit.
    yolo needs a trusted folder as well (`GEMINI_CLI_TRUST_WORKSPACE=true`), or the CLI
    falls back to asking, which headless mode cannot. `GEMINI_CLI_NO_RELAUNCH=true` keeps
    the CLI in one process, so signals reach it.

    `~/.gemini/settings.json` (the factory's) turns usage statistics, telemetry and the
    update check off, and selects API-key auth when `GEMINI_API_KEY` is set (a custom
    `GOOGLE_GEMINI_BASE_URL` alone selects an auth type 0.61 rejects). Gemini prints no
    cost: tokens x the price table, per model (its stats are per process, never
    cumulative). Chats are kept per project in `~/.gemini/tmp/<project>/chats/`; a restored
    session is filed under the new working directory's project.
    """

    name = "gemini"
    executable = "gemini"
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
        write_if_changed(ctx.home / ".gemini" / "settings.json", _settings(ctx))
        argv = ["gemini", "--output-format", "json"]
        if spec.yolo:
            argv.append("--yolo")
        model = model_for(spec, ctx)
        if model:
            argv += ["-m", model]
        resumed = session_of(checkpoint)
        if resumed:
            argv += ["--resume", resumed]
        argv.append(f"--prompt={RESUME_PROMPT if resumed else spec.prompt}")
        env = cli_env(ctx)
        env.update({"GEMINI_CLI_TRUST_WORKSPACE": "true", "GEMINI_CLI_NO_RELAUNCH": "true"})
        return EngineCommand(argv=argv, env=env)

    def report(
        self, log_text: str, checkpoint: Mapping[str, Any] | None, ctx: EngineContext | None
    ) -> AgentReport:
        final: dict[str, Any] | None = None
        for document in json_documents(log_text):
            if "session_id" in document or "error" in document:
                final = document
        if final is None:
            return AgentReport(session_id=session_of(checkpoint))
        session = final.get("session_id")
        session = session if isinstance(session, str) and session else session_of(checkpoint)
        error = final.get("error")
        stats = final.get("stats")
        models = stats.get("models") if isinstance(stats, dict) else None
        tokens_in = tokens_out = 0
        cost: float | None = 0.0
        main_model, main_tokens = None, -1
        for model, figures in (models or {}).items():
            tokens = figures.get("tokens") if isinstance(figures, dict) else None
            if not isinstance(tokens, dict):
                continue
            model_in = non_negative_int(tokens.get("prompt", tokens.get("input"))) or 0
            model_out = (non_negative_int(tokens.get("candidates")) or 0) + (
                non_negative_int(tokens.get("thoughts")) or 0
            )
            tokens_in += model_in
            tokens_out += model_out
            priced = ctx.prices.cost(model, model_in, model_out) if ctx else None
            cost = None if priced is None or cost is None else cost + priced
            if model_in + model_out > main_tokens:
                main_model, main_tokens = model, model_in + model_out
        if models is None:
            cost = None
        return AgentReport(
            error=None if error is None else f"gemini reported an error: {_message(error)}",
            cost_usd=cost,
            cost_source=None if cost is None else CostSource.PRICE_TABLE,
            input_tokens=tokens_in if models is not None else None,
            output_tokens=tokens_out if models is not None else None,
            session_id=session,
            model=main_model,
            progress={"sessionId": session} if session else {},
        )

    # --- sessions -----------------------------------------------------------------------------
    def has_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bool:
        return _chat(ctx, session_id) is not None

    def save_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bytes | None:
        path = _chat(ctx, session_id)
        return None if path is None else pack_files({path.name: path.read_bytes()})

    def restore_session(
        self, ctx: EngineContext, session_id: str, workdir: Path, bundle: bytes
    ) -> None:
        chats = ctx.home / ".gemini" / "tmp" / _project(ctx, workdir) / "chats"
        chats.mkdir(parents=True, exist_ok=True)
        for name, data in unpack_files(bundle).items():
            if "/" not in name and name.endswith((".json", ".jsonl")):
                (chats / name).write_bytes(data)


def _settings(ctx: EngineContext) -> str:
    settings: dict[str, Any] = {
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    }
    if ctx.env.get("GEMINI_API_KEY"):
        settings["security"] = {"auth": {"selectedType": "gemini-api-key"}}
    return json.dumps(settings, indent=2) + "\n"


def _chat(ctx: EngineContext, session_id: str) -> Path | None:
    # Chat files are named session-<time>-<first 8 characters of the id>.json[l].
    short = session_id.split("-")[0][:8]
    for path in sorted((ctx.home / ".gemini" / "tmp").glob(f"*/chats/session-*-{short}.*")):
        try:
            if session_id in path.read_text(errors="replace")[:4096]:
                return path
        except OSError:
            continue
    return None


def _project(ctx: EngineContext, workdir: Path) -> str:
    """The short project name gemini files `workdir`'s chats under (registered if new)."""
    registry = ctx.home / ".gemini" / "projects.json"
    try:
        document = json.loads(registry.read_text())
    except (OSError, ValueError):
        document = {}
    projects = document.setdefault("projects", {})
    key = str(workdir.resolve())
    if key not in projects:
        taken = set(projects.values())
        name, suffix = workdir.name or "project", 1
        while name in taken:
            suffix += 1
            name = f"{workdir.name}-{suffix}"
        projects[key] = name
        registry.parent.mkdir(parents=True, exist_ok=True)
        registry.write_text(json.dumps(document, indent=2) + "\n")
    return str(projects[key])


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('message', error)}"
    return str(error)
