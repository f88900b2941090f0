"""The factory's activity: run one job's engine as a subprocess, under a lease epoch.

`run_agent` prepares the workspace (a git worktree when the job names a repository,
`activities.workspace`), starts the agent under a supervisor that keeps its whole process
tree together (`activities.supervisor`), streams its merged stdout/stderr to a local file
and, in chunks, to the control plane, heartbeats the lease with checkpoint details, enforces
the job's timeout, and on cancellation stops the agent and its tools (SIGINT for agent CLIs,
SIGTERM, then SIGKILL within the grace period, `activities.proctree`) and returns a
checkpoint. At the end it uploads the whole log as the `agent.log` artifact, reads what the
agent reported (cost, tokens, session), commits the agent's changes to the job's branch and
uploads their diff; a stopped run also pushes its branch to the work remote and uploads
what another factory needs to resume its agent session.

The factory's other activities publish a job's branch (`ship_branch`) and remove a job's
worktree (`remove_workspace`).

A report refused as `Fenced` means a newer attempt owns the job: this run is a zombie, so
its agent is killed at once and the activity fails with a non-retryable `Fenced` error.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import inspect
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.engines.base import AgentReport, Engine, EngineCommand, EngineContext
from activities.engines.registry import ENGINES
from activities.proctree import alive, kill_tree, stop_supervised
from activities.reporter import Fenced, FleetReporter
from activities.workspace import DIFF_ARTIFACT, Workspace, WorkspaceError, Workspaces
from gigafactory.contracts import (
    REMOVE_WORKSPACE,
    RUN_AGENT,
    SHIP_BRANCH,
    AgentCheckpoint,
    RemoveWorkspaceInput,
    RemoveWorkspaceResult,
    RunAgentInput,
    RunAgentResult,
    ShipBranchInput,
    ShipBranchResult,
)
from gigafactory.durations import format_duration
from gigafactory.models import CostSource, JobSpec, RunOutcome
from gigafactory.pricing import PriceTable, parse_model_prices

__all__ = [
    "FactoryActivities",
    "LOG_ARTIFACT",
    "SESSION_ARTIFACT",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOG_ARTIFACT = "agent.log"
LOG_CONTENT_TYPE = "text/plain"
# What another factory needs to resume the agent's session (engine-specific files).
SESSION_ARTIFACT = "session.tar.gz"
# Temporal throttles heartbeats to 0.8 x the heartbeat timeout; beating every second keeps
# the lease fresh for any timeout the workflow sets, at no cost.
HEARTBEAT_INTERVAL_S = 1.0
READ_CHUNK_BYTES = 64 * 1024
# While the API is unreachable, unsent log text is capped (the local file keeps it all).
MAX_PENDING_LOG_CHARS = 1_000_000
# Longer unterminated lines are not parsed for progress (they are still logged).
MAX_PARSED_LINE_CHARS = 64 * 1024
# A last output line longer than this is not quoted in a failure reason.
MAX_REASON_LINE_CHARS = 200
# After the agent exits, how long its output may take to drain.
DRAIN_TIMEOUT_S = 2.0
# How long the `agent_started` signal may delay the run's result.
ANNOUNCE_TIMEOUT_S = 10.0
MAX_LOG_ARTIFACT_BYTES = 50 * 1024 * 1024
# The factory's own configuration and credentials (factory token, Temporal API key) never
# reach an agent, which may run untrusted code.
PRIVATE_ENV_PREFIXES = ("FLEET_", "TEMPORAL_")


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _finish_anyway(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end even if the activity is cancelled meanwhile.

    Once an agent is being stopped or its run recorded, giving up halfway would leak the
    process or lose the log; the work is bounded by the grace period and the reporter's
    retries.
    """
    task = asyncio.ensure_future(coro)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()
            logger.info("cancellation requested while a run is being finished: finishing first")


def _exit_code(returncode: int | None) -> int | None:
    """A return code as a shell reports it: killed by signal N is 128 + N."""
    if returncode is None or returncode >= 0:
        return returncode
    return 128 - returncode


def _cancel_reason(details: activity.ActivityCancellationDetails | None) -> str:
    if details is None or details.cancel_requested:
        return "cancelled: the agent was stopped"
    if details.timed_out:
        return "lease lost (the run timed out at the Temporal server): the agent was stopped"
    if details.not_found:
        return "lease lost (the Temporal server no longer knows this run): the agent was stopped"
    if details.paused:
        return "paused by an operator: the agent was stopped"
    if details.reset:
        return "reset by an operator: the agent was stopped"
    return "cancelled: the agent was stopped"


