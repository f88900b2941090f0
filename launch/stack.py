"""The dev stack: Temporal dev server, control plane, API and local factories, for
`gigafactory dev`, `gigafactory demo` and `gigafactory bench`.

By default every part runs as the process a deployment runs (`serve api`, `serve control`,
`factory run`), so the dev stack exercises the production shape; `in_process=True` runs
the control plane, the API and the factories in this process instead (tests, debugging).
Everything is started in dependency order and stopped in reverse, on every exit path; every
child process is recorded in `<data dir>/pids`, so a stack that died without cleaning up is
cleaned up by the next one on that data directory. Factories enroll through the API
exactly as remote ones do (one-time enrollment token, then a factory token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn
from temporalio.client import Client

from api.app import create_app
from gigafactory.observability.process import start_process_observability
from gigafactory.security import mint
from gigafactory.settings import Settings, settings_env
from gigafactory.store import open_store
from gigafactory.store.fleet_store import FleetStore
from gigafactory.temporal_client import connect_temporal
from launch.control import ControlPlane
from launch.devserver import TemporalDevServer, free_port
from launch.factory_runtime import FactoryRuntime, enroll_factory
from launch.processes import (
    ManagedProcess,
    claim_data_dir,
    pid_dir,
    release_data_dir,
    stop_orphans,
)

__all__ = ["DevStack", "LocalFactory", "PortInUse", "StackStartError", "port_is_free"]

logger = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves signals alone: the stack's owner handles Ctrl-C for everything."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PortInUse(RuntimeError):
    """A port the stack was told to use is taken."""


class StackStartError(RuntimeError):
    """A part of the stack could not start (the message says which, and why)."""


def _last_line(log: Path) -> str:
    """The last line a child wrote to its log (usually the error it died of)."""
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "nothing logged"


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on `host:port` (so we may bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class LocalFactory:
    """A factory the stack runs: `engines` None means every engine found."""

    id: str
    engines: Sequence[str] | None = None
    labels: Sequence[str] = ()
    slots: int = 2


@dataclass
class _InProcess:
    spec: LocalFactory
    runtime: FactoryRuntime
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class DevStack:
    """The whole control plane plus local factories, started by `start`, stopped by `stop`.

    Args:
        settings: Ports, data dir, store and Temporal address. When `temporal_address` is
            set the stack uses that server; otherwise it starts a dev server (persistent
            database in the data dir, UI on `ui_port`).
        factories: Local factories to enroll and run once the API is up.
        fallback_ports: Take a free port instead of failing when a configured one is busy
            (the demo does; `dev` fails so the printed URLs are the ones asked for).
        ui: Start the Temporal UI with the dev server.
        in_process: Run the control plane, the API and the factories in this process.
        control_processes: How many `serve control` processes (not in process).
        api_processes: How many `serve api` processes (not in process): the first on the
            API port, the others on free ports; local factories report to them in turn.
        metrics: Every process serves its own metrics and the Temporal SDK's, each on a
            free port (`metrics_urls`); the API serves the fleet's on `/metrics` anyway.
        env: Extra environment of every process the stack starts (a chaos run's sim trace).
    """

    settings: Settings
    factories: Sequence[LocalFactory] = ()
    fallback_ports: bool = False
    ui: bool = True
    in_process: bool = False
    control_processes: int = 1
    api_processes: int = 1
    metrics: bool = False
    admin_key: str = ""
    metrics_urls: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    temporal_server: TemporalDevServer | None = None
    store: FleetStore | None = None
    client: Client | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    api_urls: list[str] = field(default_factory=list)
    _control: ControlPlane | None = None
    _api: uvicorn.Server | None = None
    _api_task: asyncio.Task[None] | None = None
    _in_process: list[_InProcess] = field(default_factory=list)
    _claimed: bool = False  # this stack owns the data directory (its `stack.pid`)

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def start_unless(self, interrupt: asyncio.Event) -> bool:
        """Start, unless `interrupt` is set first (a Ctrl-C while starting): then stop what
        had started. Whether the stack started."""
        starting = asyncio.create_task(self.start(), name="stack-start")
        interrupted = asyncio.create_task(interrupt.wait(), name="stack-start-interrupt")
        try:
            await asyncio.wait({starting, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
            if not starting.done():
                starting.cancel()  # start() stops what it started on its way out
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        if starting.cancelled():
            return False
        starting.result()  # a start-up failure
        return True

    @contextlib.asynccontextmanager
    async def stopping(self) -> AsyncIterator[DevStack]:
        """Stop the started stack when the block ends, however it ends."""
        try:
            yield self
        finally:
            await self.stop()

    async def _start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        owner = claim_data_dir(pid_dir(s.data_dir))
        if owner is not None:
            raise StackStartError(
                f"a dev stack (pid {owner}) already runs on {s.data_dir}: stop it first, "
                "or use another --data-dir"
            )
        self._claimed = True
        stopped = await asyncio.to_thread(stop_orphans, pid_dir(s.data_dir))
        if stopped:
            logger.warning("stopped what an earlier stack left running: %s", ", ".join(stopped))
        await self._open_store()
        self.admin_key = s.admin_key or mint("gfk")[1]
        api_port = self._port("API", "--api-port", s.api_port)
        updates: dict[str, object] = {"api_port": api_port, "admin_key": self.admin_key}
        if s.temporal_address is None:
            port = self._port("Temporal", "--temporal-port", s.temporal_port)
            ui_port = self._port("Temporal UI", "--ui-port", s.ui_port) if self.ui else None
            self.temporal_server = TemporalDevServer(
                port=port,
                ui_port=ui_port,
                db_file=s.data_dir / "temporal.sqlite3",
                log_file=s.data_dir / "temporal.log",
                pid_file=pid_dir(s.data_dir) / "temporal.pid",
            )
            await self.temporal_server.start()
            updates["temporal_address"] = self.temporal_server.address
            if ui_port is not None:
                updates["ui_port"] = ui_port
                if s.temporal_ui_url is None:  # job pages of the web UI link to it
                    updates["temporal_ui_url"] = self.temporal_server.ui_url
        if not self.in_process:
            # Each child gets metrics ports of its own (one fixed port cannot serve them all).
            updates.update(metrics_port=None, sdk_metrics_port=None)
        elif self.metrics:
            updates.update(self._metrics_ports("dev"))
        # The resolved settings are what children (factories, URLs) must see.
        self.settings = s = s.model_copy(update=updates)
        self.client = await connect_temporal(s)
        if self.in_process:
            await self._start_in_process()
        else:
            await self._start_processes()
        for factory in self.factories:
            try:
                await self.add_factory(factory)
            except StackStartError:
                raise
            except (RuntimeError, TimeoutError) as err:  # enrollment refused, never healthy
                raise StackStartError(f"factory {factory.id}: {err}") from err

    async def _open_store(self) -> None:
        """Open the store before anything starts, so a store that cannot open is named
        here rather than in a child's log; in process the stack keeps it."""
        s = self.settings
        where = (
            f"{s.cosmos_endpoint} database {s.cosmos_database}"
            if s.store == "cosmos"
            else str(s.resolved_sqlite_path)
        )
        try:
            store = await open_store(s)
        except Exception as err:
            raise StackStartError(f"the {s.store} store cannot open ({where}): {err}") from err
        if self.in_process:
            self.store = store
        else:
            await store.close()

    async def _start_in_process(self) -> None:
        s = self.settings
        assert self.client is not None and self.store is not None
        start_process_observability(s, "dev")
        self._control = ControlPlane(self.client, self.store, s)
        await self._control.start()
        app = create_app(s, store=self.store, temporal=self.client)
        config = uvicorn.Config(
            app, host=s.api_host, port=s.api_port, log_level="warning", lifespan="on"
        )
        self._api = _QuietServer(config)
        self._api_task = asyncio.create_task(self._api.serve(), name="api")
        while not self._api.started:
            if self._api_task.done():
                self._api_task.result()
                raise RuntimeError("the API stopped while starting")
            await asyncio.sleep(0.05)

    async def _start_processes(self) -> None:
        s = self.settings
        for n in range(self.control_processes):
            self._spawn(f"control-{n + 1}", ["serve", "control"])
        for n in range(self.api_processes):
            port = s.api_port if n == 0 else free_port(s.api_host)
            name = "api" if self.api_processes == 1 else f"api-{n + 1}"
            self._spawn(name, ["serve", "api"], {"FLEET_API_PORT": str(port)})
            self.api_urls.append(f"http://{s.api_host}:{port}")
        for url in self.api_urls:
            await self._wait_api(url)

    def _spawn(
        self, name: str, command: Sequence[str], extra_env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """Start `gigafactory COMMAND` with this stack's settings in its environment."""
        s = self.settings
        ports = self._metrics_ports(name) if self.metrics else {}
        metrics_env = {f"FLEET_{k.upper()}": str(v) for k, v in ports.items()}
        env = {**os.environ, **self.env, **settings_env(s), **metrics_env, **(extra_env or {})}
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "launch.cli.main", *command],
            pid_directory=pid_dir(s.data_dir),
            log_path=s.data_dir / "logs" / f"{name}.log",
            env=env,
        )
        process.start()
        self.processes.append(process)
        return process

    @staticmethod
    def _stopped(process: ManagedProcess) -> StackStartError:
        return StackStartError(
            f"{process.name} stopped while the stack started: {_last_line(process.log_path)} "
            f"(log: {process.log_path})"
        )

    async def _wait_api(self, url: str, timeout_s: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            while True:
                for process in self.processes:
                    if not process.running():
                        raise self._stopped(process)
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                if loop.time() > deadline:
                    raise TimeoutError(f"the API did not answer at {url} in {timeout_s}s")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Stop factories, API, control plane, store and dev server, in that order.

        The dev server and the child processes stop even when stopping another part fails.
        """
        try:
            await self._stop_parts()
        finally:
            for process in self.processes:  # left by a failure above
                await asyncio.to_thread(process.stop)
            self.processes = []
            if self.temporal_server is not None:
                self.temporal_server.stop()
                self.temporal_server = None
            if self._claimed:
                release_data_dir(pid_dir(self.settings.data_dir))
                self._claimed = False

    async def _stop_parts(self) -> None:
        in_process, self._in_process = self._in_process, []
        for item in in_process:
            item.stop.set()
        for item in in_process:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(item.task, 30)
        # Factories first (their agents stop and report), then the API, then the control.
        order = sorted(
            self.processes,
            key=lambda p: (not p.name.startswith("factory-"), p.name.startswith("control-")),
        )
        for process in order:
            await asyncio.to_thread(process.stop)
            self.processes.remove(process)
        self.api_urls = []
        self.metrics_urls = {}
        if self._api is not None and self._api_task is not None:
            self._api.should_exit = True
            with contextlib.suppress(Exception):
                await self._api_task
        self._api = self._api_task = None
        control, self._control = self._control, None
        store, self.store = self.store, None
        try:
            if control is not None:
                await control.stop()
        finally:
            if store is not None:
                await store.close()

    async def __aenter__(self) -> DevStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- factories ----------------------------------------------------------------------------
    async def add_factory(self, spec: LocalFactory) -> FactoryRuntime | ManagedProcess:
        """Enroll a local factory through the API and start it."""
        assert self.client is not None, "start the stack first"
        token = await enroll_factory(
            self.api_url,
            await self.enrollment_token(),
            factory_id=spec.id,
            engines=list(spec.engines) if spec.engines is not None else [],
            labels=list(spec.labels),
            slots=spec.slots,
        )
        if not self.in_process:
            command = ["factory", "run", "--id", spec.id, "--slots", str(spec.slots)]
            if spec.engines is not None:
                command += ["--engines", ",".join(spec.engines)]
            if spec.labels:
                command += ["--labels", ",".join(spec.labels)]
            # Factories report to the API processes in turn.
            started = sum(1 for p in self.processes if p.name.startswith("factory-"))
            api_url = self.api_urls[started % len(self.api_urls)]
            process = self._spawn(
                f"factory-{spec.id}",
                command,
                {"FLEET_FACTORY_TOKEN": token, "FLEET_API_URL": api_url},
            )
            await self._wait_healthy(spec.id, process)
            return process
        runtime = FactoryRuntime(
            self.settings,
            self.client,
            factory_id=spec.id,
            token=token,
            engines=spec.engines,
            labels=spec.labels,
            slots=spec.slots,
            api_url=self.api_url,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop), name=f"factory-{spec.id}")
        self._in_process.append(_InProcess(spec, runtime, stop, task))
        return runtime

    async def _wait_healthy(
        self, factory_id: str, process: ManagedProcess, timeout_s: float = 60.0
    ) -> None:
        """Until the factory's first heartbeat arrived (jobs submitted next can go there)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        async with httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=5) as http:
            while True:
                if not process.running():
                    raise self._stopped(process)
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.get(f"/fleet/factories/{factory_id}")
                    if r.status_code == 200 and r.json().get("healthy"):
                        return
                if loop.time() > deadline:
                    raise TimeoutError(f"factory {factory_id} not healthy after {timeout_s}s")
                await asyncio.sleep(0.1)

    async def stop_factory(self, factory_id: str) -> None:
        """Stop one local factory (its heartbeats stop; the control plane notices)."""
        for item in list(self._in_process):
            if item.spec.id == factory_id:
                item.stop.set()
                await asyncio.wait_for(item.task, 30)
                self._in_process.remove(item)
                return
        for process in list(self.processes):
            if process.name == f"factory-{factory_id}":
                await asyncio.to_thread(process.stop)
                self.processes.remove(process)
                return
        raise KeyError(factory_id)

    async def enrollment_token(self) -> str:
        """A one-time enrollment token, minted with the admin key."""
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30) as http:
            response = await http.post(
                "/fleet/factories/enrollment-tokens",
                headers={"Authorization": f"Bearer {self.admin_key}"},
            )
            response.raise_for_status()
            return str(response.json()["token"])

    # --- addresses ----------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    @property
    def web_url(self) -> str:
        """The web control plane (sign in with the admin key)."""
        return f"{self.api_url}/ui"

    @property
    def ui_url(self) -> str | None:
        return self.temporal_server.ui_url if self.temporal_server else None

    @property
    def temporal_address(self) -> str | None:
        return self.settings.temporal_address

    def _metrics_ports(self, name: str) -> dict[str, int]:
        """Free ports for `name`'s metrics and the SDK's, remembered in `metrics_urls`."""
        host = self.settings.metrics_host
        ports = {"metrics_port": free_port(host), "sdk_metrics_port": free_port(host)}
        self.metrics_urls[name] = f"http://{host}:{ports['metrics_port']}/metrics"
        sdk = f"http://{host}:{ports['sdk_metrics_port']}/metrics"
        self.metrics_urls[f"{name} (Temporal SDK)"] = sdk
        return ports

    def _port(self, what: str, flag: str, port: int) -> int:
        host = self.settings.api_host if what == "API" else "127.0.0.1"
        if port_is_free(host, port):
            return port
        if self.fallback_ports:
            chosen = free_port(host)
            logger.info("%s port %d is in use; using %d instead", what, port, chosen)
            return chosen
        raise PortInUse(f"{what} port {port} is in use; choose another with {flag}")
