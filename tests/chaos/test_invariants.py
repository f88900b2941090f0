"""Each invariant of a chaos run, on hand-made evidence that keeps it and that breaks it."""

from __future__ import annotations

import json
from dataclasses import replace

from launch.chaos.evidence import factory_reports
from launch.chaos.invariants import (
    capacity_exceeded,
    check_all,
    dollars_counted_twice,
    double_successes,
    jobs_lost,
    jobs_not_succeeded,
    jobs_stuck,
    lock_overlaps,
    stale_reports_fenced,
)
from launch.chaos.records import (
    Evidence,
    FencedReport,
    JobRecord,
    RunRecord,
    SimInterval,
    SpendEntry,
    intervals_from_trace,
)


def sim(
    job: str, epoch: int, factory: str, start: float, end: float, usd: float = 0.1
) -> SimInterval:
    return SimInterval(job, epoch, factory, hash((job, epoch)) % 10_000, start, end, "done", usd)


def clean() -> Evidence:
    """Two jobs under one lock, one after the other on one factory; j2 was lost once and
    re-run; a zombie's report was fenced; every cent once."""
    j1 = JobRecord(
        "j1", "p", "succeeded", "COMPLETED", 0.1, "L", runs=(RunRecord(1, "f1", "succeeded", 0.1),)
    )
    j2 = JobRecord(
        "j2", "p", "succeeded", "COMPLETED", 0.1, "L",
        runs=(RunRecord(1, "f2", "lost", 0.0), RunRecord(2, "f1", "succeeded", 0.1)),
        fenced=(FencedReport(1, "f2", 10.0),),
    )  # fmt: skip
    return Evidence(
        accepted=["j1", "j2"],
        jobs={"j1": j1, "j2": j2},
        spend=[
            SpendEntry("j1.1", "j1", "p", 0.1, False),
            SpendEntry("j2.2", "j2", "p", 0.1, False),
        ],
        controller_spend={"p": 0.2},
        intervals=[
            sim("j1", 1, "f1", 0.0, 1.0),
            SimInterval("j2", 1, "f2", 99, 1.0, 1.5, None, None),  # killed: no stop record
            sim("j2", 2, "f1", 2.0, 3.0),
        ],
        slots={"f1": 1, "f2": 1},
        stale_answered={("j2", 1): 1},
        abandoned={},
        locks={"j1": "L", "j2": "L"},
    )


def test_clean_evidence_keeps_every_invariant() -> None:
    checks = check_all(clean())
    assert [c.name for c in checks if not c.ok] == []
    assert len(checks) == 8


def test_a_job_missing_from_the_store_or_from_temporal_is_lost() -> None:
    ev = clean()
    ev.accepted.append("j3")
    ev.jobs["j3"] = JobRecord("j3", "", None, None)
    ev.jobs["j2"] = replace(ev.jobs["j2"], workflow_status=None)
    assert sorted(jobs_lost(ev)) == ["j2", "j3"]
    assert jobs_stuck(ev) == []  # a job nobody has is lost, not stuck


def test_a_job_not_terminal_or_whose_workflow_runs_is_stuck() -> None:
    ev = clean()
    ev.jobs["j1"] = replace(ev.jobs["j1"], stage="running")
    ev.jobs["j2"] = replace(ev.jobs["j2"], workflow_status="RUNNING")
    assert sorted(jobs_stuck(ev)) == ["j1", "j2"]


def test_a_failed_job_is_not_succeeded() -> None:
    ev = clean()
    ev.jobs["j1"] = replace(ev.jobs["j1"], stage="failed", stage_reason="agent exited 3")
    ev.jobs["j2"] = replace(ev.jobs["j2"], stage="cancelled")
    assert sorted(jobs_not_succeeded(ev)) == [
        "j1 (failed: agent exited 3)",
        "j2 (cancelled: no reason recorded)",
    ]


def test_two_successful_runs_of_one_job_are_found() -> None:
    ev = clean()
    j2 = ev.jobs["j2"]
    ev.jobs["j2"] = replace(j2, runs=(RunRecord(1, "f2", "succeeded", 0.0), *j2.runs[1:]))
    assert double_successes(ev) == ["j2"]


def test_a_run_in_the_ledger_twice_over_is_dollars_counted_twice() -> None:
    ev = clean()
    # The ledger says more than the agent printed for that run.
    ev.spend[0] = SpendEntry("j1.1", "j1", "p", 0.3, False)
    dollars, where = dollars_counted_twice(ev)
    assert dollars > 0.19 and "j1" in where


def test_a_controller_counting_a_run_twice_is_dollars_counted_twice() -> None:
    ev = clean()
    ev.controller_spend["p"] = 0.3
    dollars, where = dollars_counted_twice(ev)
    assert round(dollars, 6) == 0.1 and where == ["budget:p"]


