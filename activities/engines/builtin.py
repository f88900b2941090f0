"""The built-in engines every factory offers: `shell` and `sim`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from activities.engines.base import (
    Engine,
    EngineCommand,
    EngineContext,
    last_marker_cost,
    scratch_dir,
)
from gigafactory.models import JobSpec

__all__ = ["ShellEngine", "SimEngine", "SimParams"]


class ShellEngine(Engine):
    """Runs the prompt as a bash script.

    The script is written to the run's scratch directory (not passed with `-c`, which would
    hit the kernel's per-argument size limit for long prompts). It costs nothing: the cost
    is 0, reported as measured rather than estimated, unless the script prints its own
    `GF-COST {"usd": ...}` line. `GF-PROGRESS {...}` lines become checkpoint progress.
    """

    name = "shell"
    executable = None

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
        ctx: EngineContext | None = None,
    ) -> EngineCommand:
        script = scratch_dir(workdir, scratch) / "job.sh"
        script.write_text(spec.prompt if spec.prompt.endswith("\n") else spec.prompt + "\n")
        return EngineCommand(argv=["bash", str(script)])

    def parse_cost(self, log_text: str) -> float | None:
        marker = last_marker_cost(log_text)
        return 0.0 if marker is None else marker


class SimParams:
    """The `params` of a `sim` job, validated: durationS, costUsd, outcome, exitCode."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.duration_s = _number(params, "durationS", 1.0)
        self.cost_usd = _number(params, "costUsd", 0.0)
        outcome = params.get("outcome", "succeeded")
        if outcome not in ("succeeded", "failed"):
            raise ValueError(f"sim param outcome must be 'succeeded' or 'failed', not {outcome!r}")
        self.outcome: str = outcome
        exit_code = params.get("exitCode", 1)
        if (
            not isinstance(exit_code, int)
            or isinstance(exit_code, bool)
            or not 1 <= exit_code <= 255
        ):
            raise ValueError(
                f"sim param exitCode must be an integer from 1 to 255, not {exit_code!r}"
            )
        self.exit_code: int = exit_code
        ignore = params.get("ignoreSigterm", False)
        if not isinstance(ignore, bool):
            raise ValueError(f"sim param ignoreSigterm must be true or false, not {ignore!r}")
        self.ignore_sigterm = ignore


def _number(params: dict[str, Any], key: str, default: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"sim param {key} must be a number >= 0, not {value!r}")
    return float(value)


class SimEngine(Engine):
    """A simulated agent (`activities.engines.sim_agent`) for demos and tests.

    `params`: `durationS` (default 1), `costUsd` (default 0), `outcome` (`succeeded` or
    `failed`), `exitCode` when failing (default 1), `ignoreSigterm` (default false, to
    exercise the SIGKILL escalation). A checkpoint's `elapsedS` resumes the work there.
    """

    name = "sim"
    executable = None
    # One process that never forks: nothing for a supervisor to hold together, so none is
    # started (half the cost of a run on a busy factory).
    supervised = False

    def build_command(
        self,
        spec: JobSpec,
        workdir: Path,
        checkpoint: dict[str, Any] | None,
        *,
        scratch: Path | None = None,
        ctx: EngineContext | None = None,
    ) -> EngineCommand:
        params = SimParams(spec.params)
        elapsed = (checkpoint or {}).get("elapsedS", 0.0)
        if isinstance(elapsed, bool) or not isinstance(elapsed, int | float):
            elapsed = 0.0
        argv = [
            sys.executable,
            # Isolated, without site-packages: the sim agent needs the standard library only,
            # and an interpreter starts in half the time without the rest.
            "-I",
            "-S",
            str(Path(__file__).with_name("sim_agent.py")),
            "--duration",
            repr(params.duration_s),
            "--cost",
            repr(params.cost_usd),
            "--outcome",
            params.outcome,
            "--exit-code",
            str(params.exit_code),
            "--elapsed",
            repr(float(elapsed)),
        ]
        if params.ignore_sigterm:
            argv.append("--ignore-sigterm")
        # Unbuffered, so progress lines reach the factory as they are printed.
        return EngineCommand(argv=argv, env={"PYTHONUNBUFFERED": "1"})

    def parse_cost(self, log_text: str) -> float | None:
        return last_marker_cost(log_text)
