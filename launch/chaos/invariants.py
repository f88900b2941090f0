"""The invariants of a chaos run, as pure functions over its evidence.

Each returns how many times (or how many dollars) it was broken and which jobs broke it,
so the report can name them; `check_all` runs every one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from launch.chaos.records import Evidence, SimInterval

__all__ = [
    "Check",
    "capacity_exceeded",
    "check_all",
    "dollars_counted_twice",
    "double_successes",
    "jobs_lost",
    "jobs_not_succeeded",
    "jobs_stuck",
    "lock_overlaps",
    "stale_reports_fenced",
]

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "blocked"})
# Money is compared to a millionth of a dollar (the sim agent rounds costs to 6 places).
_EPSILON_USD = 1e-6


@dataclass(frozen=True)
class Check:
    """One invariant's outcome: `value` must equal `expected` for it to hold."""

    name: str
    value: float
    expected: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return abs(self.value - self.expected) <= _EPSILON_USD


def _names(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(ids)[:limit])
    return shown + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


def jobs_lost(ev: Evidence) -> list[str]:
    """Acknowledged jobs the store or Temporal does not know."""
    lost = []
    for job_id in ev.accepted:
        job = ev.jobs.get(job_id)
        if job is None or job.stage is None or job.workflow_status is None:
            lost.append(job_id)
    return lost


def jobs_stuck(ev: Evidence) -> list[str]:
    """Jobs not terminal in the store, or whose workflow still runs, after the drain."""
    return [
        j.id
        for j in ev.jobs.values()
        if j.stage is not None and (j.stage not in TERMINAL or j.workflow_status == "RUNNING")
    ]


def jobs_not_succeeded(ev: Evidence) -> list[str]:
    """Terminal jobs that did not succeed (every sim of a chaos run is asked to succeed),
    each with its stage and why, so a failed run explains itself."""
    return [
        f"{j.id} ({j.stage}: {j.stage_reason or 'no reason recorded'})"
        for j in ev.jobs.values()
        if j.stage in TERMINAL and j.stage != "succeeded"
    ]


def double_successes(ev: Evidence) -> list[str]:
    """Jobs with more than one run recorded as succeeded."""
    return [j.id for j in ev.jobs.values() if sum(r.outcome == "succeeded" for r in j.runs) > 1]


def dollars_counted_twice(ev: Evidence) -> tuple[float, list[str]]:
    """Dollars counted more than once, and the jobs (or products) they were counted for.

    Each level is compared with the one below it, which the sim agents' own cost lines
    bound: a measured ledger entry with what its run's agents printed, a job's runs with its
    ledger entries, a (leaf) job's cost with its runs, and each budget controller's spent
    with its product's ledger. Only what exceeds the level below counts: an estimate for a
    run whose agent was killed before it printed a cost is not a second count.
    """
    emitted: dict[tuple[str, int], float] = defaultdict(float)
    for sim in ev.intervals:
        emitted[(sim.job_id, sim.epoch)] += sim.cost_usd or 0.0
    excess: dict[str, float] = defaultdict(float)
    ledger_by_job: dict[str, float] = defaultdict(float)
    ledger_by_product: dict[str, float] = defaultdict(float)
    for entry in ev.spend:
        ledger_by_job[entry.job_id] += entry.usd
        ledger_by_product[entry.product_id] += entry.usd
        if not entry.estimated:
            epoch = int(entry.run_id.rsplit(".", 1)[1])
            excess[entry.job_id] += max(0.0, entry.usd - emitted[(entry.job_id, epoch)])
    for job in ev.jobs.values():
        runs_usd = sum(r.cost_usd for r in job.runs)
        excess[job.id] += max(0.0, ledger_by_job[job.id] - runs_usd)
        if not job.is_parent:  # a parent's cost rolls up its children's
            excess[job.id] += max(0.0, job.cost_usd - runs_usd)
    for product, spent in ev.controller_spend.items():
        excess[f"budget:{product}"] += max(0.0, spent - ledger_by_product[product])
    broken = {k: v for k, v in excess.items() if v > _EPSILON_USD}
    return round(sum(broken.values()), 6), list(broken)