def test_a_job_cost_above_its_runs_is_dollars_counted_twice_but_an_estimate_is_not() -> None:
    ev = clean()
    ev.jobs["j1"] = replace(ev.jobs["j1"], cost_usd=0.2)
    assert dollars_counted_twice(ev) == (0.1, ["j1"])
    ev = clean()
    # An estimate for the killed run (its agent printed no cost) is no second count.
    ev.spend.append(SpendEntry("j2.1", "j2", "p", 0.05, True))
    ev.jobs["j2"] = replace(
        ev.jobs["j2"], runs=(RunRecord(1, "f2", "lost", 0.05), ev.jobs["j2"].runs[1])
    )
    ev.controller_spend["p"] = 0.25
    assert dollars_counted_twice(ev) == (0.0, [])


def test_more_agents_than_slots_on_a_factory_is_found_but_a_hand_off_is_not() -> None:
    ev = clean()
    ev.intervals.append(sim("j3", 1, "f1", 3.0, 4.0))  # starts as j2 ends: a hand-off
    assert capacity_exceeded(ev) == []
    ev.intervals.append(sim("j4", 1, "f1", 3.5, 4.5))
    assert capacity_exceeded(ev) == ["f1@j4"]


def test_two_jobs_of_one_lock_running_at_once_overlap_but_one_jobs_two_runs_do_not() -> None:
    ev = clean()
    ev.intervals.append(sim("j2", 3, "f2", 2.5, 3.5))  # j2 twice at once: not a lock overlap
    assert lock_overlaps(ev) == []
    ev.intervals.append(sim("j1", 2, "f2", 2.9, 3.2))
    # j1 overlaps both of j2's runs (2.0-3.0 and 2.5-3.5).
    assert lock_overlaps(ev) == ["j2/j1", "j2/j1"]


def test_stale_reports_sent_must_be_the_ones_fenced() -> None:
    assert stale_reports_fenced(clean()) == (1, 1, [])
    ev = clean()
    ev.stale_answered[("j1", 1)] = 1  # a 409 the store has no fenced event for
    assert stale_reports_fenced(ev)[2] == ["j1@1"]
    ev = clean()
    twice = (FencedReport(1, "f2", 10.0), FencedReport(1, "f2", 11.0))
    ev.jobs["j2"] = replace(ev.jobs["j2"], fenced=twice)  # fenced twice, sent once
    assert stale_reports_fenced(ev) == (1, 2, ["j2@1"])
    ev.abandoned[("j2", 1)] = 1  # ... unless another report was given up in flight
    assert stale_reports_fenced(ev) == (2, 2, [])
    ev.abandoned.clear()
    ev.kills.append(("f2", 12.5))  # ... or its factory was killed before it read the answer
    assert stale_reports_fenced(ev) == (2, 2, [])
    ev.kills[0] = ("f2", 13.5)  # not that soon after
    assert stale_reports_fenced(ev) == (1, 2, ["j2@1"])


def test_the_trace_becomes_intervals_ending_at_the_stop_or_the_last_tick() -> None:
    def rec(event: str, pid: int, at: float, **extra: object) -> str:
        return json.dumps({"event": event, "job": "j", "epoch": 1, "factory": "f", "pid": pid,
                           "at": at, **extra})  # fmt: skip

    lines = [
        rec("start", 1, 0.0),
        rec("start", 2, 0.5),
        rec("tick", 1, 0.5),
        '{"event": "tick", "pid": 2, "at"',  # torn
        rec("tick", 2, 1.0),
        rec("stop", 1, 1.2, how="done", costUsd=0.3),
        rec("start", 2, 5.0),  # pid 2 reused: the first process 2 died without a stop
        rec("tick", 2, 5.5),
    ]
    intervals = sorted(intervals_from_trace(lines), key=lambda s: s.start)
    assert [(s.pid, s.start, s.end, s.how, s.cost_usd) for s in intervals] == [
        (1, 0.0, 1.2, "done", 0.3),
        (2, 0.5, 1.0, None, None),
        (2, 5.0, 5.5, None, None),
    ]


def test_factory_logs_give_fenced_and_abandoned_reports_by_job_and_epoch() -> None:
    lines = [
        "x WARNING activities.reporter: stale report fenced job=a.b epoch=2: log chunk 1: ...",
        "x WARNING activities.reporter: stale report fenced job=a.b epoch=2: start of job a.b",
        "x INFO activities.reporter: report abandoned in flight job=c epoch=1: stop of job c",
        "x INFO something else entirely",
    ]
    assert factory_reports(lines) == ({("a.b", 2): 2}, {("c", 1): 1})
