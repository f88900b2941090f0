"""`gigafactory dev` as a user runs it (a subprocess): nothing it started outlives it, on any
exit path, and a stack that crashed is cleaned up by the next one on its data directory.

(a) A store that cannot open: `dev` exits non-zero naming the problem, and no process it
started survives (its pid files, its process tree, its ports).
(b) A stack SIGKILLed mid-run with jobs in flight: the next `gigafactory dev` on the same
data directory and the same ports stops the orphans, starts, and every job finishes with
exactly one successful run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gigafactory.security import mint
from launch.devserver import free_port
from launch.processes import pid_dir
from launch.stack import port_is_free
from tests.e2e.harness import REPO_ROOT

pytestmark = pytest.mark.temporal

FINAL = ("succeeded", "failed", "cancelled")


class DevPorts:
    """The ports one data directory's stacks use, the same on every restart."""

    def __init__(self) -> None:
        self.api = free_port()
        self.temporal = free_port()
        self.ui = free_port()

    def all(self) -> list[int]:
        return [self.api, self.temporal, self.ui]


def dev_command(data_dir: Path, ports: DevPorts, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "launch.cli.main", "dev",
        "--data-dir", str(data_dir),
        "--api-port", str(ports.api),
        "--temporal-port", str(ports.temporal),
        "--ui-port", str(ports.ui),
        *extra,
    ]  # fmt: skip


