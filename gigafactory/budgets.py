"""Per-product budgets: the pure rules behind the ProductControllerWorkflow.

No I/O, no clock (``now`` is always passed in), no randomness, no sets (their iteration
order depends on the process's hash seed, which a replaying worker need not share), so the
workflow sandbox imports this module and replays it deterministically. The functions
mutate the one :class:`BudgetState` they are given; the controller workflow owns it and
carries it across continue-as-new.

Money
    Amounts are US dollars as floats. Comparisons against the ceiling allow
    :data:`EPSILON` (a billionth of a dollar) so that ten $0.10 estimates fit a $1.00
    ceiling despite binary rounding.

Windows
    ``none`` never resets. ``day`` starts at midnight UTC, ``week`` on Monday 00:00 UTC,
    ``month`` on the 1st 00:00 UTC. :func:`roll_window` at or after ``resets_at`` starts a
    new window: spent back to 0, the ledger and the counted run ids cleared, a ceiling
    pause lifted (a manual pause stays), the soft alert re-armed. Reservations of jobs
    still running survive the reset: their money is not spent yet.

Admission (:func:`admit`)
    1. The window is rolled if due, and the queue is served first
       (:func:`admit_waiting`), so a newcomer never takes budget that a queued request
       ahead of it could use.
    2. A job that already holds a reservation is admitted again (idempotent retries).
    3. A paused product admits nothing: "product X paused: <why>".
    4. No ceiling: admitted. Otherwise admitted iff
       ``spent + reserved + estimate <= ceiling``; admission reserves the estimate
       until the job's spend is recorded or it finishes.
    5. A request that is not admitted is queued in ``waiting`` (deduplicated by job id: a
       repeated request keeps its first place) and the result tells its 1-based position
       in wake order and why, e.g. "budget: spent $8.00 + reserved $1.50 + estimate $1.00
       would exceed the $10.00 ceiling".

Waking (:func:`wake_order`, :func:`admit_waiting`)
    Waiting requests are considered by priority (critical first), then first come first
    served, and admitted greedily: each one that fits what is left is admitted, one that
    does not is skipped (it stays queued) and smaller ones behind it may still go. A large
    estimate therefore waits until reservations are released, the ceiling is raised or
    the window resets; it never blocks the queue. Admitted requests move to ``notify``
    (the outbox) until the controller has signalled their job workflow.

Spend (:func:`record_spend`)
    Idempotent per run id: a run id already counted in the current window, or counted in
    the previous window (a report racing the reset), is ignored and nothing else changes
    (not even the reservation: the job may hold a new one for its next attempt by then).
    A late report of a run never counted, even one that finished before the reset, is
    counted in the current window: money spent is never dropped. Spent only grows within
    a window. Recording releases the job's reservation. Reaching the ceiling
    (``spent >= ceiling``) pauses the product with reason ``ceiling``; reaching
    ``soft_threshold * ceiling`` sets ``soft_alerted`` (once per window).

Pause and resume
    :func:`pause` is manual (``paused_reason = "manual"``). :func:`resume` lifts a manual
    or ceiling pause only while spent is below the ceiling; otherwise the product stays
    paused with reason ``ceiling`` and a text telling the operator to raise the ceiling
    (or wait for the reset): resuming cannot spend money the ceiling forbids.
    :func:`set_budget` replaces the config: a ceiling raised above spent lifts a ceiling
    pause (never a manual one), a ceiling lowered to spent or below pauses, a changed
    window restarts the window bounds at ``now`` while keeping what was spent.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import Field

from gigafactory.models import CamelModel, Priority

__all__ = [
    "crosses_soft_threshold",
    "ledger_state",
    "overspent_usd",
    "EPSILON",
    "LEDGER_KEEP",
    "QUERY_BUDGET_STATE",
    "SIGNAL_BUDGET_ADMITTED",
    "SIGNAL_JOB_FINISHED",
    "SIGNAL_PAUSE",
    "SIGNAL_PREEMPT",
    "SIGNAL_RECORD_SPEND",
    "SIGNAL_RESUME",
    "SIGNAL_SET_BUDGET",
    "UPDATE_ADMIT",
    "AdmissionRequest",
    "AdmissionResult",
    "BudgetConfig",
    "BudgetState",
    "BudgetStatus",
    "BudgetWindow",
    "JobFinished",
    "LedgerEntry",
    "PauseReason",
    "PauseRequest",
    "PreemptRequest",
    "ProductControllerInput",
    "ResumeRequest",
    "admit",
    "admit_waiting",
    "finish",
    "new_budget_state",
    "next_reset",
    "pause",
    "record_spend",
    "remaining_usd",
    "resume",
    "roll_window",
    "set_budget",
    "validate_request",
    "wake_order",
    "window_start",
]

# --- names (the controller's update, signals and query; the job's signals) ---------------------
UPDATE_ADMIT = "admit"
SIGNAL_RECORD_SPEND = "record_spend"
SIGNAL_JOB_FINISHED = "job_finished"
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"
SIGNAL_SET_BUDGET = "set_budget"
SIGNAL_PREEMPT = "preempt"
QUERY_BUDGET_STATE = "state"
# Sent by the controller to a job workflow whose queued admission request got admitted.
SIGNAL_BUDGET_ADMITTED = "budget_admitted"

EPSILON = 1e-9
LEDGER_KEEP = 50

BudgetWindow = Literal["none", "day", "week", "month"]
BudgetStatus = Literal["active", "paused"]
PauseReason = Literal["manual", "ceiling"]


# --- models -----------------------------------------------------------------------------------
class BudgetConfig(CamelModel):
    """A product's budget: a ceiling in USD per window (None = unlimited)."""

    ceiling_usd: float | None = Field(default=None, ge=0)
    window: BudgetWindow = "none"
    soft_threshold: float = Field(default=0.8, ge=0, le=1)
    # The estimate of a job that gives none.
    default_estimate_usd: float = Field(default=0.0, ge=0)


