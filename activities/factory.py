"""The factory's activity: run one job's engine as a subprocess, under a lease epoch.

`run_agent` prepares the workspace, starts the agent in its own process group, streams its
merged stdout/stderr to a local file and, in chunks, to the control plane, heartbeats the
lease with checkpoint details, enforces the job's timeout, and on cancellation stops the
agent (SIGTERM, then SIGKILL after a grace period) and returns a checkpoint. At the end it
uploads the whole log as the `agent.log` artifact and works out the run's cost.

A report refused as `Fenced` means a newer attempt owns the job: this run is a zombie, so
its agent is killed at once and the activity fails with a non-retryable `Fenced` error.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.engines.base import Engine, EngineCommand
from activities.engines.registry import ENGINES
from activities.reporter import Fenced, FleetReporter
from gigafactory.contracts import (
    RUN_AGENT,
    SIGNAL_AGENT_STARTED,
    AgentCheckpoint,
    AgentStarted,
    RunAgentInput,
    RunAgentResult,
)
from gigafactory.durations import format_duration
from gigafactory.models import RunOutcome

__all__ = [
    "FactoryActivities",
    "LOG_ARTIFACT",
    "group_alive",
    "signal_group",
    "stop_process_group",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOG_ARTIFACT = "agent.log"
LOG_CONTENT_TYPE = "text/plain"
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


# --- process groups ---------------------------------------------------------------------------
def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to every process of group `pgid`; a group that is gone is not an error."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as err:
        logger.warning("cannot send %s to process group %d: %s", sig.name, pgid, err)


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running (zombies do not count).

    Zombies are skipped because an orphaned agent child is reaped by the machine's init,
    which in a container may never happen; they hold no resources but their pid.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may itself contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


async def stop_process_group(
    proc: asyncio.subprocess.Process, grace_s: float, *, poll_s: float = 0.05
) -> int:
    """Stop an agent and everything it started: SIGTERM its group, SIGKILL what is left.

    Args:
        proc: the agent, started with `start_new_session=True` (its pid is its group id).
        grace_s: how long the group has to exit after SIGTERM.
        poll_s: how often to look.

    Returns:
        The agent's return code (negative: killed by that signal).
    """
    pgid = proc.pid
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    signal_group(pgid, signal.SIGTERM)
    while loop.time() < deadline:
        if proc.returncode is not None and not group_alive(pgid):
            break
        await asyncio.sleep(poll_s)
    if group_alive(pgid):
        logger.warning("process group %d still running %gs after SIGTERM: SIGKILL", pgid, grace_s)
        signal_group(pgid, signal.SIGKILL)
    return await proc.wait()


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
    ) -> None:
        """Create the activities.

        Args:
            factory_id: this factory's id (named in reasons and the `agent_started` signal).
            reporter: where log chunks and artifacts go.
            workspace_root: jobs with a relative `cwd` run under
                `<workspace_root>/<productId>/<jobId>/`.
            log_chunk_interval_s: how often streamed log text is sent.
            stop_grace_s: SIGTERM -> SIGKILL delay when an agent is stopped.
            engines: the engines this factory offers (default: every adapter).
            heartbeat_interval_s: how often the lease is heartbeated.
            max_log_artifact_bytes: a longer log is uploaded as its last this-many bytes.
        """
        self.factory_id = factory_id
        self.reporter = reporter
        self.workspace_root = workspace_root.resolve()
        self.log_chunk_interval_s = log_chunk_interval_s
        self.stop_grace_s = stop_grace_s
        self.engines: Mapping[str, Engine] = dict(ENGINES if engines is None else engines)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_log_artifact_bytes = max_log_artifact_bytes

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.run_agent]

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
        try:
            workdir, job_root = self._workdir(inp)
            scratch = job_root / ".gigafactory" / f"epoch-{inp.epoch}"
            scratch.mkdir(parents=True, exist_ok=True)
        except _Refused as refused:
            return _early_failure(started_at, str(refused), inp.checkpoint)
        except OSError as err:
            return _early_failure(
                started_at,
                f"cannot prepare the workspace on factory {self.factory_id}: {err}",
                inp.checkpoint,
            )
        checkpoint = self._resume_from(inp)
        try:
            command = engine.build_command(spec, workdir, checkpoint, scratch=scratch)
        except (ValueError, OSError) as err:
            return _early_failure(
                started_at, f"engine {engine.name} cannot run this job: {err}", checkpoint
            )
        run = _AgentRun(self, inp, engine, command, workdir, scratch, checkpoint, started_at)
        return await run.execute()

    def _workdir(self, inp: RunAgentInput) -> tuple[Path, Path]:
        """The agent's working directory (created when relative) and the job's own folder."""
        for segment in (inp.product_id, inp.job_id):
            if segment in ("", ".", "..") or "/" in segment or "\\" in segment:
                raise _Refused(f"cannot make a workspace for job id {segment!r}")
        job_root = self.workspace_root / inp.product_id / inp.job_id
        cwd = Path(inp.spec.cwd).expanduser()
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
        self.progress: dict[str, Any] = dict(checkpoint or {})
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
        self.heartbeat()  # the lease is held before the agent starts
        try:
            self.log_file = self.log_path.open("wb")
        except OSError as err:
            return self._failure(f"cannot write the log on factory {self.owner.factory_id}: {err}")
        argv = self.command.argv
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.workdir,
                env=self._env(),
                stdin=asyncio.subprocess.DEVNULL
                if self.command.stdin is None
                else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Its own process group, so the agent and all it spawns stop together.
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
            signal_group(self.proc.pid, signal.SIGKILL)
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
        if group_alive(self.proc.pid):
            # The job is over when its agent exits: what it left running is stopped too.
            logger.info("%s: agent exited, stopping the processes it left behind", self.label)
            await stop_process_group(self.proc, self.grace_s)
        if code == 0:
            return await self._finish(RunOutcome.SUCCEEDED, None, code)
        return await self._finish(RunOutcome.FAILED, self._exit_reason(code), code)

    async def _on_timeout(self, timeout_s: float) -> RunAgentResult:
        logger.warning("%s: timed out after %gs, stopping the agent", self.label, timeout_s)
        code = await stop_process_group(self.proc, self.grace_s)
        return await self._finish(
            RunOutcome.TIMED_OUT, f"timed out after {format_duration(timeout_s)}", code
        )

    async def _on_cancel(
        self, details: activity.ActivityCancellationDetails | None
    ) -> RunAgentResult:
        shutdown = details is not None and details.worker_shutdown and not details.cancel_requested
        logger.info("%s: cancellation received (%s), stopping the agent", self.label, details)
        code = await stop_process_group(self.proc, self.grace_s)
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

    async def _finish(
        self, outcome: RunOutcome, reason: str | None, returncode: int | None
    ) -> RunAgentResult:
        """Drain the output, send the last chunk, upload the log, compute the cost."""
        await asyncio.wait({self.pump}, timeout=DRAIN_TIMEOUT_S)
        if not self.pump.done():
            logger.warning("%s: output still open %gs after exit", self.label, DRAIN_TIMEOUT_S)
            self.pump.cancel()
        await self._stop_flusher()
        await self._flush()
        log_text, artifact_id = await self._upload_log()
        cost, estimated = self._cost(log_text)
        await asyncio.wait({self.announcer}, timeout=ANNOUNCE_TIMEOUT_S)
        result = RunAgentResult(
            outcome=outcome,
            exit_code=_exit_code(returncode),
            cost_usd=cost,
            cost_estimated=estimated,
            reason=reason,
            started_at=self.started_at,
            finished_at=_utcnow(),
            checkpoint=dict(self.progress) or None,
            artifacts=[artifact_id] if artifact_id else [],
        )
        logger.info(
            "%s: %s (exit code %s, cost $%g%s)%s",
            self.label,
            outcome.value,
            result.exit_code,
            cost,
            " estimated" if estimated else "",
            f": {reason}" if reason else "",
        )
        return result

    async def _cleanup(self) -> None:
        """Whatever happened, no agent process and no helper task outlives the activity."""
        if group_alive(self.proc.pid):
            signal_group(self.proc.pid, signal.SIGKILL)
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
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIXES)}
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

    def _cost(self, log_text: str) -> tuple[float, bool]:
        """(cost, estimated): the agent's own figure, else the job's estimate, else 0."""
        try:
            parsed = self.engine.parse_cost(log_text)
        except Exception:
            logger.exception("%s: %s could not parse its cost", self.label, self.engine.name)
            parsed = None
        if parsed is not None:
            return parsed, False
        estimate = self.inp.spec.estimated_cost_usd
        if estimate is not None:
            return estimate, True
        return 0.0, False

    async def _announce(self) -> None:
        """Signal `agent_started` to the job's workflow (it moves the job to `running`)."""
        info = activity.info()
        if not info.workflow_id:
            return
        try:
            client = activity.client()
        except RuntimeError:
            logger.debug("%s: no Temporal client, agent_started not signalled", self.label)
            return
        try:
            await client.get_workflow_handle(info.workflow_id).signal(
                SIGNAL_AGENT_STARTED,
                AgentStarted(epoch=self.inp.epoch, factory_id=self.owner.factory_id, at=_utcnow()),
            )
        except Exception as err:
            logger.warning("%s: could not signal agent_started: %s", self.label, err)

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

    async def _flush(self) -> None:
        """Send the buffered text as the next chunk; on failure keep it for the next try."""
        if not self.pending and not self.dropped_chars:
            return
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
                self.inp.job_id, self.inp.product_id, self.inp.epoch, seq, text
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
            return
        self.log_seq = seq

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
        try:
            artifact_id = await self.owner.reporter.upload_artifact(
                self.inp.job_id,
                self.inp.product_id,
                self.inp.epoch,
                LOG_ARTIFACT,
                data,
                LOG_CONTENT_TYPE,
            )
        except Fenced:
            raise
        except Exception as err:
            logger.warning("%s: %s not uploaded: %s", self.label, LOG_ARTIFACT, err)
            artifact_id = None
        return data.decode("utf-8", errors="replace"), artifact_id

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
