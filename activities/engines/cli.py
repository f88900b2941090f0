"""What the agent-CLI adapters share, and the Devin adapter (the one CLI not yet run here).

Each CLI adapter lives in a module of its own (`claude`, `codex`, `gemini`, `opencode`,
`aider`); docs/agents.md says what each needs on a factory. The helpers here give every CLI
a home of its own under the factory's data directory, read JSON output (one object per
line, or pretty-printed over several lines) and turn cumulative counters into per-run ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from activities.engines.base import Engine, EngineCommand, EngineContext, scratch_dir
from gigafactory.models import JobSpec

__all__ = [
    "RESUME_PROMPT",
    "DevinEngine",
    "cli_env",
    "context_for",
    "delta",
    "json_documents",
    "json_object",
    "model_for",
    "non_negative_int",
    "session_of",
]

# What a resumed session is told: the original task is already in its history.
RESUME_PROMPT = (
    "You were interrupted. Continue the task from where you stopped; it is in this "
    "conversation above."
)


def context_for(ctx: EngineContext | None, workdir: Path, scratch: Path | None) -> EngineContext:
    """`ctx`, or a throwaway one whose home is under the run's scratch directory."""
    if ctx is not None:
        return ctx
    return EngineContext(home=scratch_dir(workdir, scratch) / "home", env=dict(os.environ))


def cli_env(ctx: EngineContext) -> dict[str, str]:
    """HOME and the XDG folders inside the engine's home, never the operator's."""
    home = ctx.home
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


def model_for(spec: JobSpec, ctx: EngineContext) -> str | None:
    """The job's `params.model`, else the factory's model for the engine."""
    model = spec.params.get("model")
    if isinstance(model, str) and model.strip():
        return model.strip()
    return ctx.model


def session_of(checkpoint: Mapping[str, Any] | None) -> str | None:
    """The session id an earlier attempt left in the checkpoint, if any."""
    value = (checkpoint or {}).get("sessionId")
    return value if isinstance(value, str) and value else None


def non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def delta(now: float | None, checkpoint: Mapping[str, Any] | None, key: str) -> float | None:
    """This run's share of a counter the CLI reports cumulatively over a resumed session:
    `now` minus what the checkpoint recorded under `key` (never below 0)."""
    if now is None:
        return None
    before = (checkpoint or {}).get(key)
    if isinstance(before, bool) or not isinstance(before, int | float):
        before = 0
    return max(0.0, now - before)


def json_object(line: str) -> dict[str, Any] | None:
    """The JSON object on one line, or None."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def json_documents(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object that starts a line of `text`, single- or multi-line, in order.

    Agent logs mix stdout and stderr, so objects are found by decoding from each line that
    starts with `{`; what does not decode is skipped.
    """
    decoder = json.JSONDecoder()
    position = 0
    while position < len(text):
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        if text.startswith("{", position):
            try:
                value, stop = decoder.raw_decode(text, position)
            except ValueError:
                value, stop = None, end
            if isinstance(value, dict):
                yield value
                position = max(stop, position + 1)
                continue
        position = end + 1


class DevinEngine(Engine):
    """Cognition's Devin CLI: `devin -p -- <prompt>`, yolo adds `--permission-mode bypass`.

    Assumption, to confirm on a machine with the CLI: docs.devin.ai/cli documents `-p` as
    single-turn mode (print the answer, exit), `--` before the prompt, and
    `--permission-mode bypass` as the mode that auto-approves every tool call (its
    in-session alias is `/yolo`); no `--yolo` flag is documented. The CLI prints no cost
    (None). Unlike the other CLIs it has not been run by a test here.
    """

    name = "devin"
    executable = "devin"
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
        argv = ["devin"]
        if spec.yolo:
            argv += ["--permission-mode", "bypass"]
        argv += ["-p", "--", spec.prompt]
        return EngineCommand(argv=argv)
