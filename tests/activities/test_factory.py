"""run_agent under ActivityEnvironment: real subprocesses, a recording reporter."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.engines.base import Engine, EngineCommand
from activities.engines.builtin import ShellEngine
from activities.engines.registry import ENGINES
from activities.factory import LOG_ARTIFACT
from gigafactory.contracts import AgentCheckpoint
from gigafactory.durations import format_duration
from gigafactory.models import JobSpec, RunOutcome
from tests.activities.conftest import Factory, job, pid_running, wait_for

CHILD_SCRIPT = """
sleep 30 &
echo $! > "{pidfile}"
echo 'GF-PROGRESS {{"step": 2}}'
echo child started
wait
"""


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


async def test_shell_success_streams_the_log_and_uploads_agent_log(factory: Factory) -> None:
    result = await factory.run(job("shell", "echo hello from a factory\necho oops >&2"))

    assert result.outcome == RunOutcome.SUCCEEDED
    assert result.exit_code == 0
    assert result.reason is None
    assert (result.cost_usd, result.cost_estimated) == (0.0, False)
    streamed = factory.reporter.log_text("j1", 1)
    assert "hello from a factory" in streamed
    assert "oops" in streamed, "stderr is merged into the log"
    artifact = factory.reporter.artifact("j1", LOG_ARTIFACT)
    assert artifact is not None
    assert (artifact.epoch, artifact.product_id, artifact.content_type) == (1, "p1", "text/plain")
    assert artifact.data.decode() == streamed
    assert result.artifacts == [artifact.id]
    local = factory.workspace / "p1" / "j1" / ".gigafactory" / "epoch-1" / LOG_ARTIFACT
    assert local.read_text() == streamed
    assert result.started_at <= result.finished_at


async def test_shell_failure_names_the_exit_code_and_last_line(factory: Factory) -> None:
    result = await factory.run(job("shell", "echo about to fail\nexit 3"))

    assert result.outcome == RunOutcome.FAILED
    assert result.exit_code == 3
    assert result.reason == "exit code 3: about to fail"


async def test_log_chunks_have_increasing_seq_and_heartbeats_carry_the_epoch(
    factory: Factory,
) -> None:
    script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.1; done"
    result = await factory.run(job("shell", script, epoch=7))

    assert result.outcome == RunOutcome.SUCCEEDED
    chunks = factory.reporter.log_chunks("j1", 7)
    assert len(chunks) >= 2
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert (
        "".join(c.text for c in chunks).split()
        == " ".join(f"line {i}" for i in range(1, 7)).split()
    )
    assert len(factory.beats) >= 3
    assert all(isinstance(b, AgentCheckpoint) and b.epoch == 7 for b in factory.beats)
    seqs = [b.log_seq for b in factory.beats]
    assert seqs == sorted(seqs) and seqs[-1] >= 1


async def test_sim_success_takes_its_duration_and_reports_its_cost(factory: Factory) -> None:
    began = time.monotonic()
    result = await factory.run(job("sim", params={"durationS": 0.6, "costUsd": 0.25}))

    assert time.monotonic() - began >= 0.6
    assert result.outcome == RunOutcome.SUCCEEDED
    assert result.exit_code == 0
    assert result.cost_usd == pytest.approx(0.25)
    assert result.cost_estimated is False
    assert result.checkpoint == {"elapsedS": 0.6}
    assert "GF-PROGRESS" in factory.reporter.log_text("j1")


async def test_sim_failure_outcome_and_exit_code(factory: Factory) -> None:
    result = await factory.run(
        job("sim", params={"durationS": 0.1, "outcome": "failed", "exitCode": 4, "costUsd": 0.1})
    )

    assert result.outcome == RunOutcome.FAILED
    assert result.exit_code == 4
    assert result.reason is not None and result.reason.startswith("exit code 4: sim agent")
    assert result.cost_usd == pytest.approx(0.1)


async def test_sim_resumes_from_the_checkpoint(factory: Factory) -> None:
    began = time.monotonic()
    result = await factory.run(
        job(
            "sim",
            params={"durationS": 2, "costUsd": 1.0},
            checkpoint={"elapsedS": 1.6},
        )
    )

    assert time.monotonic() - began < 1.4, "only the remaining 0.4 s of work was done"
    assert result.outcome == RunOutcome.SUCCEEDED
    assert result.checkpoint == {"elapsedS": 2.0}
    assert result.cost_usd == pytest.approx(0.2), "cost accrues with the work done in this run"
    assert "starting at 1.6s of 2s" in factory.reporter.log_text("j1")
    assert factory.beats[0].progress == {"elapsedS": 1.6}, "the first heartbeat already resumes"


async def test_timeout_kills_the_process_group(factory: Factory, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    began = time.monotonic()
    result = await factory.run(job("shell", CHILD_SCRIPT.format(pidfile=pidfile), timeout_s=0.5))

    assert time.monotonic() - began < 5
    assert result.outcome == RunOutcome.TIMED_OUT
    assert result.reason == "timed out after 0.5s"
    assert result.exit_code == 143
    assert not pid_running(read_pid(pidfile)), "the agent's child was stopped too"
    assert factory.reporter.artifact("j1", LOG_ARTIFACT) is not None


async def test_timeout_reason_uses_the_spec_duration_format() -> None:
    spec = JobSpec(engine="shell", prompt="true", timeout="10h")

    assert f"timed out after {format_duration(spec.timeout_s)}" == "timed out after 10h"


async def test_an_agent_ignoring_sigterm_is_killed_after_the_grace(
    make_factory: Callable[..., Factory],
) -> None:
    factory = make_factory(stop_grace_s=0.3)
    began = time.monotonic()
    result = await factory.run(
        job("sim", params={"durationS": 2, "ignoreSigterm": True}, timeout_s=0.4)
    )

    assert time.monotonic() - began < 1.8
    assert result.outcome == RunOutcome.TIMED_OUT
    assert result.exit_code == 137  # 128 + SIGKILL


async def test_cancel_stops_the_process_group_and_returns_the_checkpoint(
    factory: Factory, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    task = factory.start(job("shell", CHILD_SCRIPT.format(pidfile=pidfile)))
    await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    child = read_pid(pidfile)
    await wait_for(lambda: factory.progress().get("step") == 2)
    assert pid_running(child)

    factory.env.cancel()
    result = await task

    assert result.outcome == RunOutcome.CANCELLED
    assert result.reason == "cancelled: the agent was stopped"
    assert result.checkpoint == {"step": 2}
    assert not pid_running(child)
    artifact = factory.reporter.artifact("j1", LOG_ARTIFACT)
    assert artifact is not None and b"child started" in artifact.data


async def test_cancelled_sim_checkpoints_its_progress_and_partial_cost(factory: Factory) -> None:
    task = factory.start(job("sim", params={"durationS": 2, "costUsd": 1.0}))
    await wait_for(lambda: factory.progress().get("elapsedS", 0) >= 0.5)

    factory.env.cancel()
    result = await task

    assert result.outcome == RunOutcome.CANCELLED
    assert result.exit_code == 143
    assert result.checkpoint is not None
    assert 0.5 <= result.checkpoint["elapsedS"] < 2
    assert 0 < result.cost_usd < 1.0
    assert "stopped by SIGTERM" in factory.reporter.log_text("j1")


async def test_worker_shutdown_fails_with_factory_shutdown(factory: Factory) -> None:
    task = factory.start(job("sim", params={"durationS": 2}))
    await wait_for(lambda: "elapsedS" in factory.progress())

    factory.env.cancel(ActivityCancellationDetails(worker_shutdown=True))
    with pytest.raises(ApplicationError) as caught:
        await task

    assert caught.value.type == "FactoryShutdown"
    assert caught.value.non_retryable
    assert factory.reporter.artifact("j1", LOG_ARTIFACT) is not None


async def test_a_fenced_report_kills_the_agent_and_fails_non_retryable(
    factory: Factory, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    factory.reporter.current_epoch = 2  # a newer attempt owns the job
    began = time.monotonic()
    with pytest.raises(ApplicationError) as caught:
        await factory.run(job("shell", CHILD_SCRIPT.format(pidfile=pidfile), epoch=1))

    assert time.monotonic() - began < 5
    assert caught.value.type == "Fenced"
    assert caught.value.non_retryable
    assert "fenced" in caught.value.message
    await wait_for(lambda: not pid_running(read_pid(pidfile)), timeout=2)
    assert factory.reporter.artifact("j1", LOG_ARTIFACT) is None


async def test_fenced_mid_run(factory: Factory) -> None:
    task = factory.start(job("sim", params={"durationS": 2}, epoch=3))
    await wait_for(lambda: factory.reporter.log_chunks("j1", 3) != [])
    factory.reporter.current_epochs["j1"] = 4

    with pytest.raises(ApplicationError) as caught:
        await task
    assert caught.value.type == "Fenced"


async def test_missing_absolute_cwd_fails_with_a_reason(factory: Factory) -> None:
    result = await factory.run(job("shell", "true", cwd="/nonexistent/x"))

    assert result.outcome == RunOutcome.FAILED
    assert result.reason == "working directory /nonexistent/x does not exist on factory f1"


async def test_relative_cwd_is_made_under_the_job_workspace(factory: Factory) -> None:
    result = await factory.run(job("shell", "pwd", cwd="sub/dir"))

    assert result.outcome == RunOutcome.SUCCEEDED
    expected = (factory.workspace / "p1" / "j1" / "sub" / "dir").resolve()
    assert expected.is_dir()
    assert str(expected) in factory.reporter.log_text("j1")


async def test_absolute_cwd_is_used_as_is(factory: Factory, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    result = await factory.run(job("shell", "pwd > where.txt", cwd=str(repo)))

    assert result.outcome == RunOutcome.SUCCEEDED
    assert (repo / "where.txt").read_text().strip() == str(repo)


async def test_a_cwd_leaving_the_workspace_is_refused(factory: Factory) -> None:
    result = await factory.run(job("shell", "true", cwd="../../elsewhere"))

    assert result.outcome == RunOutcome.FAILED
    assert result.reason is not None and "leaves the job's workspace" in result.reason


async def test_an_engine_the_factory_does_not_offer_fails_clearly(
    make_factory: Callable[..., Factory],
) -> None:
    factory = make_factory(engines={"shell": ENGINES["shell"], "sim": ENGINES["sim"]})
    result = await factory.run(job("codex", "do it"))

    assert result.outcome == RunOutcome.FAILED
    assert result.reason == "engine codex is not available on factory f1 (it offers: shell, sim)"


async def test_bad_sim_params_fail_without_starting(factory: Factory) -> None:
    result = await factory.run(job("sim", params={"durationS": "long"}))

    assert result.outcome == RunOutcome.FAILED
    assert result.reason is not None
    assert result.reason.startswith("engine sim cannot run this job: sim param durationS")


class _MissingBinary(Engine):
    name = "shell"

    def build_command(
        self, spec: JobSpec, workdir: Path, checkpoint: Any, *, scratch: Path | None = None
    ) -> EngineCommand:
        return EngineCommand(argv=["/nonexistent/agent-cli", "-p", spec.prompt])


async def test_an_executable_that_cannot_start_fails_clearly(
    make_factory: Callable[..., Factory],
) -> None:
    factory = make_factory(engines={"shell": _MissingBinary()})
    result = await factory.run(job("shell", "x"))

    assert result.outcome == RunOutcome.FAILED
    assert result.reason is not None
    assert result.reason.startswith("cannot start shell (/nonexistent/agent-cli)")


class _NoCostShell(ShellEngine):
    def parse_cost(self, log_text: str) -> float | None:
        return None


async def test_without_a_reported_cost_the_estimate_is_used_and_marked(
    make_factory: Callable[..., Factory],
) -> None:
    factory = make_factory(engines={"shell": _NoCostShell()})
    estimated = await factory.run(job("shell", "true", estimated_cost_usd=0.4))
    nothing = await factory.run(job("shell", "true", job_id="j2"))

    assert (estimated.cost_usd, estimated.cost_estimated) == (0.4, True)
    assert (nothing.cost_usd, nothing.cost_estimated) == (0.0, False)


async def test_the_agent_gets_job_context_but_not_factory_secrets(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_FACTORY_TOKEN", "secret-token")
    monkeypatch.setenv("TEMPORAL_API_KEY", "secret-key")
    script = (
        'echo "token=${FLEET_FACTORY_TOKEN:-absent} key=${TEMPORAL_API_KEY:-absent}"\n'
        'echo "job=$GIGAFACTORY_JOB_ID epoch=$GIGAFACTORY_EPOCH factory=$GIGAFACTORY_FACTORY_ID"'
    )
    await factory.run(job("shell", script, epoch=2))

    text = factory.reporter.log_text("j1")
    assert "token=absent key=absent" in text
    assert "job=j1 epoch=2 factory=f1" in text


async def test_the_agents_start_is_reported_to_the_control_plane(
    make_factory: Callable[..., Factory],
) -> None:
    factory = make_factory()
    await factory.run(job("shell", "true", epoch=5))
    assert factory.reporter.starts == [("j1", 5)]


async def test_a_retried_attempt_resumes_from_its_own_last_heartbeat(
    make_factory: Callable[..., Factory],
) -> None:
    env = ActivityEnvironment()
    beat = AgentCheckpoint(epoch=1, log_seq=3, progress={"elapsedS": 1.8})
    env.info = dataclasses.replace(
        env.default_info(), heartbeat_details=[beat.model_dump(mode="json", by_alias=True)]
    )
    factory = make_factory(env=env)
    began = time.monotonic()
    result = await factory.run(
        job("sim", params={"durationS": 2}, checkpoint={"elapsedS": 0.5}, epoch=1)
    )

    assert time.monotonic() - began < 1.2
    assert result.checkpoint == {"elapsedS": 2.0}
    assert "starting at 1.8s" in factory.reporter.log_text("j1")