class LedgerEntry(CamelModel):
    """What one run (attempt) of a job cost; `run_id` makes recording it idempotent."""

    run_id: str
    job_id: str
    usd: float = Field(ge=0)
    estimated: bool = False
    at: datetime


class AdmissionRequest(CamelModel):
    """A job asks to run: its estimate is reserved while it runs."""

    job_id: str
    workflow_id: str
    priority: Priority = Priority.NORMAL
    estimate_usd: float
    requested_at: datetime


class AdmissionResult(CamelModel):
    """The answer to an admission request (also the `budget_admitted` signal's payload)."""

    admitted: bool
    reason: str | None = None
    # 1-based place in wake order when queued; None when admitted.
    position: int | None = None
    job_id: str | None = None


class BudgetState(CamelModel):
    """Everything the controller knows about one product's budget."""

    product_id: str
    config: BudgetConfig = Field(default_factory=BudgetConfig)
    spent_usd: float = 0.0
    # Sum of `reservations`: estimates of admitted jobs whose spend is not recorded yet.
    reserved_usd: float = 0.0
    reservations: dict[str, float] = Field(default_factory=dict)
    status: BudgetStatus = "active"
    paused_reason: PauseReason | None = None
    reason_text: str | None = None
    window_started_at: datetime | None = None
    resets_at: datetime | None = None
    waiting: list[AdmissionRequest] = Field(default_factory=list)
    # Admitted from the queue; the job workflow has not been signalled yet.
    notify: list[AdmissionRequest] = Field(default_factory=list)
    # The current window's last LEDGER_KEEP entries (the store keeps the full ledger).
    ledger: list[LedgerEntry] = Field(default_factory=list)
    # Every run counted in the current window (run id -> usd), and the previous window's
    # run ids, so a duplicate report racing the reset is still recognised.
    counted_runs: dict[str, float] = Field(default_factory=dict)
    previous_window_runs: list[str] = Field(default_factory=list)
    soft_alerted: bool = False


class ProductControllerInput(CamelModel):
    """Start input of a ProductControllerWorkflow (also carried across continue-as-new)."""

    product_id: str
    # Used when `state` is None (a new controller); a carried state has its own config.
    config: BudgetConfig | None = None
    state: BudgetState | None = None
    # Continue-as-new once the history has this many events (carried over); the server's
    # own suggestion applies too.
    continue_as_new_after_events: int | None = None


