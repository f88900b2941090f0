"""Doing a chaos run's faults to the processes of a dev stack.

Every fault is a signal a real failure would send: SIGKILL (a crash: no clean-up, no last
report), SIGSTOP then SIGCONT (a zombie: a factory that stalls past its lease, then wakes up
and reports as if nothing happened). What was killed is started again with the same command
line, environment and ports, as a supervisor (systemd, Kubernetes) would.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

from launch.chaos.plan import Fault, FaultKind
from launch.processes import ManagedProcess
from launch.stack import DevStack

__all__ = ["FaultRecord", "do_fault", "factory_process"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultRecord:
    """A fault as it was done: wall-clock times of the hit and of the recovery."""

    kind: FaultKind
    target: str | None
    at: float
    recovered_at: float
    error: str | None = None


def factory_process(stack: DevStack, factory_id: str) -> ManagedProcess:
    """The stack's process of factory `factory_id`."""
    for process in stack.processes:
        if process.name == f"factory-{factory_id}":
            return process
    raise KeyError(f"no factory process {factory_id!r} in the stack")


def _named(stack: DevStack, prefix: str) -> ManagedProcess:
    for process in stack.processes:
        if process.name.startswith(prefix):
            return process
    raise KeyError(f"no {prefix} process in the stack")


def _exactly(stack: DevStack, name: str) -> ManagedProcess:
    for process in stack.processes:
        if process.name == name:
            return process
    raise KeyError(f"no process {name!r} in the stack")


async def _restart(process: ManagedProcess, down_s: float) -> None:
    await asyncio.to_thread(process.kill)
    await asyncio.sleep(down_s)
    process.start()


async def do_fault(stack: DevStack, fault: Fault) -> FaultRecord:
    """Do `fault` to `stack` and bring the part back after `fault.hold_s`.

    A part that does not come back is not retried here: the run's invariants then show
    what that cost. An error doing the fault is recorded, not raised, so one failed fault
    does not end the run.
    """
    at = time.time()
    logger.info("chaos: %s %s", fault.kind.value, fault.target or "")
    try:
        if fault.kind is FaultKind.KILL_FACTORY:
            assert fault.target is not None
            await _restart(factory_process(stack, fault.target), fault.hold_s)
        elif fault.kind is FaultKind.FREEZE_FACTORY:
            assert fault.target is not None
            process = factory_process(stack, fault.target)
            process.signal_group(signal.SIGSTOP)
            try:
                await asyncio.sleep(fault.hold_s)
            finally:  # also when the run is interrupted: a frozen process cannot stop
                process.signal_group(signal.SIGCONT)
        elif fault.kind is FaultKind.RESTART_CONTROL:
            # One of several control processes, or the only one.
            process = _exactly(stack, fault.target) if fault.target else _named(stack, "control-")
            await _restart(process, fault.hold_s)
        elif fault.kind is FaultKind.RESTART_API:
            await _restart(_named(stack, "api"), fault.hold_s)
        elif fault.kind is FaultKind.RESTART_TEMPORAL:
            server = stack.temporal_server
            if server is None:
                raise RuntimeError("the stack runs no Temporal server of its own to restart")
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(fault.hold_s)
            await server.start()
    except Exception as err:  # noqa: BLE001 - recorded in the report, the run goes on
        logger.exception("chaos: %s %s failed", fault.kind.value, fault.target or "")
        return FaultRecord(fault.kind, fault.target, at, time.time(), repr(err))
    return FaultRecord(fault.kind, fault.target, at, time.time())
