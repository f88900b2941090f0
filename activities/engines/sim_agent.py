"""The simulated agent behind the `sim` engine: `python -m activities.engines.sim_agent`.

It "works" for a given time, printing checkpoint progress about every half second
(`GF-PROGRESS {"elapsedS": 1.0}`), and ends with its cost (`GF-COST {"usd": 0.05}`) and the
exit code it was asked for. It resumes from an elapsed time (`--elapsed`), so a preempted
job that is run again finishes the remaining work only. Its cost accrues linearly with the
simulated work, so a run that is stopped and resumed costs `--cost` in total.

On SIGTERM it prints a last progress line and its cost so far, and exits 143. It exits on
its own when its parent (the factory) dies, as a real agent would on a broken pipe.

With `GIGAFACTORY_SIM_TRACE` set to a file, it appends one JSON line when it starts, about
every half second while it works and when it stops (job, lease epoch, factory, pid, wall
time, and at the end its cost and how it ended): an independent record of what actually ran,
which `gigafactory chaos` checks slot capacity, locks and spend against.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

__all__ = ["main"]

TICK_S = 0.05
PROGRESS_EVERY_S = 0.5
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a TERM-ed process
EXIT_ORPHANED = 129
TRACE_ENV = "GIGAFACTORY_SIM_TRACE"


class _Trace:
    """Appends JSON lines to the trace file; each line is one `write` to an O_APPEND file,
    so the lines of concurrent agents never interleave."""

    def __init__(self, path: str | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None
        self.who = {
            "job": os.environ.get("GIGAFACTORY_JOB_ID", ""),
            "epoch": int(os.environ.get("GIGAFACTORY_EPOCH", "0") or 0),
            "factory": os.environ.get("GIGAFACTORY_FACTORY_ID", ""),
            "pid": os.getpid(),
        }

    def write(self, event: str, **extra: Any) -> None:
        if self.fd is None:
            return
        line = json.dumps({"event": event, **self.who, "at": time.time(), **extra})
        os.write(self.fd, (line + "\n").encode())


def _emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _progress(elapsed: float) -> None:
    _emit("GF-PROGRESS " + json.dumps({"elapsedS": round(elapsed, 3)}))


def _cost(total_usd: float, duration: float, work: float) -> float:
    usd = total_usd if duration <= 0 else total_usd * min(max(work, 0.0), duration) / duration
    _emit("GF-COST " + json.dumps({"usd": round(usd, 6)}))
    return round(usd, 6)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sim_agent", description=__doc__)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of work in all")
    parser.add_argument("--cost", type=float, default=0.0, help="USD for all the work")
    parser.add_argument("--outcome", choices=("succeeded", "failed"), default="succeeded")
    parser.add_argument("--exit-code", type=int, default=1, help="exit code when failing")
    parser.add_argument("--elapsed", type=float, default=0.0, help="work already done (resume)")
    parser.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL stops it")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, trace: _Trace) -> int:
    """Simulate the work described by `args`; returns the process exit code."""
    duration = max(args.duration, 0.0)
    start = min(max(args.elapsed, 0.0), duration)
    terminated = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal terminated
        terminated = True

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_sigterm else on_sigterm)
    parent = os.getppid()

    _emit(f"sim agent: starting at {start:g}s of {duration:g}s")
    trace.write("start")
    _progress(start)
    began = time.monotonic()
    last_report = began
    while True:
        now = time.monotonic()
        elapsed = min(start + (now - began), duration)
        if terminated:
            _progress(elapsed)
            usd = _cost(args.cost, duration, elapsed - start)
            _emit(f"sim agent: stopped by SIGTERM at {elapsed:.3f}s")
            trace.write("stop", how="terminated", costUsd=usd)
            return EXIT_TERMINATED
        if elapsed >= duration:
            break
        if os.getppid() != parent:
            # The factory died: nobody will read our output or stop us.
            trace.write("stop", how="orphaned")
            return EXIT_ORPHANED
        if now - last_report >= PROGRESS_EVERY_S:
            _progress(elapsed)
            trace.write("tick")
            last_report = now
        time.sleep(min(TICK_S, duration - elapsed))

    _progress(duration)
    usd = _cost(args.cost, duration, duration - start)
    if args.outcome == "failed":
        _emit(f"sim agent: simulated failure (exit code {args.exit_code})")
        trace.write("stop", how="failed", costUsd=usd)
        return int(args.exit_code)
    _emit("sim agent: done")
    trace.write("stop", how="done", costUsd=usd)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; a closed stdout (the factory went away) ends the run quietly."""
    args: Any = _parse(argv)
    trace = _Trace(os.environ.get(TRACE_ENV))
    try:
        return run(args, trace)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        trace.write("stop", how="orphaned")
        return EXIT_ORPHANED


if __name__ == "__main__":
    sys.exit(main())