class JobFinished(CamelModel):
    """Signal: the job reached a terminal stage; release its reservation and queue place."""

    job_id: str


class PauseRequest(CamelModel):
    """Signal: an operator pauses the product."""

    reason: str = "paused by operator"
    actor: str | None = None


class ResumeRequest(CamelModel):
    """Signal: an operator resumes the product."""

    actor: str | None = None


class PreemptRequest(CamelModel):
    """Signal: preempt `victim` for `preemptor`; the controller forwards it to the victim."""

    victim_job_id: str
    victim_workflow_id: str
    preemptor_job_id: str
    reason: str


# --- windows ----------------------------------------------------------------------------------
def _utc(now: datetime) -> datetime:
    """`now` in UTC; a naive datetime is taken to be UTC already."""
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def window_start(window: BudgetWindow, now: datetime) -> datetime | None:
    """When the window containing `now` started (UTC), or None for `none`.

    Args:
        window: The budget window.
        now: Any aware datetime (naive is taken as UTC).

    Returns:
        Midnight UTC of `now`'s day, the Monday of its week, or the 1st of its month.
    """
    if window == "none":
        return None
    midnight = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "day":
        return midnight
    if window == "week":
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def next_reset(window: BudgetWindow, now: datetime) -> datetime | None:
    """When the window containing `now` ends (UTC), or None for `none`."""
    start = window_start(window, now)
    if start is None:
        return None
    if window == "day":
        return start + timedelta(days=1)
    if window == "week":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


# --- helpers ----------------------------------------------------------------------------------
def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def _over_ceiling(state: BudgetState) -> bool:
    ceiling = state.config.ceiling_usd
    return ceiling is not None and state.spent_usd >= ceiling - EPSILON


def _sync_reserved(state: BudgetState) -> None:
    state.reserved_usd = max(0.0, sum(state.reservations.values()))


def _queue_order(waiting: list[AdmissionRequest]) -> list[AdmissionRequest]:
    # sorted() is stable: first come first served within one priority.
    return sorted(waiting, key=lambda r: -r.priority.rank)


def _set_active(state: BudgetState) -> None:
    state.status = "active"
    state.paused_reason = None
    state.reason_text = None


def _ceiling_text(state: BudgetState) -> str:
    ceiling = state.config.ceiling_usd or 0.0
    text = f"ceiling {_money(ceiling)} reached (spent {_money(state.spent_usd)})"
    if state.resets_at is not None:
        text += f"; the window resets at {state.resets_at:%Y-%m-%d %H:%M} UTC"
    return text


def _pause_for_ceiling(state: BudgetState) -> None:
    state.status = "paused"
    state.paused_reason = "ceiling"
    state.reason_text = _ceiling_text(state)


def _check_soft(state: BudgetState) -> None:
    ceiling = state.config.ceiling_usd
    state.soft_alerted = (
        ceiling is not None and state.spent_usd >= state.config.soft_threshold * ceiling - EPSILON
    )


def remaining_usd(state: BudgetState) -> float | None:
    """What is left to admit: ceiling - spent - reserved (never below 0, and 0 within
    EPSILON, so binary rounding never shows as a leftover); None if unlimited."""
    ceiling = state.config.ceiling_usd
    if ceiling is None:
        return None
    left = ceiling - state.spent_usd - state.reserved_usd
    return 0.0 if left <= EPSILON else left


def overspent_usd(state: BudgetState) -> float:
    """Spent beyond the ceiling (in-flight runs that cost more than their estimate)."""
    ceiling = state.config.ceiling_usd
    if ceiling is None:
        return 0.0
    over = state.spent_usd - ceiling
    return over if over > EPSILON else 0.0


def ledger_state(
    product_id: str, config: BudgetConfig, entries: list[LedgerEntry], now: datetime
) -> BudgetState:
    """The state a controller would hold after counting `entries` in the window of `now`.

    What the budget view shows before any controller runs (or with budgets off), and how
    a run is found to cross the soft threshold: the same rules as the controller (the
    EPSILON tolerance included), so the two never disagree.
    """
    state = new_budget_state(product_id, config, now)
    since = window_start(config.window, now)
    for entry in sorted(entries, key=lambda e: (_utc(e.at), e.run_id)):
        if since is None or _utc(entry.at) >= since:
            record_spend(state, entry)
    return state


