"""The per-run supervisor: `python -m activities.supervisor [--linger S] -- ARGV...`.

The factory starts every agent under this small process, so that stopping an agent stops
everything it started, tool children included. It makes itself a *child subreaper*
(`prctl(PR_SET_CHILD_SUBREAPER)`): a descendant whose parent dies is re-parented to the
supervisor instead of to init, even after `setsid` or a double fork, so the whole tree stays
findable from its pid (`activities.proctree`). It needs no privileges and no cgroups.

It runs the agent in a process group of its own and turns the signals it receives into:

- SIGINT: SIGINT to the agent's process group (as a Ctrl-C at a terminal would be; gemini's
  relaunch wrapper, for one, only stops when its whole group is signalled);
- SIGTERM: SIGTERM to every descendant;
- SIGUSR1: SIGKILL to every descendant;
- the factory dying (`PR_SET_PDEATHSIG`): SIGKILL to every descendant.

When the agent exits, what it left running is sent SIGTERM, given `--linger` seconds, then
killed; every orphan is reaped. The supervisor then exits as the agent did (same exit code,
or killed by the same signal), and prints nothing of its own except when the agent cannot
be started (exit code 127).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from activities.proctree import descendants, kill_tree, signal_pids

__all__ = ["main"]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
EXIT_CANNOT_START = 127
POLL_S = 0.05


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _reap() -> list[tuple[int, int]]:
    """Reap every exited child (orphans included); returns (pid, wait status) pairs."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


class _Supervisor:
    def __init__(self, argv: list[str], linger_s: float) -> None:
        self.argv = argv
        self.linger_s = linger_s
        self.agent: subprocess.Popen[bytes] | None = None
        self.status: int | None = None
        self.killing = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        me = os.getpid()
        if signum == signal.SIGINT and self.agent is not None:
            try:
                os.killpg(self.agent.pid, signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                pass
        elif signum == signal.SIGTERM:
            signal_pids(descendants(me), signal.SIGTERM)
        else:  # SIGUSR1, or the factory died
            self.killing = True
            kill_tree(me)

    def run(self) -> int:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        parent = os.getppid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self.on_signal)
        if _prctl(PR_SET_PDEATHSIG, signal.SIGUSR1) and os.getppid() != parent:
            return EXIT_CANNOT_START  # the factory is already gone
        try:
            # process_group=0: the agent leads a group of its own, which SIGINT goes to.
            self.agent = subprocess.Popen(self.argv, process_group=0)
        except OSError as err:
            sys.stderr.write(f"gigafactory supervisor: cannot start {self.argv[0]}: {err}\n")
            return EXIT_CANNOT_START
        agent = self.agent.pid
        while self.status is None:
            for pid, status in _reap():
                if pid == agent:
                    self.status = status
            if self.status is None:
                time.sleep(POLL_S)
        self._stop_leftovers()
        return self._exit_code(self.status)

    def _stop_leftovers(self) -> None:
        me = os.getpid()
        left = descendants(me)
        if left and not self.killing:
            signal_pids(left, signal.SIGTERM)
            deadline = time.monotonic() + self.linger_s
            while descendants(me) and time.monotonic() < deadline:
                _reap()
                time.sleep(POLL_S)
        kill_tree(me)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            _reap()
            if not descendants(me):
                break
            time.sleep(POLL_S)
        _reap()

    @staticmethod
    def _exit_code(status: int) -> int:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            # Die of the same signal, so the factory sees what happened to the agent.
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
            return 128 + sig
        return os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="activities.supervisor", description=__doc__)
    parser.add_argument("--linger", type=float, default=1.0, help="seconds before SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the agent's argv")
    args = parser.parse_args(argv)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("no command given")
    return _Supervisor(command, args.linger).run()


if __name__ == "__main__":
    sys.exit(main())
