"""What every engine adapter provides: how to start its agent and how to read its output.

An engine is pure knowledge about one agent CLI (or a built-in): the command line for a job,
and parsers for the cost and the checkpoint progress the agent prints. Running the process,
streaming its log and enforcing timeouts is `activities.factory`'s job, the same for all.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigafactory.models import CostSource, JobSpec
from gigafactory.pricing import PriceTable, parse_model_prices

__all__ = [
    "COST_MARKER",
    "PROGRESS_MARKER",
    "AgentReport",
    "Engine",
    "EngineCommand",
    "EngineContext",
    "last_marker_cost",
    "pack_files",
    "parse_marker",
    "scratch_dir",
    "unpack_files",
    "write_if_changed",
]

# Lines an agent (the sim agent, or any shell script) prints to report checkpoint progress
# and its own cost: `GF-PROGRESS {"elapsedS": 1.5}` and `GF-COST {"usd": 0.05}`.
PROGRESS_MARKER = "GF-PROGRESS"
COST_MARKER = "GF-COST"


@dataclass(frozen=True)
class EngineCommand:
    """How to start one agent run: argv, extra environment and what to feed its stdin.

    `progress` is checkpoint progress known before the agent starts (a session id the
    adapter chose), heartbeated from the first beat on.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    progress: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineContext:
    """What a factory gives an engine besides the job.

    Attributes:
        home: this factory's own home for the engine's CLI (config, sessions, caches): the
            adapter writes its config there and points the CLI's HOME at it, never at the
            operator's home.
        env: the environment an agent would inherit (the factory's, without its secrets);
            adapters read the model endpoint from it (`OPENAI_BASE_URL`, ...).
        prices: the per-model price table for CLIs that report tokens but no cost.
        model: the model this factory runs the engine with when a job names none.
    """

    home: Path
    env: Mapping[str, str] = field(default_factory=dict)
    prices: PriceTable = field(default_factory=lambda: parse_model_prices(None))
    model: str | None = None


@dataclass(frozen=True)
class AgentReport:
    """What one run of an agent said about itself, for this run only (never cumulative).

    Attributes:
        error: the agent reported a failure (even with exit code 0); the reason.
        cost_usd: what this run cost, None when unknown.
        cost_source: where `cost_usd` comes from.
        progress: checkpoint fields to keep (a session id, cumulative counters a resumed
            session's next run subtracts).
    """

    error: str | None = None
    cost_usd: float | None = None
    cost_source: CostSource | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    model: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)


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
    #: Stop with SIGINT first: agent CLIs treat it as Ctrl-C and may report their cost.
    interrupt_first: bool = False
    #: Run the agent under `activities.supervisor`, which keeps its whole process tree
    #: together for stopping; an agent that never starts processes of its own may skip it.
    supervised: bool = True

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
        ctx: EngineContext | None = None,
    ) -> EngineCommand:
        """The command that runs `spec` in `workdir`.

        Args:
            spec: the job.
            workdir: the agent's working directory (exists).
            checkpoint: progress of an earlier attempt of the same job (what
                `parse_progress` gathered), to resume from; None for a fresh start.
            scratch: a directory private to this run where the engine may write files (a
                script, a prompt); defaults to `<workdir>/.gigafactory`.
            ctx: the factory's home, environment, prices and default model for this
                engine (agent CLIs); None for a home under `scratch`.

        Returns:
            The command to start.

        Raises:
            ValueError: the spec's `params` are invalid for this engine.
        """

    def parse_cost(self, log_text: str) -> float | None:
        """The run's cost in USD as the agent reported it in its log, or None if unknown."""
        return None

    def report(
        self, log_text: str, checkpoint: Mapping[str, Any] | None, ctx: EngineContext | None
    ) -> AgentReport:
        """What the run reported: by default only the cost `parse_cost` finds.

        Args:
            log_text: the run's whole output.
            checkpoint: the progress the run started from (cumulative counters of a resumed
                session live there).
            ctx: as for `build_command`.
        """
        cost = self.parse_cost(log_text)
        return AgentReport(cost_usd=cost, cost_source=None if cost is None else CostSource.CLI)

    def has_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bool:
        """Whether `session_id` can be resumed here without restoring anything."""
        return False

    def save_session(self, ctx: EngineContext, session_id: str, workdir: Path) -> bytes | None:
        """What another factory needs to resume `session_id` (see `pack_files`), or None."""
        return None

    def restore_session(
        self, ctx: EngineContext, session_id: str, workdir: Path, bundle: bytes
    ) -> None:
        """Put a bundle `save_session` made on another factory where the CLI finds it."""
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


def pack_files(files: Mapping[str, bytes]) -> bytes:
    """A gzipped tar of `{name: content}` (a session bundle)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack_files(bundle: bytes) -> dict[str, bytes]:
    """The `{name: content}` of a `pack_files` bundle (regular files only)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                files[member.name] = handle.read()
    return files


def write_if_changed(path: Path, text: str) -> None:
    """Write a config file atomically, and only when its content changes (runs may share
    a factory's home concurrently)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