class _Refused(Exception):
    """The job cannot run here; the message is the run's failure reason."""


# --- the activity -----------------------------------------------------------------------------
class FactoryActivities:
    """The activities of one factory's worker (only `run_agent`), built once per factory."""

    def __init__(
        self,
        factory_id: str,
        reporter: FleetReporter,
        workspace_root: Path,
        *,
        log_chunk_interval_s: float = 1.0,
        stop_grace_s: float = 10.0,
        engines: Mapping[str, Engine] | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        max_log_artifact_bytes: int = MAX_LOG_ARTIFACT_BYTES,
        stop_interrupt_s: float = 3.0,
        agent_home: Path | None = None,
        prices: PriceTable | None = None,
        agent_models: Mapping[str, str] | None = None,
        workspaces: Workspaces | None = None,
    ) -> None:
        """Create the activities.

        Args:
            factory_id: this factory's id (named in reasons and the `agent_started` signal).
            reporter: where log chunks and artifacts go.
            workspace_root: jobs with a relative `cwd` run under
                `<workspace_root>/<productId>/<jobId>/`.
            log_chunk_interval_s: how often streamed log text is sent.
            stop_grace_s: how long a stopped agent's tree has before SIGKILL.
            engines: the engines this factory offers (default: every adapter).
            heartbeat_interval_s: how often the lease is heartbeated.
            max_log_artifact_bytes: a longer log is uploaded as its last this-many bytes.
            stop_interrupt_s: how long an agent CLI has after SIGINT before SIGTERM.
            agent_home: the agent CLIs' homes, one folder per engine (default:
                `<workspace_root>/.agent-homes`).
            prices: the per-model price table (default: `gigafactory.pricing`'s).
            agent_models: the model each engine runs with when a job names none.
            workspaces: the git worktrees and mirrors (default: mirrors beside
                `workspace_root`, no work, ship or forge configuration).
        """
        self.factory_id = factory_id
        self.reporter = reporter
        self.workspace_root = workspace_root.resolve()
        self.log_chunk_interval_s = log_chunk_interval_s
        self.stop_grace_s = stop_grace_s
        self.engines: Mapping[str, Engine] = dict(ENGINES if engines is None else engines)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_log_artifact_bytes = max_log_artifact_bytes
        self.stop_interrupt_s = stop_interrupt_s
        self.agent_home = (agent_home or self.workspace_root / ".agent-homes").resolve()
        self.prices = prices or parse_model_prices(None)
        self.agent_models = dict(agent_models or {})
        self.workspaces = workspaces or Workspaces(
            self.workspace_root.parent / f"{self.workspace_root.name}-mirrors",
            self.workspace_root,
        )

    def agent_activities(self) -> list[Callable[..., Any]]:
        """The slot-limited activity: an agent run (the factory's agent queue)."""
        return [self.run_agent]

    def workspace_activities(self) -> list[Callable[..., Any]]:
        """Short workspace operations (its operations queue): they never wait for a slot."""
        return [self.ship_branch, self.remove_workspace]

    def context(self, engine: Engine) -> EngineContext:
        """The home, environment, prices and default model `engine` runs with here."""
        return EngineContext(
            home=self.agent_home / engine.name,
            env=agent_environment(),
            prices=self.prices,
            model=self.agent_models.get(engine.name),
        )

    @activity.defn(name=SHIP_BRANCH.name)
    async def ship_branch(self, inp: ShipBranchInput) -> ShipBranchResult:
        """Publish `gigafactory/<jobId>`: push it to the ship remote (and run the forge
        command, if the factory has one). Idempotent.

        Raises:
            ApplicationError: type `ShipRefused` (non-retryable), with the reason, when the
                branch is unknown or the push or the forge command was refused.
        """
        try:
            shipped = await asyncio.to_thread(
                self.workspaces.ship,
                job_id=inp.job_id,
                repo=inp.repo,
                commit=inp.commit,
                title=inp.title,
            )
        except WorkspaceError as err:
            logger.warning("job %s: ship refused: %s", inp.job_id, err)
            raise ApplicationError(str(err), type="ShipRefused", non_retryable=True) from None
        return ShipBranchResult(
            branch=shipped.branch,
            commit=shipped.commit,
            remote=shipped.remote,
            output=shipped.output,
            url=shipped.url,
        )

    @activity.defn(name=REMOVE_WORKSPACE.name)
    async def remove_workspace(self, inp: RemoveWorkspaceInput) -> RemoveWorkspaceResult:
        """Remove a job's worktree and local branch (shipped, cancelled or expired job)."""
        removed = await asyncio.to_thread(
            self.workspaces.remove, job_id=inp.job_id, product_id=inp.product_id, repo=inp.repo
        )
        return RemoveWorkspaceResult(removed=removed)

    @activity.defn(name=RUN_AGENT.name)
    async def run_agent(self, inp: RunAgentInput) -> RunAgentResult:
        """Run the job's engine once under lease `inp.epoch`.

        Returns:
            How the run ended: succeeded (exit 0), failed (with the exit code and the last
            output line), timed_out, or cancelled (with the checkpoint to resume from).

        Raises:
            ApplicationError: type `Fenced` (non-retryable) when the control plane refused a
                report because a newer epoch owns the job; type `FactoryShutdown`
                (non-retryable) when the worker shut down under a running agent.
        """
        started_at = _utcnow()
        spec = inp.spec
        logger.info(
            "job %s (epoch %d): %s run requested on factory %s",
            inp.job_id,
            inp.epoch,
            spec.engine,
            self.factory_id,
        )
        engine = self.engines.get(spec.engine)
        if engine is None:
            offered = ", ".join(self.engines) or "none"
            return _early_failure(
                started_at,
                f"engine {spec.engine} is not available on factory {self.factory_id} "
                f"(it offers: {offered})",
                inp.checkpoint,
            )
        workspace: Workspace | None = None
        try:
            if spec.repo:
                workspace = await asyncio.to_thread(
                    self.workspaces.prepare,
                    job_id=inp.job_id,
                    product_id=inp.product_id,
                    repo=spec.repo,
                    base_ref=spec.base_ref,
                    checkpoint=inp.checkpoint,
                )
            workdir, job_root = self._workdir(inp, workspace)
            scratch = job_root / ".gigafactory" / f"epoch-{inp.epoch}"
            scratch.mkdir(parents=True, exist_ok=True)
        except (_Refused, WorkspaceError) as refused:
            if workspace is not None:
                await asyncio.to_thread(
                    self.workspaces.remove,
                    job_id=inp.job_id,
                    product_id=inp.product_id,
                    repo=spec.repo,
                )
            return _early_failure(started_at, str(refused), inp.checkpoint)
        except OSError as err:
            return _early_failure(
                started_at,
                f"cannot prepare the workspace on factory {self.factory_id}: {err}",
                inp.checkpoint,
            )
        checkpoint = self._resume_from(inp)
        ctx = self.context(engine)
        if checkpoint and engine.interrupt_first:
            checkpoint = await self._restore_session(inp, engine, ctx, workdir, checkpoint)
        try:
            command = _build(engine, spec, workdir, checkpoint, scratch, ctx)
        except (ValueError, OSError) as err:
            return _early_failure(
                started_at, f"engine {engine.name} cannot run this job: {err}", checkpoint
            )
        run = _AgentRun(self, inp, engine, command, workdir, scratch, checkpoint, started_at)
        run.ctx = ctx
        run.workspace = workspace
        return await run.execute()

    async def _restore_session(
        self,
        inp: RunAgentInput,
        engine: Engine,
        ctx: EngineContext,
        workdir: Path,
        checkpoint: dict[str, Any],
    ) -> dict[str, Any]:
        """The checkpoint to build the command from: its session restored here when an
        earlier attempt ran elsewhere, or left out when it cannot be resumed here."""
        session = checkpoint.get("sessionId")
        if not isinstance(session, str) or not session:
            return checkpoint
        if await asyncio.to_thread(engine.has_session, ctx, session, workdir):
            return checkpoint
        bundle_id = checkpoint.get("sessionBundle")
        if isinstance(bundle_id, str):
            try:
                bundle = await self.reporter.download_artifact(
                    inp.job_id, inp.product_id, inp.epoch, bundle_id
                )
                await asyncio.to_thread(engine.restore_session, ctx, session, workdir, bundle)
            except Fenced:
                raise
            except Exception as err:
                logger.warning("job %s: session %s not restored: %s", inp.job_id, session, err)
            if await asyncio.to_thread(engine.has_session, ctx, session, workdir):
                logger.info(
                    "job %s: session %s restored from the last attempt", inp.job_id, session
                )
                return checkpoint
        logger.warning(
            "job %s: session %s cannot be resumed on factory %s: starting a new one",
            inp.job_id,
            session,
            self.factory_id,
        )
        return {k: v for k, v in checkpoint.items() if k not in ("sessionId", "sessionBundle")}

    def _workdir(self, inp: RunAgentInput, workspace: Workspace | None) -> tuple[Path, Path]:
        """The agent's working directory (created when relative) and the job's own folder."""
        for segment in (inp.product_id, inp.job_id):
            if segment in ("", ".", "..") or "/" in segment or "\\" in segment:
                raise _Refused(f"cannot make a workspace for job id {segment!r}")
        job_root = self.workspace_root / inp.product_id / inp.job_id
        cwd = Path(inp.spec.cwd).expanduser()
        if workspace is not None:
            workdir = (workspace.path / cwd).resolve()
            top = workspace.path.resolve()
            if workdir != top and top not in workdir.parents:
                raise _Refused(f"working directory {inp.spec.cwd} leaves the job's worktree")
            workdir.mkdir(parents=True, exist_ok=True)
            return workdir, job_root
        if cwd.is_absolute():
            if not cwd.exists():
                raise _Refused(
                    f"working directory {cwd} does not exist on factory {self.factory_id}"
                )
            if not cwd.is_dir():
                raise _Refused(
                    f"working directory {cwd} is not a directory on factory {self.factory_id}"
                )
            return cwd, job_root
        workdir = (job_root / cwd).resolve()
        if workdir != job_root and job_root not in workdir.parents:
            raise _Refused(f"working directory {inp.spec.cwd} leaves the job's workspace")
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir, job_root

    @staticmethod
    def _resume_from(inp: RunAgentInput) -> dict[str, Any] | None:
        """The progress to resume from: the workflow's checkpoint, updated by this epoch's
        own last heartbeat if Temporal retried the activity."""
        progress = dict(inp.checkpoint or {})
        details = activity.info().heartbeat_details
        if details:
            try:
                beat = AgentCheckpoint.model_validate(details[0])
            except ValidationError:
                beat = None
            if beat is not None and beat.epoch == inp.epoch:
                progress.update(beat.progress)
        return progress or None


