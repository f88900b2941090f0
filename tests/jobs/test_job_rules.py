"""The JobWorkflow's pure rules: attempt verdicts, giving up, children, progress."""

from __future__ import annotations

import pytest

from gigafactory.contracts import JobTiming
from gigafactory.job_rules import (
    FailureKind,
    child_stage,
    children_summary,
    classify_failure,
    dispatch_timeout_s,
    gives_up,
    progress_of,
    stage_after_run,
    stage_label,
)
from gigafactory.models import ChildSpec, JobSpec, RunOutcome, Stage, WaitReason

TIMING = JobTiming(lease_heartbeat_timeout_s=15, dispatch_timeout_s=30, max_lost_attempts=3)


@pytest.mark.parametrize(
    ("kind", "outcome", "requeue", "unresponsive", "words"),
    [
        (FailureKind.HEARTBEAT_TIMEOUT, RunOutcome.LOST, True, True, "lease of 15s expired"),
        (FailureKind.DISPATCH_TIMEOUT, RunOutcome.LOST, True, True, "within 30s"),
        (FailureKind.RUN_TIMEOUT, RunOutcome.TIMED_OUT, False, False, "timed out after 90s"),
        (FailureKind.FENCED, RunOutcome.LOST, True, False, "stale lease: epoch 1"),
        (FailureKind.FACTORY_CANCELLED, RunOutcome.LOST, True, False, "cancelled by the factory"),
        (FailureKind.FACTORY_SHUTDOWN, RunOutcome.LOST, True, False, "f1 shut down"),
        (FailureKind.ERROR, RunOutcome.FAILED, False, False, "run_agent failed on f1: epoch 1"),
    ],
)
def test_each_failure_has_its_verdict(
    kind: FailureKind, outcome: RunOutcome, requeue: bool, unresponsive: bool, words: str
) -> None:
    verdict = classify_failure(kind, "f1", "epoch 1", TIMING, 90)
    assert (verdict.outcome, verdict.requeue) == (outcome, requeue)
    # Only a factory that stopped answering for the run is held suspect; one that answered
    # (fenced, cancelled, shutting down) or a job's own failure is not.
    assert verdict.factory_unresponsive is unresponsive
    assert words in verdict.reason


def test_a_job_gives_up_after_its_lost_attempts() -> None:
    assert [gives_up(n, TIMING) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_after_a_run_that_returned() -> None:
    assert stage_after_run(RunOutcome.SUCCEEDED, None).stage == Stage.SUCCEEDED
    failed = stage_after_run(RunOutcome.FAILED, "exit code 2: boom")
    assert (failed.stage, failed.reason) == (Stage.FAILED, "exit code 2: boom")
    assert stage_after_run(RunOutcome.TIMED_OUT, None).reason == "timed_out"
    assert stage_after_run(RunOutcome.CANCELLED, "x").stage is None


def test_a_preemptor_waits_for_its_victims_grace() -> None:
    assert dispatch_timeout_s(TIMING, evicting=False, victim_grace_s=10) == 30
    assert dispatch_timeout_s(TIMING, evicting=True, victim_grace_s=10) == 30 + 20 + 30


def test_a_childs_end_as_its_parent_counts_it() -> None:
    assert child_stage(Stage.SUCCEEDED, cancelled=False) == Stage.SUCCEEDED
    assert child_stage(Stage.SHIPPED, cancelled=False) == Stage.SHIPPED
    assert child_stage(Stage.RUNNING, cancelled=False) == Stage.FAILED
    assert child_stage(None, cancelled=True) == Stage.CANCELLED
    assert child_stage(None, cancelled=False) == Stage.FAILED


def test_children_summary_in_child_order() -> None:
    spec = JobSpec(engine="sim", prompt="p")
    children = [ChildSpec(id=c, spec=spec) for c in "abcd"]
    stages = {"a": Stage.SUCCEEDED, "b": Stage.FAILED, "c": Stage.SUCCEEDED}
    assert children_summary(children, stages) == (
        "children done: 2 succeeded, 1 failed, 1 not started"
    )


def test_progress_from_a_heartbeat_or_a_farewell() -> None:
    beat = {"epoch": 2, "logSeq": 7, "progress": {"sessionId": "s1", "elapsedS": 3}}
    assert progress_of([beat]) == {"sessionId": "s1", "elapsedS": 3}
    assert progress_of([{"sessionId": "s1"}]) == {"sessionId": "s1"}
    assert progress_of([{"epoch": 2, "progress": {}}]) is None
    assert progress_of([]) is None and progress_of(["text"]) is None


def test_stage_labels() -> None:
    assert stage_label(Stage.WAITING, WaitReason.CAPACITY) == "waiting(capacity)"
    assert stage_label(Stage.RUNNING, None) == "running"
