"""The pure budget rules of `gigafactory.budgets`: windows, admission, spend, pause/resume,
config changes, window rolls and wake order, plus properties over random sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from random import Random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gigafactory.budgets import (
    LEDGER_KEEP,
    AdmissionRequest,
    BudgetConfig,
    BudgetState,
    BudgetWindow,
    LedgerEntry,
    admit,
    admit_waiting,
    finish,
    new_budget_state,
    next_reset,
    pause,
    record_spend,
    remaining_usd,
    resume,
    roll_window,
    set_budget,
    validate_request,
    wake_order,
    window_start,
)
from gigafactory.models import Priority

NOW = datetime(2025, 3, 12, 15, 30, tzinfo=UTC)  # a Wednesday


def state(
    ceiling: float | None = 10.0, window: BudgetWindow = "none", now: datetime = NOW
) -> BudgetState:
    return new_budget_state("p1", BudgetConfig(ceiling_usd=ceiling, window=window), now)


def status(s: BudgetState) -> tuple[str, str | None]:
    """(status, paused reason), read afresh (mypy would narrow the attributes)."""
    return s.status, s.paused_reason


def req(job: str, estimate: float = 1.0, priority: Priority = Priority.NORMAL) -> AdmissionRequest:
    return AdmissionRequest(
        job_id=job,
        workflow_id=f"job-p1-{job}",
        priority=priority,
        estimate_usd=estimate,
        requested_at=NOW,
    )


def spend(run: str, job: str, usd: float) -> LedgerEntry:
    return LedgerEntry(run_id=run, job_id=job, usd=usd, at=NOW)


# --- windows ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("window", "start", "reset"),
    [
        ("day", datetime(2025, 3, 12, tzinfo=UTC), datetime(2025, 3, 13, tzinfo=UTC)),
        ("week", datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 3, 17, tzinfo=UTC)),
        ("month", datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)),
        ("none", None, None),
    ],
)
def test_window_bounds(
    window: BudgetWindow, start: datetime | None, reset: datetime | None
) -> None:
    assert window_start(window, NOW) == start
    assert next_reset(window, NOW) == reset


def test_window_bounds_are_utc_whatever_the_input_zone() -> None:
    tokyo = NOW.astimezone(ZoneInfo("Asia/Tokyo"))  # 00:30 on the 13th
    assert window_start("day", tokyo) == datetime(2025, 3, 12, tzinfo=UTC)
    assert window_start("day", NOW.replace(tzinfo=None)) == datetime(2025, 3, 12, tzinfo=UTC)
    assert next_reset("month", datetime(2025, 12, 31, 23, 59, tzinfo=UTC)) == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    # Exactly at a boundary the new window has begun.
    assert window_start("week", datetime(2025, 3, 17, tzinfo=UTC)) == datetime(
        2025, 3, 17, tzinfo=UTC
    )


# --- admission --------------------------------------------------------------------------------
def test_admit_under_the_ceiling_reserves_the_estimate() -> None:
    s = state()
    result = admit(s, req("a", 4.0), NOW)
    assert result.admitted and result.position is None
    assert s.reservations == {"a": 4.0} and s.reserved_usd == 4.0
    assert remaining_usd(s) == 6.0


def test_admit_over_the_ceiling_queues_with_the_numbers() -> None:
    s = state()
    s.spent_usd = 8.0
    assert admit(s, req("a", 1.5), NOW).admitted
    result = admit(s, req("b", 1.0), NOW)
    assert not result.admitted
    assert result.reason == (
        "budget: spent $8.00 + reserved $1.50 + estimate $1.00 would exceed the $10.00 ceiling"
    )
    assert result.position == 1
    assert [r.job_id for r in s.waiting] == ["b"]


def test_admit_is_idempotent_per_job() -> None:
    s = state()
    assert admit(s, req("a", 6.0), NOW).admitted
    again = admit(s, req("a", 6.0), NOW)
    assert again.admitted and again.reason == "already admitted"
    assert s.reserved_usd == 6.0
    assert not admit(s, req("b", 6.0), NOW).admitted
    assert not admit(s, req("b", 6.0), NOW).admitted
    assert [r.job_id for r in s.waiting] == ["b"]


def test_unlimited_admits_everything_and_still_tracks_reservations() -> None:
    s = state(ceiling=None)
    for i in range(5):
        assert admit(s, req(f"j{i}", 100.0), NOW).admitted
    assert s.reserved_usd == 500.0 and remaining_usd(s) is None


def test_estimate_alone_over_the_ceiling_says_so() -> None:
    result = admit(state(), req("a", 11.0), NOW)
    assert not result.admitted
    assert result.reason is not None and "raise the ceiling" in result.reason


def test_negative_estimate_is_rejected() -> None:
    with pytest.raises(ValueError, match="estimateUsd"):
        validate_request(req("a", -1.0))
    with pytest.raises(ValueError):
        admit(state(), req("a", float("nan")), NOW)


def test_position_follows_priority_then_arrival() -> None:
    s = state(ceiling=1.0)
    assert admit(s, req("run", 1.0), NOW).admitted
    assert admit(s, req("low", 1.0, Priority.LOW), NOW).position == 1
    assert admit(s, req("n1", 1.0), NOW).position == 1
    assert admit(s, req("n2", 1.0), NOW).position == 2
    assert admit(s, req("crit", 1.0, Priority.CRITICAL), NOW).position == 1


def test_float_rounding_does_not_refuse_a_fitting_estimate() -> None:
    s = state(ceiling=1.0)
    admitted = [admit(s, req(f"j{i}", 0.1), NOW).admitted for i in range(11)]
    assert admitted == [True] * 10 + [False]


# --- spend ------------------------------------------------------------------------------------
def test_record_spend_is_counted_once_and_releases_the_reservation() -> None:
    s = state()
    admit(s, req("a", 3.0), NOW)
    assert record_spend(s, spend("r1", "a", 2.5))
    assert s.spent_usd == 2.5 and s.reservations == {} and s.reserved_usd == 0.0
    assert not record_spend(s, spend("r1", "a", 2.5))
    assert s.spent_usd == 2.5 and len(s.ledger) == 1


def test_duplicate_does_not_release_a_newer_reservation() -> None:
    s = state()
    admit(s, req("a", 3.0), NOW)
    record_spend(s, spend("a:1", "a", 1.0))
    admit(s, req("a", 3.0), NOW)  # the job's next attempt
    assert not record_spend(s, spend("a:1", "a", 1.0))
    assert s.reservations == {"a": 3.0}


def test_crossing_the_ceiling_pauses_and_the_soft_threshold_alerts() -> None:
    s = state()
    record_spend(s, spend("r1", "a", 7.0))
    assert not s.soft_alerted and s.status == "active"
    record_spend(s, spend("r2", "a", 1.0))
    assert s.soft_alerted and s.status == "active"
    record_spend(s, spend("r3", "a", 2.5))
    assert s.status == "paused" and s.paused_reason == "ceiling"
    assert s.reason_text is not None and "ceiling $10.00 reached (spent $10.50)" in s.reason_text
    result = admit(s, req("b", 0.0), NOW)
    assert not result.admitted
    assert result.reason is not None and result.reason.startswith("product p1 paused: ceiling")


def test_ledger_keeps_the_last_entries_but_counts_every_run() -> None:
    s = state(ceiling=None)
    for i in range(LEDGER_KEEP + 10):
        record_spend(s, spend(f"r{i}", "a", 1.0))
    assert len(s.ledger) == LEDGER_KEEP and s.ledger[-1].run_id == f"r{LEDGER_KEEP + 9}"
    assert len(s.counted_runs) == LEDGER_KEEP + 10
    assert not record_spend(s, spend("r0", "a", 1.0))


def test_finish_releases_without_spend_and_leaves_the_queue() -> None:
    s = state(ceiling=2.0)
    admit(s, req("a", 2.0), NOW)
    admit(s, req("b", 2.0), NOW)
    assert finish(s, "a") and s.reserved_usd == 0.0 and s.spent_usd == 0.0
    assert finish(s, "b") and s.waiting == []
    assert not finish(s, "nobody")


# --- pause / resume / set_budget --------------------------------------------------------------
def test_manual_pause_blocks_and_resume_wakes_in_priority_order() -> None:
    s = state(ceiling=2.0)
    pause(s, "release freeze")
    r = admit(s, req("low", 1.0, Priority.LOW), NOW)
    assert not r.admitted and r.reason == "product p1 paused: release freeze"
    admit(s, req("normal", 1.0), NOW)
    admit(s, req("crit", 1.0, Priority.CRITICAL), NOW)
    assert wake_order(s) == []
    assert resume(s) and s.status == "active" and s.reason_text is None
    assert [r.job_id for r in wake_order(s)] == ["crit", "normal"]
    woken = admit_waiting(s)
    assert [r.job_id for r in woken] == ["crit", "normal"]
    assert [r.job_id for r in s.notify] == ["crit", "normal"]
    assert [r.job_id for r in s.waiting] == ["low"] and s.reserved_usd == 2.0


def test_resume_over_the_ceiling_stays_paused_and_says_raise_it() -> None:
    s = state()
    pause(s, "by hand")
    record_spend(s, spend("r1", "a", 12.0))
    assert s.paused_reason == "manual"  # the manual pause is kept
    assert not resume(s)
    assert status(s) == ("paused", "ceiling")
    assert s.reason_text is not None and "raise the ceiling" in s.reason_text


def test_raising_the_ceiling_lifts_a_ceiling_pause_but_not_a_manual_one() -> None:
    s = state()
    record_spend(s, spend("r1", "a", 10.0))
    assert s.paused_reason == "ceiling"
    set_budget(s, BudgetConfig(ceiling_usd=10.0), NOW)
    assert s.status == "paused"
    set_budget(s, BudgetConfig(ceiling_usd=20.0), NOW)
    assert status(s) == ("active", None) and not s.soft_alerted
    set_budget(s, BudgetConfig(ceiling_usd=5.0), NOW)
    assert status(s) == ("paused", "ceiling")
    pause(s, "hold")
    set_budget(s, BudgetConfig(ceiling_usd=None), NOW)
    assert status(s) == ("paused", "manual")
    assert resume(s)


def test_ceiling_zero_pauses_at_once() -> None:
    s = state(ceiling=0.0)
    assert s.paused_reason == "ceiling"


def test_changing_the_window_keeps_spent_and_sets_the_bounds() -> None:
    s = state()
    record_spend(s, spend("r1", "a", 3.0))
    set_budget(s, BudgetConfig(ceiling_usd=10.0, window="week"), NOW)
    assert s.spent_usd == 3.0
    assert s.window_started_at == datetime(2025, 3, 10, tzinfo=UTC)
    assert s.resets_at == datetime(2025, 3, 17, tzinfo=UTC)


# --- window roll ------------------------------------------------------------------------------
def test_roll_window_resets_spend_and_lifts_the_ceiling_pause() -> None:
    s = state(window="day")
    assert s.resets_at == datetime(2025, 3, 13, tzinfo=UTC)
    admit(s, req("running", 1.0), NOW)
    record_spend(s, spend("r1", "a", 10.0))
    admit(s, req("b", 1.0), NOW)
    assert s.status == "paused" and len(s.waiting) == 1
    assert not roll_window(s, s.resets_at - timedelta(microseconds=1))
    assert roll_window(s, datetime(2025, 3, 13, 0, 0, 1, tzinfo=UTC))
    assert s.spent_usd == 0.0 and s.ledger == [] and s.counted_runs == {}
    assert status(s) == ("active", None)
    assert s.window_started_at == datetime(2025, 3, 13, tzinfo=UTC)
    assert s.resets_at == datetime(2025, 3, 14, tzinfo=UTC)
    assert s.reservations == {"running": 1.0}  # still running: kept
    assert [r.job_id for r in admit_waiting(s)] == ["b"]


def test_roll_keeps_a_manual_pause_and_recognises_last_windows_runs() -> None:
    s = state(window="day")
    record_spend(s, spend("r1", "a", 1.0))
    pause(s, "hold")
    roll_window(s, datetime(2025, 3, 13, 1, tzinfo=UTC))
    assert s.paused_reason == "manual"
    assert not record_spend(s, spend("r1", "a", 1.0))  # a duplicate racing the reset
    assert record_spend(s, spend("late", "a", 2.0))  # never counted: counted now
    assert s.spent_usd == 2.0


def test_admit_rolls_a_due_window_itself() -> None:
    s = state(window="day")
    record_spend(s, spend("r1", "a", 10.0))
    assert admit(s, req("b", 1.0), datetime(2025, 3, 13, 0, 5, tzinfo=UTC)).admitted


# --- wake order -------------------------------------------------------------------------------
def test_wake_order_is_greedy_in_priority_then_fifo_order() -> None:
    s = state(ceiling=5.0)
    admit(s, req("hold", 5.0), NOW)
    for r in [
        req("n-big", 4.0),
        req("low", 1.0, Priority.LOW),
        req("n-small", 1.0),
        req("high", 3.0, Priority.HIGH),
    ]:
        admit(s, r, NOW)
    finish(s, "hold")
    # high (3) fits, n-big (4) does not fit the 2 left, n-small (1) does, then low (1).
    assert [r.job_id for r in wake_order(s)] == ["high", "n-small", "low"]
    assert len(s.waiting) == 4  # wake_order does not change the state


def test_queue_is_served_before_a_newcomer() -> None:
    s = state(ceiling=2.0)
    admit(s, req("a", 2.0), NOW)
    admit(s, req("queued", 2.0), NOW)
    s.reservations.clear()  # as if released without anybody serving the queue
    s.reserved_usd = 0.0
    assert not admit(s, req("newcomer", 2.0), NOW).admitted
    assert [r.job_id for r in s.notify] == ["queued"]


# --- properties -------------------------------------------------------------------------------
entries = st.lists(
    st.tuples(st.integers(0, 15), st.floats(0, 100, allow_nan=False)), min_size=0, max_size=40
)


@given(entries, st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_spent_is_the_sum_of_distinct_runs(raw: list[tuple[int, float]], rnd: Random) -> None:
    # One amount per run id (what a run cost does not change when it is reported again).
    amounts: dict[str, float] = {}
    for run, usd in raw:
        amounts.setdefault(f"r{run}", usd)
    reports = [spend(f"r{run}", "j", amounts[f"r{run}"]) for run, _ in raw]
    reports = reports + reports[: len(reports) // 2]  # duplicates
    rnd.shuffle(reports)
    s = state(ceiling=None)
    counted = [record_spend(s, e) for e in reports]
    assert sum(counted) == len(amounts)
    assert s.spent_usd == pytest.approx(sum(amounts.values()))


@given(
    st.floats(0, 50, allow_nan=False),
    st.lists(
        st.tuples(
            st.floats(0, 20, allow_nan=False),
            st.sampled_from(list(Priority)),
            st.sampled_from(["admit", "spend", "finish", "wake"]),
        ),
        max_size=60,
    ),
)
@settings(max_examples=200, deadline=None)
def test_admission_never_overcommits_the_ceiling(
    ceiling: float, ops: list[tuple[float, Priority, str]]
) -> None:
    s = state(ceiling=ceiling)
    for i, (amount, priority, op) in enumerate(ops):
        job = f"j{i % 7}"
        before = s.spent_usd
        if op == "admit":
            admit(s, req(job, amount, priority), NOW)
        elif op == "spend":
            # A run costs at most its reservation here, so only admission can overcommit.
            record_spend(s, spend(f"run{i}", job, min(amount, s.reservations.get(job, 0.0))))
        elif op == "finish":
            finish(s, job)
        else:
            admit_waiting(s)
        assert s.spent_usd >= before
        assert s.reserved_usd == pytest.approx(sum(s.reservations.values()))
        assert s.spent_usd + s.reserved_usd <= ceiling + 1e-6


def test_the_module_is_pure() -> None:
    """Importable in the workflow sandbox: no I/O, clock or randomness, only pydantic and
    the domain models besides the standard library."""
    import ast
    import sys
    from pathlib import Path

    import gigafactory.budgets

    tree = ast.parse(Path(gigafactory.budgets.__file__).read_text())
    modules = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name) or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    for module in modules:
        root = module.split(".")[0]
        assert root in sys.stdlib_module_names or module in {"pydantic", "gigafactory.models"}
        assert root not in {"os", "time", "random", "socket", "subprocess", "io", "logging"}
