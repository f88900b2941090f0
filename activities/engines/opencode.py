"""opencode (`opencode`, npm `opencode-ai`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from activities.engines.base import (
    AgentReport,
    Engine,
    EngineCommand,
    EngineContext,
    pack_files,
    scratch_dir,
    unpack_files,
    write_if_changed,
)
from activities.engines.cli import (
    RESUME_PROMPT,
    cli_env,
    context_for,
    json_object,
    model_for,
    non_negative_int,
    session_of,
)
from gigafactory.models import CostSource, JobSpec

__all__ = ["OpencodeEngine"]

PROVIDER = "gigafactory"
_EXPORT = "session.json"
# `opencode export` / `import` of one session; a few seconds on an idle machine.
SESSION_COMMAND_TIMEOUT_S = 60.0


class OpencodeEngine(Engine):
    """`opencode run --format json [--auto] --dir <cwd> [-m P/M] [--session <id>] -- <prompt>`.

    opencode takes its project from `$PWD`, not from the process's working directory, so
    both `PWD` and `--dir` name it. `--auto` (yolo) approves what the permission rules would
    ask about; the default agent already may run commands. Output is one JSON event per
    line, each carrying `sessionID`; `step_finish` events carry the step's `tokens` and
    `cost`, whose sum is the run's cost (per step, never cumulative); `error` events are
    failures even when the exit code is 0.

    The config is a file of the run's (`OPENCODE_CONFIG`): no autoupdate or sharing,
    and, when the factory's environment has `OPENAI_BASE_URL`, a provider for that
    OpenAI-compatible endpoint whose model is priced from the price table (so opencode's own
    cost is the table's). Sessions live in opencode's database under the factory's home;
    another factory resumes one through `opencode export` / `opencode import`.
    """

    name = "opencode"
    executable = "opencode"
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
        model = model_for(spec, ctx)
        # Per run: concurrent jobs on one factory may name different models.
        config = scratch_dir(workdir, scratch) / "opencode.json"
        write_if_changed(config, _config(ctx, model))
        argv = ["opencode", "run", "--format", "json", "--dir", str(workdir)]
        if spec.yolo:
            argv.append("--auto")
        if model:
            argv += ["-m", _qualified(ctx, model)]
        resumed = session_of(checkpoint)
        if resumed:
            argv += ["--session", resumed]
        argv += ["--", RESUME_PROMPT if resumed else spec.prompt]
        env = _env(ctx, workdir, config)
        return EngineCommand(argv=argv, env=env, progress={"model": model} if model else {})

    def parse_progress(self, line: str) -> dict[str, Any] | None:
        event = json_object(line)
        if event is None:
            return super().parse_progress(line)
        session = event.get("sessionID")
        if event.get("type") == "step_start" and isinstance(session, str):
            return {"sessionId": session}
        return None

    def report(
        self, log_text: str, checkpoint: Mapping[str, Any] | None, ctx: EngineContext | None
    ) -> AgentReport:
        session = session_of(checkpoint)
        cost: float | None = None
        tokens_in = tokens_out = 0
        errors: list[str] = []
        steps = 0
        for line in log_text.splitlines():
            event = json_object(line)
            if event is None:
                continue
            if isinstance(event.get("sessionID"), str):
                session = event["sessionID"]
            if event.get("type") == "error":
                errors.append(_error(event.get("error")))
            part = event.get("part")
            if event.get("type") != "step_finish" or not isinstance(part, dict):
                continue
            steps += 1
            step_cost = part.get("cost")
            if isinstance(step_cost, int | float) and not isinstance(step_cost, bool):
                cost = (cost or 0.0) + float(step_cost)
            tokens = _dict(part.get("tokens"))
            cache = _dict(tokens.get("cache"))
            tokens_in += (non_negative_int(tokens.get("input")) or 0) + (
                non_negative_int(cache.get("read")) or 0
            )
            tokens_out += (non_negative_int(tokens.get("output")) or 0) + (
                non_negative_int(tokens.get("reasoning")) or 0
            )
        model = (checkpoint or {}).get("model")
        return AgentReport(
            error="; ".join(errors) or None,
            cost_usd=cost,
            cost_source=None if cost is None else CostSource.CLI,
            input_tokens=tokens_in if steps else None,
            output_tokens=tokens_out if steps else None,
            session_id=session,
            model=model if isinstance(model, str) else None,
            progress={"sessionId": session} if session else {},
        )

    # --- sessions: opencode export / import ---------------------------------------------------
    def has_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bool:
        return self._export(ctx, session_id, workdir) is not None

    def save_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bytes | None:
        exported = self._export(ctx, session_id, workdir)
        return None if exported is None else pack_files({_EXPORT: exported})

    def restore_session(
        self, ctx: EngineContext, session_id: str, workdir: Path, bundle: bytes
    ) -> None:
        data = unpack_files(bundle).get(_EXPORT)
        if data is None:
            return
        path = ctx.home / f"import-{session_id}.json"
        path.write_bytes(data)
        try:
            self._opencode(ctx, workdir, "import", str(path))
        finally:
            path.unlink(missing_ok=True)

    def _export(self, ctx: EngineContext, session_id: str, workdir: Path) -> bytes | None:
        try:
            out = self._opencode(ctx, workdir, "export", session_id)
        except (OSError, subprocess.SubprocessError):
            return None
        start = out.find(b"{")
        if start < 0:
            return None
        try:
            json.loads(out[start:])
        except ValueError:
            return None
        return out[start:]

    @staticmethod
    def _opencode(ctx: EngineContext, workdir: Path, *args: str) -> bytes:
        env = {**ctx.env, **_env(ctx, workdir, None)}
        done = subprocess.run(
            ["opencode", *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SESSION_COMMAND_TIMEOUT_S,
            check=True,
        )
        return done.stdout


def _env(ctx: EngineContext, workdir: Path, config: Path | None) -> dict[str, str]:
    env = cli_env(ctx)
    env.update(
        {
            "PWD": str(workdir),
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
        }
    )
    if config is not None:
        env["OPENCODE_CONFIG"] = str(config)
    return env


def _qualified(ctx: EngineContext, model: str) -> str:
    """opencode names a model `provider/model`; a bare name is the factory's provider's."""
    if "/" in model or not ctx.env.get("OPENAI_BASE_URL"):
        return model
    return f"{PROVIDER}/{model}"


def _config(ctx: EngineContext, model: str | None) -> str:
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
    }
    base_url = ctx.env.get("OPENAI_BASE_URL")
    if base_url:
        models: dict[str, Any] = {}
        bare = model.rsplit("/", 1)[-1] if model else None
        if bare:
            price = ctx.prices.price(bare)
            models[bare] = (
                {"cost": {"input": price.input_per_mtok, "output": price.output_per_mtok}}
                if price
                else {}
            )
        config["provider"] = {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": PROVIDER,
                "options": {"baseURL": base_url, "apiKey": "{env:OPENAI_API_KEY}"},
                "models": models,
            }
        }
        if bare:
            config["model"] = f"{PROVIDER}/{bare}"
    return json.dumps(config, indent=2) + "\n"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error(error: Any) -> str:
    if isinstance(error, dict):
        data = _dict(error.get("data"))
        message = data.get("message") or error.get("message") or error.get("name") or error
        return f"opencode reported {error.get('name', 'an error')}: {message}"
    return f"opencode reported an error: {error}"