def crosses_soft_threshold(state: BudgetState, entry: LedgerEntry) -> bool:
    """Whether counting `entry` on top of `state` crosses the soft threshold (it changes a
    copy, never `state`)."""
    if state.soft_alerted or state.config.ceiling_usd is None or entry.usd <= 0:
        return False
    after = state.model_copy(deep=True)
    record_spend(after, entry)
    return after.soft_alerted


def validate_request(req: AdmissionRequest) -> None:
    """Raise ValueError for an estimate that is negative or not a finite number."""
    if not math.isfinite(req.estimate_usd) or req.estimate_usd < 0:
        raise ValueError(
            f"job {req.job_id}: estimateUsd must be a finite amount >= 0, got {req.estimate_usd!r}"
        )


# --- state transitions ------------------------------------------------------------------------
def new_budget_state(product_id: str, config: BudgetConfig, now: datetime) -> BudgetState:
    """A fresh state for a product, its window containing `now`."""
    state = BudgetState(product_id=product_id)
    set_budget(state, config, now)
    return state


def roll_window(state: BudgetState, now: datetime) -> bool:
    """Start a new window if `now` is at or after `resets_at`.

    Returns:
        True if the window rolled (the caller should then serve the queue).
    """
    if state.resets_at is None or _utc(now) < state.resets_at:
        return False
    state.previous_window_runs = list(state.counted_runs)
    state.counted_runs = {}
    state.spent_usd = 0.0
    state.ledger = []
    state.soft_alerted = False
    if state.paused_reason == "ceiling":
        _set_active(state)
    state.window_started_at = window_start(state.config.window, now)
    state.resets_at = next_reset(state.config.window, now)
    if _over_ceiling(state) and state.status == "active":
        _pause_for_ceiling(state)  # a ceiling of 0
    return True


def wake_order(state: BudgetState) -> list[AdmissionRequest]:
    """The waiting requests that can be admitted now, in the order they would be admitted.

    Priority first (critical first), then first come first served; greedy: a request that
    does not fit what is left is skipped and later (smaller) ones may still fit. Nothing
    is admitted while the product is paused. The state is not changed.
    """
    if state.status == "paused":
        return []
    ordered = _queue_order(state.waiting)
    ceiling = state.config.ceiling_usd
    if ceiling is None:
        return ordered
    left = ceiling - state.spent_usd - state.reserved_usd
    chosen: list[AdmissionRequest] = []
    for req in ordered:
        if req.estimate_usd <= left + EPSILON:
            chosen.append(req)
            left -= req.estimate_usd
    return chosen


def _reserve(state: BudgetState, req: AdmissionRequest) -> None:
    state.reservations[req.job_id] = req.estimate_usd
    _sync_reserved(state)


def admit_waiting(state: BudgetState) -> list[AdmissionRequest]:
    """Admit every waiting request of :func:`wake_order`: reserve, dequeue, add to `notify`.

    Returns:
        The newly admitted requests (their job workflows are to be signalled).
    """
    chosen = wake_order(state)
    if not chosen:
        return []
    ids = {r.job_id for r in chosen}
    state.waiting = [r for r in state.waiting if r.job_id not in ids]
    for req in chosen:
        _reserve(state, req)
        state.notify.append(req)
    return chosen


def _wait_reason(state: BudgetState, req: AdmissionRequest) -> str:
    if state.status == "paused":
        return f"product {state.product_id} paused: {state.reason_text or state.paused_reason}"
    ceiling = state.config.ceiling_usd or 0.0
    reason = (
        f"budget: spent {_money(state.spent_usd)} + reserved {_money(state.reserved_usd)} "
        f"+ estimate {_money(req.estimate_usd)} would exceed the {_money(ceiling)} ceiling"
    )
    if req.estimate_usd > ceiling + EPSILON:
        reason += " (the estimate alone exceeds it: raise the ceiling)"
    return reason


