"""Child processes the dev stack starts, each recorded in a pid file of the data directory.

Whatever way the stack ends (Ctrl-C, an error while starting, a crash of the stack itself),
its children must not outlive it for long: `ManagedProcess.stop` stops one (SIGTERM, then
SIGKILL of its whole process group), and `stop_orphans` finds what a stack that died
without cleaning up left running (its pid files) and stops it before a new stack starts on
the same data directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ManagedProcess", "claim_data_dir", "pid_dir", "release_data_dir", "stop_orphans"]

# The pid file of the stack itself (the `dev` process), beside its children's.
OWNER = "stack"

logger = logging.getLogger(__name__)

# The data directories this process has claimed: their open, locked `stack.lock`.
_CLAIMS: dict[Path, int] = {}


def pid_dir(data_dir: Path) -> Path:
    """Where a data directory's stack records the processes it started."""
    return data_dir / "pids"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = ""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat[stat.rfind(")") + 2 :].split()[0]
    return state not in ("Z", "X")


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM the process (it leads its own group), then SIGKILL the group if it lingers."""
    _kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        logger.warning("process %d did not stop in %gs: SIGKILL", pid, timeout_s)
    _kill_group(pid, signal.SIGKILL)


def _recorded_live_pid(path: Path) -> int | None:
    """The pid in a pid file while that process runs the command line recorded with it
    (a pid the kernel has since given to another program is not ours)."""
    try:
        pid_text, _, recorded = path.read_text().partition("\n")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _alive(pid) and recorded.strip() and _cmdline(pid).strip() == recorded.strip():
        return pid
    return None


def claim_data_dir(directory: Path) -> int | None:
    """Record this process as the stack of the data directory whose pid directory this is.

    The claim is an exclusive `flock` on `stack.lock`, held open until `release_data_dir`
    (or this process's end: the kernel drops it, so a crashed stack leaves no stale claim),
    so two stacks started at the same instant cannot both have it; `stack.pid` then says
    who holds it. A live pid in `stack.pid` (a stack that predates the lock) also counts.

    Returns:
        None once claimed, else the pid of the live stack that already owns it (0 when the
        lock is held but its owner's pid file cannot be read).
    """
    key = directory.resolve()
    path = directory / f"{OWNER}.pid"
    if key in _CLAIMS:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{OWNER}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return _recorded_live_pid(path) or 0
    owner = _recorded_live_pid(path)
    if owner is not None and owner != os.getpid():
        os.close(fd)  # releases the lock
        return owner
    _CLAIMS[key] = fd
    path.write_text(f"{os.getpid()}\n{_cmdline(os.getpid())}\n")
    return None


def release_data_dir(directory: Path) -> None:
    """Remove this process's claim on the data directory (another's is left alone)."""
    path = directory / f"{OWNER}.pid"
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().split()[0]) == os.getpid():
            path.unlink()
    fd = _CLAIMS.pop(directory.resolve(), None)
    if fd is not None:
        os.close(fd)


def stop_orphans(directory: Path, timeout_s: float = 10.0) -> list[str]:
    """Stop the processes a previous stack on this data directory left running.

    Call it once the stack has claimed the directory (`claim_data_dir`): a live stack's
    children are not orphans. A pid file whose process is gone, or whose pid now belongs
    to an unrelated program (its command line no longer matches what was recorded), is
    just removed.

    Returns:
        The names of the processes stopped.
    """
    stopped: list[str] = []
    if not directory.is_dir():
        return stopped
    for path in sorted(directory.glob("*.pid")):
        if path.stem == OWNER:
            continue
        pid = _recorded_live_pid(path)
        if pid is not None:
            logger.warning("stopping %s (pid %d), left running by an earlier stack", path.stem, pid)
            _terminate(pid, timeout_s)
            stopped.append(path.stem)
        path.unlink(missing_ok=True)
    return stopped


class ManagedProcess:
    """One child process, in a session of its own, with its pid file and log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        pid_directory: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.pid_path = pid_directory / f"{name}.pid"
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and record its pid (with its command line, to recognise it later)."""
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        # The command line as /proc shows it once the program runs (argv joined).
        self.pid_path.write_text(f"{self.process.pid}\n{' '.join(self.argv)} \n")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL of its group; the pid file goes."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                _terminate(process.pid, timeout_s)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1)
        self.pid_path.unlink(missing_ok=True)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send `sig` to its process group (SIGSTOP/SIGCONT freeze and thaw it; chaos runs)."""
        if self.process is not None:
            _kill_group(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL its whole group at once, as a crash would (no SIGTERM first); it may be
        started again with `start`."""
        process, self.process = self.process, None
        if process is not None:
            _kill_group(process.pid, signal.SIGKILL)
            process.wait()
