"""What a process costs: CPU seconds and resident memory, read from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ProcessUsage", "cpu_seconds", "rss_mb"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process (and of its reaped children: agents on a factory)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    # utime, stime, cutime, cstime are fields 14-17 of stat (11-14 after "pid (comm) ").
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def rss_mb(pid: int) -> float:
    """Resident memory in MB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class ProcessUsage:
    """One process over a benchmark: its CPU and its memory as jobs finished."""

    name: str
    pid: int
    children: bool = False
    cpu_start: float = 0.0
    cpu_s: float = 0.0
    # (jobs finished so far, RSS in MB), sampled while the benchmark ran.
    rss: list[tuple[int, float]] = field(default_factory=list)

    def begin(self) -> None:
        self.cpu_start = cpu_seconds(self.pid, children=self.children)

    def sample(self, finished: int) -> None:
        self.rss.append((finished, rss_mb(self.pid)))

    def end(self) -> None:
        self.cpu_s = cpu_seconds(self.pid, children=self.children) - self.cpu_start

    def rss_at(self, finished: int) -> float:
        """RSS at the first sample with at least `finished` jobs done (else the last)."""
        for done, mb in self.rss:
            if done >= finished:
                return mb
        return self.rss[-1][1] if self.rss else 0.0

    @property
    def rss_end(self) -> float:
        return self.rss[-1][1] if self.rss else 0.0
