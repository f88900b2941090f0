"""Durations as people write them in job specs: `90s`, `15m`, `10h`, `1d` (or bare seconds)."""

from __future__ import annotations

import re

__all__ = ["parse_duration", "format_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)


def parse_duration(text: str | int | float) -> float:
    """Parse a duration into seconds.

    Args:
        text: `90s`, `15m`, `10h`, `1d`, `2w`, `500ms` or a bare number of seconds.

    Returns:
        The duration in seconds (always > 0).

    Raises:
        ValueError: the text is not a positive duration.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _PATTERN.match(str(text))
        if match is None:
            raise ValueError(
                f"bad duration {text!r}: use a number with a unit, e.g. 90s, 15m, 10h, 1d"
            )
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact form of a duration (`36000` -> `10h`)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
