"""Process trees: find every descendant of a process and stop them all.

An agent's tools may start their own sessions (`setsid`) or double-fork, so a process group
or a session does not contain them. The parent chain does, as long as orphans are re-parented
inside the tree: `activities.supervisor` makes itself a child subreaper for that reason, and
the functions here walk `/proc` from it. Standard library only: the supervisor imports this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

__all__ = [
    "alive",
    "descendants",
    "kill_tree",
    "signal_pids",
    "stop_supervised",
]

logger = logging.getLogger(__name__)

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may itself contain spaces and parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 2:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(root: int) -> list[int]:
    """Every live descendant of `root` (children first), from one scan of `/proc`."""
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None:
            continue
        pid = int(entry.name)
        states[pid] = stat[0]
        children.setdefault(stat[1], []).append(pid)
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, []))
    return [pid for pid in found if states.get(pid) not in ("Z", "X")]


def signal_pids(pids: list[int], sig: signal.Signals) -> None:
    """Send `sig` to each pid; one that is gone already is not an error."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_tree(root: int, *, include_root: bool = False, rounds: int = 50) -> None:
    """SIGKILL every descendant of `root` (and `root` itself if asked).

    The tree is frozen (SIGSTOP) before it is killed, so a process that forks while it is
    being stopped cannot leave a child behind; the scan repeats until nothing is left.
    """
    for _ in range(rounds):
        pids = descendants(root)
        if not pids:
            break
        signal_pids(pids, signal.SIGSTOP)
        signal_pids(descendants(root), signal.SIGKILL)
    if include_root:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(root, signal.SIGKILL)


async def _exited(proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    if timeout_s > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout_s)
    return proc.returncode is not None


async def stop_supervised(
    proc: asyncio.subprocess.Process,
    grace_s: float,
    *,
    interrupt: bool,
    interrupt_s: float,
    supervised: bool = True,
) -> int:
    """Stop a supervised agent and its whole tree within `grace_s`; returns its return code.
    (`supervised=False`: a single agent process with no supervisor, killed directly.)

    The sequence: SIGINT (when `interrupt`: several CLIs then report what they spent, see
    docs/agents.md) and up to `interrupt_s` to exit; SIGTERM to every process of the tree
    until the grace period ends; then SIGKILL to everything left. The supervisor
    (`activities.supervisor`) turns each signal it receives into the same signal for the
    agent's tree; should the supervisor itself not answer, the tree is killed from here.
    """
    pid = proc.pid
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    if interrupt and proc.returncode is None:
        signal_pids([pid], signal.SIGINT)
        if await _exited(proc, min(interrupt_s, grace_s)):
            return proc.returncode if proc.returncode is not None else await proc.wait()
    if proc.returncode is None:
        signal_pids([pid], signal.SIGTERM)
        if await _exited(proc, deadline - loop.time()):
            return await proc.wait()
        logger.warning(
            "agent tree of pid %d still running %gs after SIGTERM: SIGKILL", pid, grace_s
        )
        if supervised:
            # The supervisor kills its tree on SIGUSR1 and then exits with the agent's status.
            signal_pids([pid], signal.SIGUSR1)
            if await _exited(proc, 2.0):
                return await proc.wait()
    kill_tree(pid, include_root=True)
    return await proc.wait()
