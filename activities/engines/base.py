"""What every engine adapter provides: how to start its agent and how to read its output.

An engine is pure knowledge about one agent CLI (or a built-in): the command line for a job,
and parsers for the cost and the checkpoint progress the agent prints. Running the process,
streaming its log and enforcing timeouts is `activities.factory`'s job, the same for all.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigafactory.models import JobSpec

__all__ = [
    "COST_MARKER",
    "PROGRESS_MARKER",
    "Engine",
    "EngineCommand",
    "last_marker_cost",
    "parse_marker",
    "scratch_dir",
]

# Lines an agent (the sim agent, or any shell script) prints to report checkpoint progress
# and its own cost: `GF-PROGRESS {"elapsedS": 1.5}` and `GF-COST {"usd": 0.05}`.
PROGRESS_MARKER = "GF-PROGRESS"
COST_MARKER = "GF-COST"


@dataclass(frozen=True)
class EngineCommand:
    """How to start one agent run: argv, extra environment and what to feed its stdin."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None


def parse_marker(line: str, marker: str) -> dict[str, Any] | None:
    """The JSON object of a `<marker> {...}` line, or None if the line is not one.

    Args:
        line: one line of agent output.
        marker: `PROGRESS_MARKER` or `COST_MARKER`.

    Returns:
        The decoded object, or None when the line does not start with the marker or its
        payload is not a JSON object.
    """
    text = line.strip()
    if not text.startswith(marker + " "):
        return None
    try:
        value = json.loads(text[len(marker) + 1 :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def last_marker_cost(log_text: str) -> float | None:
    """The `usd` of the last well-formed `GF-COST` line of a log, if any."""
    for line in reversed(log_text.splitlines()):
        payload = parse_marker(line, COST_MARKER)
        if payload is None:
            continue
        usd = payload.get("usd")
        if isinstance(usd, int | float) and not isinstance(usd, bool) and usd >= 0:
            return float(usd)
    return None


class Engine(ABC):
    """An agent the factory can run: a CLI found on PATH, or a built-in (`executable` None)."""

    #: The engine name job specs use (`JobSpec.engine`).
    name: str
    #: The program that must be on PATH for this engine to be offered; None for built-ins.
    executable: str | None = None

    def available(self, path_env: str | None) -> bool:
        """Whether this factory can run the engine.

        Args:
            path_env: the PATH to search (None: the process's own PATH).

        Returns:
            True for built-ins, else whether `executable` is found on `path_env`.
        """
        if self.executable is None:
            return True
        return shutil.which(self.executable, path=path_env) is not None

    @abstractmethod
    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
    ) -> EngineCommand:
        """The command that runs `spec` in `workdir`.

        Args:
            spec: the job.
            workdir: the agent's working directory (exists).
            checkpoint: progress of an earlier attempt of the same job (what
                `parse_progress` gathered), to resume from; None for a fresh start.
            scratch: a directory private to this run where the engine may write files (a
                script, a prompt); defaults to `<workdir>/.gigafactory`.

        Returns:
            The command to start.

        Raises:
            ValueError: the spec's `params` are invalid for this engine.
        """

    def parse_cost(self, log_text: str) -> float | None:
        """The run's cost in USD as the agent reported it in its log, or None if unknown."""
        return None

    def parse_progress(self, line: str) -> dict[str, Any] | None:
        """Checkpoint fields found in one output line (merged into the run's progress).

        The default understands `GF-PROGRESS {...}` lines, which any agent may print.
        """
        return parse_marker(line, PROGRESS_MARKER)


def scratch_dir(workdir: Path, scratch: Path | None) -> Path:
    """The run's scratch directory, created if missing."""
    path = scratch if scratch is not None else workdir / ".gigafactory"
    path.mkdir(parents=True, exist_ok=True)
    return path
