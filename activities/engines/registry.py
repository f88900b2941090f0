"""Every engine adapter by name, and which of them a factory can offer."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from activities.engines.aider import AiderEngine
from activities.engines.base import Engine
from activities.engines.builtin import ShellEngine, SimEngine
from activities.engines.claude import ClaudeCodeEngine
from activities.engines.cli import DevinEngine
from activities.engines.codex import CodexEngine
from activities.engines.gemini import GeminiEngine
from activities.engines.opencode import OpencodeEngine

__all__ = ["ENGINES", "available_engines"]

logger = logging.getLogger(__name__)

ENGINES: Mapping[str, Engine] = {
    engine.name: engine
    for engine in (
        ShellEngine(),
        SimEngine(),
        ClaudeCodeEngine(),
        CodexEngine(),
        AiderEngine(),
        GeminiEngine(),
        OpencodeEngine(),
        DevinEngine(),
    )
}


def available_engines(
    requested: Iterable[str] | None,
    path_env: str | None,
    engines: Mapping[str, Engine] = ENGINES,
) -> list[str]:
    """The engines a factory advertises: those requested whose executable it finds.

    Built-ins (`shell`, `sim`) need no executable and are always available. A requested
    engine whose CLI is missing is left out with a warning, so a factory never accepts jobs
    it cannot run.

    Args:
        requested: engine names the operator asked for, in order; None for every engine.
        path_env: the PATH to search (None: the process's own PATH).
        engines: the adapters to choose from.

    Returns:
        Engine names, in the requested order (registry order when None), without duplicates.

    Raises:
        ValueError: a requested name is not an engine at all (a typo should not pass
            silently).
    """
    names = list(engines) if requested is None else list(dict.fromkeys(requested))
    unknown = [name for name in names if name not in engines]
    if unknown:
        raise ValueError(
            f"unknown engine(s) {', '.join(unknown)}; known engines: {', '.join(engines)}"
        )
    found: list[str] = []
    for name in names:
        engine = engines[name]
        if engine.available(path_env):
            found.append(name)
        elif requested is not None:
            logger.warning(
                "engine %s not offered: %s is not on PATH", name, engine.executable or name
            )
    return found
