"""The end-to-end harness: the real control plane (store, worker, API) on the session's
Temporal dev server, and real factories, in-process or as `gigafactory factory run`
subprocesses that tests can kill or freeze.

Tests share one control plane; each isolates its routing with a capability label of its
own (`t-<uuid>`) that its factories carry and its jobs require.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from temporalio.client import Client

from api.app import create_app
from gigafactory.models import TERMINAL_STAGES
from gigafactory.settings import Settings
from gigafactory.store.fleet_store import FleetStore
from launch.factory_runtime import FactoryRuntime

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FactoryHandle:
    """A running factory: in-process task or subprocess."""

    id: str
    token: str
    task: asyncio.Task[None] | None = None
    stop_event: asyncio.Event | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    async def stop(self) -> None:
        if self.stop_event is not None and self.task is not None:
            self.stop_event.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 30)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the factory and every agent it started (a machine that dies)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)

    def freeze(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)


@dataclass
class Fleet:
    """The control plane under test and helpers to drive it through its API."""

    settings: Settings
    store: FleetStore
    client: Client
    api_url: str
    admin_key: str
    http: httpx.AsyncClient
    factories: list[FactoryHandle] = field(default_factory=list)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    async def enrollment_token(self) -> str:
        r = await self.http.post("/fleet/factories/enrollment-tokens", headers=self.auth())
        r.raise_for_status()
        return str(r.json()["token"])

    async def enroll(
        self, factory_id: str, engines: Iterable[str], labels: Iterable[str], slots: int
    ) -> str:
        r = await self.http.post(
            "/fleet/factories/enroll",
            json={
                "enrollmentToken": await self.enrollment_token(),
                "factoryId": factory_id,
                "engines": list(engines),
                "labels": list(labels),
                "slots": slots,
                "hostname": "test",
            },
        )
        r.raise_for_status()
        return str(r.json()["factoryToken"])

    async def start_factory(
        self,
        *,
        engines: list[str],
        labels: list[str],
        slots: int = 1,
        factory_id: str | None = None,
        subprocess_: bool = False,
        extra_path: Path | None = None,
    ) -> FactoryHandle:
        """Enroll a factory through the API and start it."""
        factory_id = factory_id or f"f-{uuid.uuid4().hex[:8]}"
        token = await self.enroll(factory_id, engines, labels, slots)
        if not subprocess_:
            runtime = FactoryRuntime(
                self.settings,
                self.client,
                factory_id=factory_id,
                token=token,
                engines=engines,
                labels=labels,
                slots=slots,
                api_url=self.api_url,
            )
            stop = asyncio.Event()
            handle = FactoryHandle(
                factory_id, token, task=asyncio.create_task(runtime.run(stop)), stop_event=stop
            )
        else:
            env = dict(os.environ)
            env.update(self.env())
            env["FLEET_FACTORY_TOKEN"] = token
            if extra_path is not None:
                env["PATH"] = f"{extra_path}{os.pathsep}{env.get('PATH', '')}"
            log_path = self.settings.data_dir / f"{factory_id}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "launch.cli.main",
                        "factory",
                        "run",
                        "--id",
                        factory_id,
                        "--engines",
                        ",".join(engines),
                        "--labels",
                        ",".join(labels),
                        "--slots",
                        str(slots),
                    ],
                    env=env,
                    cwd=REPO_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            handle = FactoryHandle(factory_id, token, process=process, log_path=log_path)
        self.factories.append(handle)
        await self.wait_factory_healthy(factory_id)
        return handle

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            "FLEET_API_URL": self.api_url,
            "FLEET_TEMPORAL_ADDRESS": s.temporal_address or "",
            "FLEET_DATA_DIR": str(s.data_dir),
            "FLEET_FACTORY_HEARTBEAT_INTERVAL_S": str(s.factory_heartbeat_interval_s),
            "FLEET_LOG_CHUNK_INTERVAL_S": str(s.log_chunk_interval_s),
            "FLEET_STOP_GRACE_S": str(s.stop_grace_s),
        }

    async def wait_factory_healthy(self, factory_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = await self.http.get(f"/fleet/factories/{factory_id}", headers=self.auth())
            if r.status_code == 200 and r.json().get("healthy") and r.json().get("lastHeartbeatAt"):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"factory {factory_id} never became healthy")

    async def submit(self, body: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
        r = await self.http.post("/fleet/jobs", json=dict(body), headers=self.auth(key))
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    async def job(self, job_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/fleet/jobs/{job_id}", headers=self.auth())
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    async def get(self, path: str) -> Any:
        r = await self.http.get(path, headers=self.auth())
        r.raise_for_status()
        return r.json()

    async def wait_for(
        self,
        job_id: str,
        stages: Iterable[str],
        *,
        timeout: float = 60,
        reason_contains: str | None = None,
    ) -> dict[str, Any]:
        """Poll the API until the job is in one of `stages` (fail fast on another terminal)."""
        wanted = set(stages)
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = await self.job(job_id)
            if job["stage"] in wanted and (
                reason_contains is None or reason_contains in (job.get("stageReason") or "")
            ):
                return job
            if job["stage"] in {s.value for s in TERMINAL_STAGES} - wanted:
                events = await self.get(f"/fleet/jobs/{job_id}/events")
                raise AssertionError(f"job ended {job['stage']}: {job}\nevents: {events}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"job {job_id} not in {wanted} after {timeout}s: {job}")

    async def wait_closed(self, job_id: str, *, timeout: float = 60) -> None:
        """Until the job's workflow has closed, however it ended (its clean-up done)."""
        job = await self.job(job_id)
        handle = self.client.get_workflow_handle(job["workflowId"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await handle.describe()).close_time is not None:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"job {job_id}'s workflow still open after {timeout}s")

    async def wait_for_progress(
        self, job_id: str, *, min_elapsed_s: float, timeout: float = 30
    ) -> None:
        """Until the running agent has heartbeated at least `min_elapsed_s` of progress."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = await self.get(f"/fleet/jobs/{job_id}/log")
            marks = [line for line in log["text"].splitlines() if "GF-PROGRESS" in line]
            if marks and float(marks[-1].split('"elapsedS":')[1].strip(" }")) >= min_elapsed_s:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"job {job_id} made no {min_elapsed_s}s of progress")

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        body = await self.get(f"/fleet/jobs/{job_id}/events")
        items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
        return items

    async def runs(self, job_id: str) -> list[dict[str, Any]]:
        body = await self.get(f"/fleet/jobs/{job_id}/runs")
        items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
        return items


def unique_label() -> str:
    """A capability only this test's factories have."""
    return f"t-{uuid.uuid4().hex[:8]}"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant."""
    points: list[tuple[datetime, int]] = []
    for start, end in intervals:
        points.append((start, 1))
        points.append((end, -1))
    # Ends sort before starts at the same instant: back-to-back runs do not overlap.
    points.sort(key=lambda p: (p[0], p[1]))
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


class ApiServer:
    """uvicorn serving the app in this event loop, on a free 127.0.0.1 port."""

    def __init__(self, settings: Settings, store: FleetStore, client: Client) -> None:
        app = create_app(settings, store=store, temporal=client)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=settings.api_port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


async def cli(fleet: Fleet, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `gigafactory ARGS` as a user would, against the fleet's API."""
    env = {
        "PATH": "/usr/bin:/bin",
        "FLEET_API_URL": fleet.api_url,
        "FLEET_API_KEY": key or fleet.admin_key,
        "FLEET_DATA_DIR": str(fleet.settings.data_dir),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "launch.cli.main", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
