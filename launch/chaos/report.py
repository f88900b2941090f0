"""A chaos run's report as text: what was done, the figures, every invariant."""

from __future__ import annotations

from collections import Counter

from launch.chaos.plan import FaultKind
from launch.chaos.runner import ChaosReport
from launch.cli.render import table

__all__ = ["render_report"]


def render_report(report: ChaosReport) -> str:
    """The report table `gigafactory chaos` prints."""
    o = report.options
    head = (
        f"chaos run: seed {o.seed}, {o.jobs} jobs, {o.factories} factories x {o.slots} slots, "
        + (f"{o.control_processes} control processes, " if o.control_processes > 1 else "")
        + f"a fault about every {o.every_s:g}s"
    )
    # A restart of one of several control processes counts under its own name.
    kinds = Counter(
        f"{f.kind.value} {f.target}"
        if f.kind is FaultKind.RESTART_CONTROL and f.target
        else f.kind.value
        for f in report.faults
    )
    faults = table(["fault", "done"], sorted(kinds.items()))
    figures = table(
        ["figure", "value"],
        [(name, value) for name, value in report.figures.items() if not isinstance(value, dict)],
    )
    checks = table(
        ["invariant", "value", "expected", "holds", "detail"],
        [
            (c.name, f"{c.value:g}", f"{c.expected:g}", "yes" if c.ok else "NO", c.detail)
            for c in report.checks
        ],
    )
    verdict = "every invariant holds" if report.ok else "INVARIANTS BROKEN"
    return "\n\n".join([head, faults, figures, checks, verdict])