def capacity_exceeded(ev: Evidence) -> list[str]:
    """Moments a factory ran more sim agents at once than it has slots, as
    `<factory>@<job>` for the agent whose start went over."""
    by_factory: dict[str, list[SimInterval]] = defaultdict(list)
    for sim in ev.intervals:
        by_factory[sim.factory_id].append(sim)
    over = []
    for factory, sims in by_factory.items():
        slots = ev.slots.get(factory)
        if slots is None:
            continue
        # Ends sort before starts at the same instant: a slot handed on is not two agents.
        points = sorted(
            [(s.start, 1, s.job_id) for s in sims] + [(s.end, -1, s.job_id) for s in sims],
            key=lambda p: (p[0], p[1]),
        )
        running = 0
        for _, step, job_id in points:
            running += step
            if step == 1 and running > slots:
                over.append(f"{factory}@{job_id}")
    return over


def lock_overlaps(ev: Evidence) -> list[str]:
    """Pairs of different jobs under the same lock whose agents ran at the same time."""
    by_lock: dict[str, list[SimInterval]] = defaultdict(list)
    for sim in ev.intervals:
        lock = ev.locks.get(sim.job_id)
        if lock is not None:
            by_lock[lock].append(sim)
    pairs = []
    for sims in by_lock.values():
        ordered = sorted(sims, key=lambda s: s.start)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                if b.start >= a.end:
                    break
                if b.job_id != a.job_id:
                    pairs.append(f"{a.job_id}/{b.job_id}")
    return pairs


# A fenced report's answer is lost when its factory is SIGKILLed this soon after.
KILL_WINDOW_S = 2.0


def stale_reports_fenced(ev: Evidence) -> tuple[int, int, list[str]]:
    """Stale reports the factories sent, `fenced` events the store recorded, and the
    (job, epoch) pairs where the two disagree.

    Per (job, epoch), the factories' logs give A reports answered "fenced" and B given up in
    flight (the run was stopped, fenced by another report, before their answer came); the
    store gives F fenced events, K of them sent by a factory SIGKILLed within
    KILL_WINDOW_S after (it could not log the answer). Every answered report must be one
    of the F, and every one of the F must be a report sent: A <= F <= A + B + K. The reports
    sent are A plus the abandoned and killed ones the store fenced.
    """
    fenced: dict[tuple[str, int], int] = defaultdict(int)
    unheard: dict[tuple[str, int], int] = defaultdict(int)
    for job in ev.jobs.values():
        for report in job.fenced:
            fenced[(job.id, report.epoch)] += 1
            if any(
                f == report.factory_id and 0 <= at - report.at <= KILL_WINDOW_S
                for f, at in ev.kills
            ):
                unheard[(job.id, report.epoch)] += 1
    sent = 0
    broken = []
    for key in set(fenced) | set(ev.stale_answered):
        answered, f = ev.stale_answered.get(key, 0), fenced[key]
        most = answered + ev.abandoned.get(key, 0) + unheard[key]
        sent += min(max(f, answered), most)
        if not answered <= f <= most:
            broken.append(f"{key[0]}@{key[1]}")
    return sent, sum(fenced.values()), broken


def check_all(ev: Evidence) -> list[Check]:
    """Every invariant of a chaos run."""
    lost = jobs_lost(ev)
    stuck = jobs_stuck(ev)
    unsuccessful = jobs_not_succeeded(ev)
    doubles = double_successes(ev)
    dollars, counted_twice = dollars_counted_twice(ev)
    over = capacity_exceeded(ev)
    overlaps = lock_overlaps(ev)
    sent, fenced, unmatched = stale_reports_fenced(ev)
    return [
        Check("jobs lost", len(lost), 0, _names(lost)),
        Check("jobs stuck", len(stuck), 0, _names(stuck)),
        Check("jobs not succeeded", len(unsuccessful), 0, _names(unsuccessful)),
        Check("jobs with two successful runs", len(doubles), 0, _names(doubles)),
        Check("dollars counted twice", dollars, 0, _names(counted_twice)),
        Check("slot capacity exceeded", len(over), 0, _names(over)),
        Check("lock overlaps", len(overlaps), 0, _names(overlaps)),
        Check(
            "stale reports sent = fenced (pairs that differ)",
            len(unmatched),
            0,
            f"sent {sent}, fenced {fenced}" + (f"; {_names(unmatched)}" if unmatched else ""),
        ),
    ]
