"""A decision as lines a person can read (the CLI's `route explain`, the job's events)."""

from __future__ import annotations

from routing.model import Candidate, Decision, ExclusionCount, ScoreTerm

__all__ = ["explain"]


def explain(decision: Decision) -> list[str]:
    """A headline, then one line per candidate in the decision's order.

    An eligible candidate shows its rank, score and every term as `value*weight=contribution`;
    an excluded one shows why. A decision from `FleetIndex.select` explains only its best
    rows; its summary adds how many more were eligible and one line per exclusion kind with
    its count and examples.
    """
    summary = decision.summary
    shown = sum(1 for c in decision.candidates if c.eligible)
    eligible = summary.eligible if summary is not None else shown
    factories = summary.factories if summary is not None else len(decision.candidates)
    if decision.factory_id is None:
        lines = [f"no placement: {decision.reason or 'no reason given'}"]
    else:
        lines = [
            f"chose {decision.factory_id} (score {decision.score:.3f}), "
            f"{eligible} of {factories} factories eligible"
        ]
    rank = 0
    for candidate in decision.candidates:
        if candidate.eligible:
            rank += 1
        lines.append(_line(rank, candidate))
    if summary is not None:
        if eligible > shown:
            lines.append(f"   ... {eligible - shown} more eligible, not shown")
        lines += [_exclusion(e) for e in summary.exclusions]
    return lines


def _line(rank: int, c: Candidate) -> str:
    if not c.eligible:
        return f"   - {c.factory_id}: excluded, {c.excluded_because}"
    terms = ", ".join(_term(t) for t in c.breakdown)
    return f"{rank:>4}. {c.factory_id}: score {c.score:.3f} = {terms}"


def _term(t: ScoreTerm) -> str:
    return f"{t.term} {t.value:.3f}*{t.weight:g}={t.contribution:.3f}"


def _exclusion(e: ExclusionCount) -> str:
    examples = "; ".join(f"{c.factory_id}: {c.excluded_because}" for c in e.examples)
    more = ", ..." if e.count > len(e.examples) else ""
    return f"   - {e.count} excluded ({e.kind}): {examples}{more}"
