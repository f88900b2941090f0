"""Aider (`aider`, PyPI `aider-chat`, best installed in a virtualenv of its own)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from activities.engines.base import (
    AgentReport,
    Engine,
    EngineCommand,
    EngineContext,
    scratch_dir,
    write_if_changed,
)
from activities.engines.cli import cli_env, context_for, model_for
from gigafactory.models import CostSource, JobSpec

__all__ = ["AiderEngine"]

_COST = re.compile(r"Cost: \$(\d+(?:\.\d+)?) message, \$(\d+(?:\.\d+)?) session\.")
_TOKENS = re.compile(r"Tokens: ([\d.,]+[kKmM]?) sent, ([\d.,]+[kKmM]?) received\.")
_HISTORY = "aider.chat.history.md"


class AiderEngine(Engine):
    """`aider --message=<prompt> --no-stream ... [--yes-always] [--model M]`.

    `--message` runs one instruction and exits. `--no-stream` because with streaming the
    printed tokens and cost are local estimates, not the server's figures. The repository is
    the factory's business: `--no-auto-commits` and `--no-gitignore`, and the chat history
    lives beside the run (`--chat-history-file`), not in the worktree; `--restore-chat-history`
    resumes from it (aider has no session id, so only a later attempt on the same factory
    resumes the chat). Update checks and analytics are off; litellm's
    price map is read from the package (`LITELLM_LOCAL_MODEL_COST_MAP`), and the job's model
    gets its price from the factory's table (`--model-metadata-file`), so aider's own cost
    line, `Cost: $X message, $Y session.`, is the table's price. The run's cost is the sum of
    its message costs.
    """

    name = "aider"
    executable = "aider"
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
        run_dir = scratch_dir(workdir, scratch)
        history = run_dir.parent / _HISTORY
        argv = [
            "aider",
            f"--message={spec.prompt}",
            "--no-pretty",
            "--no-stream",
            "--no-auto-commits",
            "--no-gitignore",
            "--no-check-update",
            "--analytics-disable",
            "--no-show-model-warnings",
            f"--chat-history-file={history}",
            f"--input-history-file={run_dir.parent / 'aider.input.history'}",
        ]
        if spec.yolo:
            argv.append("--yes-always")
        model = model_for(spec, ctx)
        if model:
            argv.append(f"--model={model}")
            metadata = _metadata(ctx, model)
            if metadata is not None:
                path = run_dir / "aider-models.json"
                write_if_changed(path, metadata)
                argv.append(f"--model-metadata-file={path}")
        if (checkpoint or {}).get("aiderHistory") and history.is_file():
            argv.append("--restore-chat-history")
        env = cli_env(ctx)
        env.update(
            {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "AIDER_CHECK_UPDATE": "false",
                "AIDER_ANALYTICS": "false",
            }
        )
        base_url = ctx.env.get("OPENAI_BASE_URL")
        if base_url and "OPENAI_API_BASE" not in ctx.env:
            env["OPENAI_API_BASE"] = base_url
        progress: dict[str, Any] = {"aiderHistory": True}
        if model:
            progress["model"] = model
        return EngineCommand(argv=argv, env=env, progress=progress)

    def parse_cost(self, log_text: str) -> float | None:
        matches = _COST.findall(log_text)
        return float(matches[-1][1]) if matches else None

    def report(
        self, log_text: str, checkpoint: Mapping[str, Any] | None, ctx: EngineContext | None
    ) -> AgentReport:
        costs = [float(message) for message, _ in _COST.findall(log_text)]
        tokens = _TOKENS.findall(log_text)
        model = (checkpoint or {}).get("model")
        model = model if isinstance(model, str) else None
        tokens_in = sum(_count(sent) for sent, _ in tokens) if tokens else None
        tokens_out = sum(_count(received) for _, received in tokens) if tokens else None
        cost: float | None = sum(costs) if costs else None
        source = CostSource.CLI if costs else None
        if cost is None and tokens_in is not None and tokens_out is not None and ctx:
            cost = ctx.prices.cost(model, tokens_in, tokens_out)
            source = None if cost is None else CostSource.PRICE_TABLE
        return AgentReport(
            cost_usd=cost,
            cost_source=source,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            model=model,
        )


def _count(text: str) -> int:
    """'2.5k' -> 2500, '1,234' -> 1234."""
    text = text.replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        return int(float(number) * scale)
    except ValueError:
        return 0


def _metadata(ctx: EngineContext, model: str) -> str | None:
    price = ctx.prices.price(model)
    if price is None:
        return None
    entry = {
        "input_cost_per_token": price.input_per_mtok / 1e6,
        "output_cost_per_token": price.output_per_mtok / 1e6,
        "litellm_provider": model.split("/", 1)[0] if "/" in model else "openai",
        "mode": "chat",
    }
    return json.dumps({model: entry}, indent=2) + "\n"
