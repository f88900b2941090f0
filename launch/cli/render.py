"""Plain-text rendering for the CLI: aligned tables and short times."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

__all__ = ["ago", "table", "short_time"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; None renders as '-'."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def short_time(value: str | None) -> str | None:
    """`2026-11-25T14:03:07.123+00:00` -> `14:03:07`."""
    parsed = _parse(value)
    return parsed.strftime("%H:%M:%S") if parsed else None


def ago(start: str | None, end: str | None) -> str | None:
    """The seconds between two API timestamps, e.g. `3.2s`."""
    a, b = _parse(start), _parse(end)
    if a is None or b is None:
        return None
    return f"{(b - a).total_seconds():.1f}s"