def agent_environment() -> dict[str, str]:
    """The factory's environment without its own configuration and credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIXES)}


def _build(
    engine: Engine,
    spec: JobSpec,
    workdir: Path,
    checkpoint: dict[str, Any] | None,
    scratch: Path,
    ctx: EngineContext,
) -> EngineCommand:
    """`engine.build_command`, with the context when the adapter takes one (adapters written
    before contexts existed do not)."""
    if "ctx" in inspect.signature(engine.build_command).parameters:
        return engine.build_command(spec, workdir, checkpoint, scratch=scratch, ctx=ctx)
    return engine.build_command(spec, workdir, checkpoint, scratch=scratch)


def _supervised(argv: list[str], grace_s: float) -> list[str]:
    """`argv` under the supervisor that keeps the agent's process tree together."""
    linger = f"{max(0.1, min(1.0, grace_s / 2)):g}"
    return [sys.executable, "-m", "activities.supervisor", "--linger", linger, "--", *argv]


def _early_failure(
    started_at: datetime, reason: str, checkpoint: dict[str, Any] | None
) -> RunAgentResult:
    logger.warning("run refused: %s", reason)
    return RunAgentResult(
        outcome=RunOutcome.FAILED,
        reason=reason,
        started_at=started_at,
        finished_at=_utcnow(),
        checkpoint=checkpoint or None,
    )