def dev_env(admin_key: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    # Short leases, so a job whose factory died is re-run in seconds, not minutes.
    env.update(
        {
            "FLEET_ADMIN_KEY": admin_key,
            "FLEET_LEASE_HEARTBEAT_TIMEOUT_S": "3",
            "FLEET_DISPATCH_TIMEOUT_S": "5",
            "FLEET_FACTORY_UNHEALTHY_AFTER_S": "4",
            "FLEET_FACTORY_HEARTBEAT_INTERVAL_S": "0.5",
            "FLEET_STOP_GRACE_S": "2",
            **extra,
        }
    )
    return env


def recorded_pids(data_dir: Path) -> dict[str, int]:
    """The processes a stack recorded in its pid files, by name."""
    pids: dict[str, int] = {}
    for path in sorted(pid_dir(data_dir).glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            pids[path.stem] = int(path.read_text().split()[0])
    return pids


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children of children too) that runs now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@contextlib.contextmanager
def reaped(pids: Iterable[int]) -> Iterator[None]:
    """Whatever a test leaves behind is killed, so one failure does not leak into others."""
    try:
        yield
    finally:
        for pid in list(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def start_dev(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with open(log, "a") as out:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


async def watch(
    process: subprocess.Popen[str],
    data_dir: Path,
    seen: set[int],
    names: set[str],
    interrupt_once: str | None = None,
) -> None:
    """Until `process` exits, add every process it starts (its process tree and its pid
    files, so nothing escapes the check) to `seen` and their names to `names`; SIGINT it
    once a pid file named `interrupt_once` appears."""
    interrupted = False
    while process.poll() is None:
        recorded = recorded_pids(data_dir)
        names |= set(recorded)
        seen |= descendants(process.pid) | set(recorded.values())
        if interrupt_once in recorded and not interrupted:
            process.send_signal(signal.SIGINT)
            interrupted = True
        await asyncio.sleep(0.05)


async def wait_until_up(process: subprocess.Popen[str], log: Path, timeout_s: float) -> None:
    """Until the stack printed its banner (everything started)."""
    deadline = time.monotonic() + timeout_s
    while "Ctrl-C stops everything" not in log.read_text():
        if process.poll() is not None:
            raise AssertionError(f"dev exited ({process.returncode}):\n{log.read_text()}")
        assert time.monotonic() < deadline, f"dev did not start:\n{log.read_text()}"
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def api_client(ports: DevPorts, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ports.api}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as http:
        yield http


@pytest.mark.parametrize("broken", ["store", "factory"])
async def test_a_stack_that_cannot_start_leaves_nothing_running(
    tmp_path: Path, broken: str
) -> None:
    """The store refuses to open (found before anything starts), or a factory is refused
    once Temporal, the control plane and the API run (all of which must then stop)."""
    ports = DevPorts()
    _, key = mint("gfk")
    data_dir = tmp_path / "data"
    extra = ["--factories", "1"]
    if broken == "store":
        bad_store = tmp_path / "not-a-database"
        bad_store.mkdir()  # SQLite cannot open a directory
        env = dev_env(key, FLEET_SQLITE_PATH=str(bad_store))
        expected = str(bad_store)
    else:
        env = dev_env(key)
        extra += ["--engines", "no-such-engine"]
        expected = "no-such-engine"
    log = tmp_path / "dev.out"
    process = start_dev(dev_command(data_dir, ports, *extra), env, log)
    seen: set[int] = set()
    names: set[str] = set()
    with reaped(seen):  # read when the block ends: everything seen by then
        await watch(process, data_dir, seen, names)
        output = log.read_text()
        assert process.returncode != 0, output
        assert "Traceback" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], output
        if broken == "factory":
            # Otherwise the test proves nothing about stopping what was started.
            assert {"temporal", "api", "control-1"} <= names, (names, output)
        assert [pid for pid in seen if alive(pid)] == []
        assert recorded_pids(data_dir) == {}
        assert all(port_is_free("127.0.0.1", port) for port in ports.all())


async def test_ctrl_c_while_starting_stops_what_had_started(tmp_path: Path) -> None:
    ports = DevPorts()
    _, key = mint("gfk")
    data_dir = tmp_path / "data"
    log = tmp_path / "dev.out"
    command = dev_command(data_dir, ports, "--factories", "1", "--engines", "sim")
    process = start_dev(command, dev_env(key), log)
    seen: set[int] = set()
    names: set[str] = set()
    with reaped(seen):
        # Ctrl-C once the control plane has been started, before the stack is up.
        await watch(process, data_dir, seen, names, interrupt_once="control-1")
        output = log.read_text()
        assert "control-1" in names, output
        assert process.returncode == 0, output
        assert "Ctrl-C stops everything" not in output, "it had started completely"
        assert "stopped while starting" in output, output
        assert [pid for pid in seen if alive(pid)] == []
        assert recorded_pids(data_dir) == {}
        assert all(port_is_free("127.0.0.1", port) for port in ports.all())


@pytest.mark.parametrize("kill", ["dev-only", "process-group"])
async def test_a_sigkilled_stack_is_cleaned_up_and_its_jobs_finish_on_restart(
    tmp_path: Path, kill: str
) -> None:
    ports = DevPorts()
    _, key = mint("gfk")
    env = dev_env(key)
    data_dir = tmp_path / "data"
    command = dev_command(data_dir, ports, "--factories", "2", "--slots", "2", "--engines", "sim")
    first_log, second_log = tmp_path / "dev-1.out", tmp_path / "dev-2.out"
    first = start_dev(command, env, first_log)
    second: subprocess.Popen[str] | None = None
    orphans: dict[str, int] = {}
    try:
        await wait_until_up(first, first_log, 120)
        async with api_client(ports, key) as http:
            ids = []
            for n in range(8):
                body = {"engine": "sim", "prompt": f"p{n}", "productId": "hygiene"}
                r = await http.post("/fleet/jobs", json={**body, "params": {"durationS": 4}})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            await wait_for_stage(http, ids[0], ("running",), 60)
        # A second stack on the same data directory is refused: the first one's children
        # are not orphans while it runs.
        other_log = tmp_path / "dev-other.out"
        other = start_dev(dev_command(data_dir, DevPorts()), env, other_log)
        assert await asyncio.to_thread(other.wait, 60) == 1, other_log.read_text()
        assert f"a dev stack (pid {first.pid}) already runs" in other_log.read_text()
        recorded = recorded_pids(data_dir)
        assert recorded.pop("stack") == first.pid
        orphans = recorded
        assert {"temporal", "api", "control-1", "factory-local-1"} <= set(orphans), orphans
        assert all(alive(pid) for pid in orphans.values())
        # The crash: nothing runs the stack's clean-up.
        if kill == "process-group":
            os.killpg(first.pid, signal.SIGKILL)
        else:
            first.kill()
        await asyncio.to_thread(first.wait, 10)
        assert all(alive(pid) for pid in orphans.values()), "children outlive a crash"

        second = start_dev(command, env, second_log)
        await wait_until_up(second, second_log, 120)
        output = second_log.read_text()
        assert "in use" not in output, output
        assert "left running by an earlier stack" in output, output
        assert [name for name, pid in orphans.items() if alive(pid)] == []
        async with api_client(ports, key) as http:
            for job_id in ids:
                await wait_for_stage(http, job_id, FINAL, 120)
            for job_id in ids:
                job = (await http.get(f"/fleet/jobs/{job_id}")).json()
                assert job["stage"] == "succeeded", job
                runs = (await http.get(f"/fleet/jobs/{job_id}/runs")).json()["items"]
                succeeded = [run for run in runs if run["outcome"] == "succeeded"]
                assert len(succeeded) == 1, (job_id, runs)
        second.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(second.wait, 60) == 0, second_log.read_text()
        assert recorded_pids(data_dir) == {}
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        with reaped(list(orphans.values()) + list(recorded_pids(data_dir).values())):
            pass


async def wait_for_stage(
    http: httpx.AsyncClient, job_id: str, stages: tuple[str, ...], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            job: dict[str, Any] = (await http.get(f"/fleet/jobs/{job_id}")).json()
            if job.get("stage") in stages:
                return job
        assert time.monotonic() < deadline, f"job {job_id} never reached {stages}"
        await asyncio.sleep(0.3)
