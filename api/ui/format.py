"""How the web control plane writes times, durations and money (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["FILTERS", "between", "duration", "local_time", "percent", "since", "usd"]


def duration(seconds: float | None) -> str:
    """`75` -> "1m 15s", `7260` -> "2h 1m"; None -> "—"."""
    if seconds is None:
        return "—"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes}m {s}s" if s else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def since(at: datetime | None, now: datetime) -> str:
    """How long ago `at` was, relative to `now` ("3m 5s ago")."""
    if at is None:
        return "—"
    return f"{duration((now - at).total_seconds())} ago"


def between(start: datetime | None, end: datetime | None, now: datetime) -> str:
    """How long from `start` to `end` (or to `now` while it goes on)."""
    if start is None:
        return "—"
    return duration(((end or now) - start).total_seconds())


def local_time(at: datetime | None) -> str:
    """A timestamp in UTC, to the second: "2026-11-28 12:00:05Z"."""
    if at is None:
        return "—"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def usd(value: float | None) -> str:
    """Dollars with cents, or with more digits below a cent ("$0.0042")."""
    if value is None:
        return "—"
    if value != 0 and abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def percent(value: float | None) -> str:
    """`0.8` -> "80%"."""
    return "—" if value is None else f"{value:.0%}"


FILTERS = {
    "duration": duration,
    "since": since,
    "between": between,
    "utc": local_time,
    "usd": usd,
    "percent": percent,
}