class _AgentRun:
    """One run of one agent process: its tasks, its log buffers and its progress."""

    proc: asyncio.subprocess.Process
    log_file: BinaryIO
    pump: asyncio.Task[None]
    flusher: asyncio.Task[None]
    announcer: asyncio.Task[None]
    began: float
    ctx: EngineContext | None = None
    workspace: Workspace | None = None

    def __init__(
        self,
        owner: FactoryActivities,
        inp: RunAgentInput,
        engine: Engine,
        command: EngineCommand,
        workdir: Path,
        scratch: Path,
        checkpoint: dict[str, Any] | None,
        started_at: datetime,
    ) -> None:
        self.owner = owner
        self.inp = inp
        self.engine = engine
        self.command = command
        self.workdir = workdir
        self.scratch = scratch
        self.started_at = started_at
        self.label = f"job {inp.job_id} (epoch {inp.epoch})"
        # The job's product may give its agents longer (or shorter) to stop.
        self.grace_s = owner.stop_grace_s if inp.stop_grace_s is None else inp.stop_grace_s
        self.log_path = scratch / LOG_ARTIFACT
        # What the run started from (a resumed session's cumulative counters), for `report`.
        self.start: dict[str, Any] = {**(checkpoint or {}), **command.progress}
        self.progress: dict[str, Any] = dict(self.start)
        self.log_seq = 0  # last chunk the control plane accepted
        self.pending: list[str] = []  # streamed text not yet accepted
        self.pending_chars = 0
        self.dropped_chars = 0
        self.partial = ""  # an unterminated output line
        self.last_line = ""
        self.tasks: list[asyncio.Task[Any]] = []
        self.local_log_failed = False

    # --- lifecycle ----------------------------------------------------------------------------
    async def execute(self) -> RunAgentResult:
        """Start the agent and supervise it until it ends; see `run_agent`."""
        try:
            self.log_file = self.log_path.open("wb")
        except OSError as err:
            return self._failure(f"cannot write the log on factory {self.owner.factory_id}: {err}")
        argv = self.command.argv
        env = self._env()
        try:
            if shutil.which(argv[0], path=env.get("PATH")) is None:
                raise FileNotFoundError(f"{argv[0]} not found on PATH or not executable")
            self.proc = await asyncio.create_subprocess_exec(
                *(_supervised(argv, self.grace_s) if self.engine.supervised else argv),
                cwd=self.workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL
                if self.command.stdin is None
                else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # The supervisor leads a session of its own: a Ctrl-C at the factory's
                # terminal must not reach agents, which are stopped on purpose or not at all.
                start_new_session=True,
            )
        except OSError as err:
            self.log_file.close()
            return self._failure(f"cannot start {self.engine.name} ({argv[0]}): {err}")
        except BaseException:
            # Cancelled while starting: asyncio kills a half-started process itself.
            self.log_file.close()
            raise
        self.began = asyncio.get_running_loop().time()
        logger.info(
            "%s: %s started (pid %d) in %s",
            self.label,
            self.engine.name,
            self.proc.pid,
            self.workdir,
        )
        try:
            self.pump = self._spawn(self._pump())
            self.flusher = self._spawn(self._flush_loop())
            self.announcer = self._spawn(self._announce())
            self._spawn(self._heartbeat_loop())
            if self.command.stdin is not None:
                self._spawn(self._feed_stdin(self.command.stdin))
            return await self._supervise()
        except Fenced as err:
            # A newer attempt owns the job: this one must not touch anything any more.
            kill_tree(self.proc.pid, include_root=True)
            logger.error("%s: fenced, agent killed: %s", self.label, err)
            raise ApplicationError(f"fenced: {err}", type="Fenced", non_retryable=True) from err
        finally:
            await self._cleanup()

    async def _supervise(self) -> RunAgentResult:
        """Wait for the agent to exit, its timeout, a cancellation or a fenced report."""
        exited = self._spawn(self.proc.wait())
        timeout_s = self.inp.spec.timeout_s
        remaining = max(0.0, timeout_s - (asyncio.get_running_loop().time() - self.began))
        try:
            done, _ = await asyncio.wait(
                {exited, self.flusher}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            return await _finish_anyway(self._on_cancel(details))
        if self.flusher in done:
            self.flusher.result()  # the flush loop only ends by raising Fenced
        if exited in done:
            return await _finish_anyway(self._on_exit())
        return await _finish_anyway(self._on_timeout(timeout_s))

    async def _on_exit(self) -> RunAgentResult:
        code = self.proc.returncode
        assert code is not None
        # The supervisor stopped what the agent left running before it exited itself.
        if code == 0:
            return await self._finish(RunOutcome.SUCCEEDED, None, code)
        return await self._finish(RunOutcome.FAILED, self._exit_reason(code), code)

    async def _on_timeout(self, timeout_s: float) -> RunAgentResult:
        logger.warning("%s: timed out after %gs, stopping the agent", self.label, timeout_s)
        code = await self._stop()
        return await self._finish(
            RunOutcome.TIMED_OUT, f"timed out after {format_duration(timeout_s)}", code
        )

    async def _on_cancel(
        self, details: activity.ActivityCancellationDetails | None
    ) -> RunAgentResult:
        shutdown = details is not None and details.worker_shutdown and not details.cancel_requested
        logger.info("%s: cancellation received (%s), stopping the agent", self.label, details)
        code = await self._stop()
        if not shutdown:
            return await self._finish(RunOutcome.CANCELLED, _cancel_reason(details), code)
        # Temporal does not accept "cancelled" for a cancel nobody requested; failing with a
        # distinct type lets the workflow requeue the job (it was not the job's fault).
        result = await self._finish(RunOutcome.CANCELLED, "factory shut down", code)
        raise ApplicationError(
            f"factory {self.owner.factory_id} shut down while the agent ran; the agent was stopped",
            result.checkpoint,
            type="FactoryShutdown",
            non_retryable=True,
        )

    async def _stop(self) -> int:
        return await stop_supervised(
            self.proc,
            self.grace_s,
            interrupt=self.engine.interrupt_first,
            interrupt_s=self.owner.stop_interrupt_s,
            supervised=self.engine.supervised,
        )

    async def _finish(
        self, outcome: RunOutcome, reason: str | None, returncode: int | None
    ) -> RunAgentResult:
        """Drain the output, send the last chunk, upload the log, read the agent's report,
        commit and publish the workspace."""
        # The agent has stopped: its slot can go to the next job now, while this run's log
        # and workspace are still being published (the worker's own slot stays taken until
        # this activity returns, so the factory never runs more agents than it has slots).
        await asyncio.wait({self.pump}, timeout=DRAIN_TIMEOUT_S)
        if not self.pump.done():
            logger.warning("%s: output still open %gs after exit", self.label, DRAIN_TIMEOUT_S)
            self.pump.cancel()
        await self._stop_flusher()
        # The last chunk says the agent stopped (one report, not two).
        if not await self._flush(last=True):
            await self._release_slot()
        log_text, artifact_id = await self._upload_log()
        artifacts = [artifact_id] if artifact_id else []
        report = self._report(log_text)
        self.progress.update(report.progress)
        if report.error and outcome == RunOutcome.SUCCEEDED:
            outcome, reason = RunOutcome.FAILED, report.error
        cost, source = self._cost(report)
        stopped = outcome == RunOutcome.CANCELLED
        if stopped and report.session_id:
            artifacts += await self._save_session(report.session_id)
        commit = None
        if self.workspace is not None:
            commit, diff_id, problem = await self._publish(self.workspace, outcome, stopped)
            artifacts += [diff_id] if diff_id else []
            if problem and outcome == RunOutcome.SUCCEEDED:
                outcome, reason = RunOutcome.FAILED, problem
            elif problem:
                reason = f"{reason}; {problem}" if reason else problem
        await asyncio.wait({self.announcer}, timeout=ANNOUNCE_TIMEOUT_S)
        result = RunAgentResult(
            outcome=outcome,
            exit_code=_exit_code(returncode),
            cost_usd=cost,
            cost_estimated=source == CostSource.ESTIMATE,
            reason=reason,
            started_at=self.started_at,
            finished_at=_utcnow(),
            checkpoint=dict(self.progress) or None,
            artifacts=artifacts,
            input_tokens=report.input_tokens,
            output_tokens=report.output_tokens,
            session_id=report.session_id,
            model=report.model,
            cost_source=source,
            branch=self.workspace.branch if self.workspace else None,
            commit=commit,
        )
        logger.info(
            "%s: %s (exit code %s, cost $%g%s)%s",
            self.label,
            outcome.value,
            result.exit_code,
            cost,
            f" from {source.value}" if source else "",
            f": {reason}" if reason else "",
        )
        return result

    def _report(self, log_text: str) -> AgentReport:
        try:
            return self.engine.report(log_text, self.start, self.ctx)
        except Exception:
            logger.exception("%s: %s could not read its report", self.label, self.engine.name)
            return AgentReport()

    def _cost(self, report: AgentReport) -> tuple[float, CostSource | None]:
        """The agent's figure (or tokens x prices), else the job's estimate, else 0."""
        if report.cost_usd is not None:
            return report.cost_usd, report.cost_source or CostSource.CLI
        estimate = self.inp.spec.estimated_cost_usd
        if estimate is not None:
            return estimate, CostSource.ESTIMATE
        return 0.0, None

    async def _save_session(self, session_id: str) -> list[str]:
        """Upload what another factory needs to resume the session; its artifact id."""
        if self.ctx is None:
            return []
        try:
            bundle = await asyncio.to_thread(
                self.engine.save_session, self.ctx, session_id, self.workdir
            )
        except Exception as err:
            logger.warning("%s: session %s not saved: %s", self.label, session_id, err)
            return []
        if bundle is None:
            return []
        artifact_id = await self._upload(SESSION_ARTIFACT, bundle, "application/gzip")
        if artifact_id is None:
            return []
        self.progress.update(sessionBundle=artifact_id, sessionFactory=self.owner.factory_id)
        return [artifact_id]

    async def _publish(
        self, workspace: Workspace, outcome: RunOutcome, stopped: bool
    ) -> tuple[str | None, str | None, str | None]:
        """Commit the agent's changes, upload the diff and, for a stopped run, push the
        branch to the work remote. Returns (commit, diff artifact id, problem)."""
        what = "WIP, stopped" if stopped else outcome.value
        message = (
            f"gigafactory: job {self.inp.job_id} epoch {self.inp.epoch} ({what})\n\n"
            f"Engine {self.engine.name} on factory {self.owner.factory_id}.\n"
        )
        workspaces = self.owner.workspaces
        try:
            commit = await asyncio.to_thread(workspaces.commit, workspace, message)
            diff = await asyncio.to_thread(workspaces.diff, workspace)
        except (WorkspaceError, OSError) as err:
            return None, None, f"cannot commit the agent's changes: {err}"
        self.progress.update(workspace.checkpoint(commit))
        await asyncio.to_thread(workspaces.touch, workspace.path)
        diff_id = await self._upload(DIFF_ARTIFACT, diff, "text/x-diff") if diff else None
        if stopped:
            try:
                remote = await asyncio.to_thread(workspaces.push_work, workspace)
            except WorkspaceError as err:
                return (
                    commit,
                    diff_id,
                    f"the work so far stays on factory {self.owner.factory_id}: {err}",
                )
            self.progress["pushedTo"] = remote
        return commit, diff_id, None

    async def _cleanup(self) -> None:
        """Whatever happened, no agent process and no helper task outlives the activity."""
        if alive(self.proc.pid):
            kill_tree(self.proc.pid, include_root=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.log_file.close()

    # --- helpers ------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    def checkpoint(self) -> AgentCheckpoint:
        """The heartbeat details: the lease epoch, the log position and the progress."""
        return AgentCheckpoint(
            epoch=self.inp.epoch, log_seq=self.log_seq, progress=dict(self.progress)
        )

    def heartbeat(self) -> None:
        activity.heartbeat(self.checkpoint())

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.owner.heartbeat_interval_s)
            self.heartbeat()

    def _env(self) -> dict[str, str]:
        env = agent_environment()
        env.update(self.command.env)
        env.update(
            {
                "GIGAFACTORY_JOB_ID": self.inp.job_id,
                "GIGAFACTORY_PRODUCT_ID": self.inp.product_id,
                "GIGAFACTORY_EPOCH": str(self.inp.epoch),
                "GIGAFACTORY_FACTORY_ID": self.owner.factory_id,
                "GIGAFACTORY_SCRATCH": str(self.scratch),
            }
        )
        return env

    def _failure(self, reason: str) -> RunAgentResult:
        return _early_failure(self.started_at, reason, dict(self.progress) or None)

    def _exit_reason(self, code: int) -> str:
        if code < 0:
            try:
                reason = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                reason = f"killed by signal {-code}"
        else:
            reason = f"exit code {code}"
        if self.last_line and len(self.last_line) <= MAX_REASON_LINE_CHARS:
            reason += f": {self.last_line}"
        return reason

    async def _release_slot(self) -> None:
        """Tell the control plane the agent stopped, so its slot is handed on at once (the
        run's record follows from the workflow; a failure here only costs that delay)."""
        try:
            await self.owner.reporter.stopped(self.inp.job_id, self.inp.product_id, self.inp.epoch)
        except Exception as err:  # the workflow frees the slot when it records the run
            logger.info("%s: early slot release not reported: %s", self.label, err)

    async def _announce(self) -> None:
        """Tell the control plane the agent started (the job moves to `running`)."""
        try:
            await self.owner.reporter.started(self.inp.job_id, self.inp.product_id, self.inp.epoch)
        except Exception as err:  # a fenced run learns it from its log stream as well
            logger.warning("%s: could not report the start: %s", self.label, err)

    async def _feed_stdin(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            logger.info("%s: the agent closed its stdin early", self.label)
        finally:
            stdin.close()

    # --- output -------------------------------------------------------------------------------
    async def _pump(self) -> None:
        """Copy the agent's output to the log file, the send buffer and the line parser."""
        stream = self.proc.stdout
        assert stream is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := await stream.read(READ_CHUNK_BYTES):
            self._write_local(chunk)
            self._take(decoder.decode(chunk))
        self._take(decoder.decode(b"", final=True))
        if self.partial:
            self._line(self.partial)
            self.partial = ""

    def _write_local(self, chunk: bytes) -> None:
        """Append to the local log; a full disk must not stop the agent or the streaming."""
        if self.local_log_failed:
            return
        try:
            self.log_file.write(chunk)
            self.log_file.flush()
        except OSError as err:
            self.local_log_failed = True
            logger.error("%s: cannot write %s any more: %s", self.label, self.log_path, err)

    def _take(self, text: str) -> None:
        if not text:
            return
        self.pending.append(text)
        self.pending_chars += len(text)
        while self.pending_chars > MAX_PENDING_LOG_CHARS and len(self.pending) > 1:
            dropped = self.pending.pop(0)
            self.pending_chars -= len(dropped)
            self.dropped_chars += len(dropped)
        *lines, self.partial = (self.partial + text).split("\n")
        if len(self.partial) > MAX_PARSED_LINE_CHARS:
            self.partial = ""
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        try:
            update = self.engine.parse_progress(line)
        except Exception:
            logger.debug("%s: progress parser failed on a line", self.label, exc_info=True)
            update = None
        if update:
            self.progress.update(update)
            return
        text = line.strip()
        if text and not text.startswith("GF-"):
            self.last_line = text

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.owner.log_chunk_interval_s)
            await self._flush()

    async def _flush(self, *, last: bool = False) -> bool:
        """Send the buffered text as the next chunk; on failure keep it for the next try.

        Returns:
            Whether a chunk was sent (`last`: it also reported that the agent stopped).
        """
        if not self.pending and not self.dropped_chars:
            return False
        batch, self.pending = self.pending, []
        batch_chars, self.pending_chars = self.pending_chars, 0
        dropped, self.dropped_chars = self.dropped_chars, 0
        text = "".join(batch)
        if dropped:
            text = (
                f"[gigafactory: {dropped} characters were not streamed while the control plane "
                f"was unreachable; {LOG_ARTIFACT} has them]\n" + text
            )
        seq = self.log_seq + 1
        try:
            await self.owner.reporter.append_log(
                self.inp.job_id, self.inp.product_id, self.inp.epoch, seq, text, last=last
            )
        except Fenced:
            raise
        except BaseException as err:
            # Resent later under the same seq, which replaces a chunk that did arrive.
            self.pending[:0] = batch
            self.pending_chars += batch_chars
            self.dropped_chars += dropped
            if not isinstance(err, Exception):
                raise
            logger.warning("%s: log chunk %d not sent: %s", self.label, seq, err)
            return False
        self.log_seq = seq
        return True

    async def _stop_flusher(self) -> None:
        if not self.flusher.done():
            self.flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.flusher
            return
        error = None if self.flusher.cancelled() else self.flusher.exception()
        if isinstance(error, Fenced):
            raise error

    async def _upload_log(self) -> tuple[str, str | None]:
        """Upload the log as `agent.log`; returns its text and the artifact id (None if the
        upload failed for another reason than fencing, which is logged)."""
        try:
            self.log_file.flush()
            data = await asyncio.to_thread(self._read_log)
        except OSError as err:
            logger.error("%s: cannot read %s: %s", self.label, self.log_path, err)
            data = f"[gigafactory: the local log could not be read: {err}]\n".encode()
        artifact_id = await self._upload(LOG_ARTIFACT, data, LOG_CONTENT_TYPE)
        return data.decode("utf-8", errors="replace"), artifact_id

    async def _upload(self, name: str, data: bytes, content_type: str) -> str | None:
        """Upload an artifact of this run; its id, or None when the upload failed for
        another reason than fencing (which is logged; the run goes on)."""
        try:
            return await self.owner.reporter.upload_artifact(
                self.inp.job_id, self.inp.product_id, self.inp.epoch, name, data, content_type
            )
        except Fenced:
            raise
        except Exception as err:
            logger.warning("%s: %s not uploaded: %s", self.label, name, err)
            return None

    def _read_log(self) -> bytes:
        limit = self.owner.max_log_artifact_bytes
        size = self.log_path.stat().st_size
        with self.log_path.open("rb") as handle:
            if size <= limit:
                return handle.read()
            header = (
                f"[gigafactory: the first {size - limit} bytes are left out; the whole log is "
                f"{self.log_path} on factory {self.owner.factory_id}]\n"
            ).encode()
            handle.seek(size - limit + len(header))
            return header + handle.read()