def admit(state: BudgetState, req: AdmissionRequest, now: datetime) -> AdmissionResult:
    """Admit `req` (reserving its estimate) or queue it; see the module docstring.

    Raises:
        ValueError: The estimate is negative or not finite.
    """
    validate_request(req)
    if roll_window(state, now) or state.waiting:
        admit_waiting(state)
    if req.job_id in state.reservations:
        return AdmissionResult(admitted=True, reason="already admitted", job_id=req.job_id)
    ceiling = state.config.ceiling_usd
    fits = ceiling is None or (
        state.spent_usd + state.reserved_usd + req.estimate_usd <= ceiling + EPSILON
    )
    if state.status == "active" and fits:
        state.waiting = [r for r in state.waiting if r.job_id != req.job_id]
        _reserve(state, req)
        return AdmissionResult(admitted=True, job_id=req.job_id)
    if all(r.job_id != req.job_id for r in state.waiting):
        state.waiting.append(req)
    order = [r.job_id for r in _queue_order(state.waiting)]
    return AdmissionResult(
        admitted=False,
        reason=_wait_reason(state, req),
        position=order.index(req.job_id) + 1,
        job_id=req.job_id,
    )


def record_spend(state: BudgetState, entry: LedgerEntry) -> bool:
    """Count one run's spend (once per run id); see the module docstring.

    Returns:
        False if the run was already counted (nothing changed), True otherwise.
    """
    if entry.run_id in state.counted_runs or entry.run_id in state.previous_window_runs:
        return False
    usd = max(0.0, entry.usd)
    state.counted_runs[entry.run_id] = usd
    state.spent_usd += usd
    state.ledger.append(entry)
    if len(state.ledger) > LEDGER_KEEP:
        state.ledger = state.ledger[-LEDGER_KEEP:]
    if state.reservations.pop(entry.job_id, None) is not None:
        _sync_reserved(state)
    if not state.soft_alerted:
        _check_soft(state)
    if _over_ceiling(state):
        if state.status == "active":
            _pause_for_ceiling(state)
        elif state.paused_reason == "ceiling":
            state.reason_text = _ceiling_text(state)  # keep the numbers current
    return True


def finish(state: BudgetState, job_id: str) -> bool:
    """The job is done: release its reservation (no spend) and drop it from the queues.

    Returns:
        True if anything changed.
    """
    changed = state.reservations.pop(job_id, None) is not None
    if changed:
        _sync_reserved(state)
    before = len(state.waiting) + len(state.notify)
    state.waiting = [r for r in state.waiting if r.job_id != job_id]
    state.notify = [r for r in state.notify if r.job_id != job_id]
    return changed or before != len(state.waiting) + len(state.notify)


def pause(state: BudgetState, reason: str) -> None:
    """Pause the product by hand: nothing is admitted until :func:`resume`."""
    state.status = "paused"
    state.paused_reason = "manual"
    state.reason_text = reason or "paused by operator"


def resume(state: BudgetState) -> bool:
    """Lift a manual or ceiling pause, unless spent has reached the ceiling.

    Returns:
        True if the product is active afterwards. While spent >= ceiling it stays paused
        with reason ``ceiling`` and a text telling the operator to raise the ceiling.
    """
    if state.status == "active":
        return True
    if _over_ceiling(state):
        _pause_for_ceiling(state)
        state.reason_text = (
            f"{_ceiling_text(state)}; resume refused: raise the ceiling (set budget) "
            "to run more this window"
        )
        return False
    _set_active(state)
    return True


def set_budget(state: BudgetState, config: BudgetConfig, now: datetime) -> None:
    """Replace the config; see the module docstring for pauses and windows."""
    old_window = state.config.window
    state.config = config
    if config.window != old_window or (config.window != "none" and state.resets_at is None):
        state.window_started_at = window_start(config.window, now)
        state.resets_at = next_reset(config.window, now)
    _check_soft(state)
    if _over_ceiling(state):
        if state.status == "active" or state.paused_reason == "ceiling":
            _pause_for_ceiling(state)
    elif state.paused_reason == "ceiling":
        _set_active(state)
