"""The dev stack: Temporal dev server, control-plane worker, API and local factories in one
process, for `gigafactory dev`, `gigafactory demo` and `gigafactory bench`.

Everything is started in dependency order and stopped in reverse; factories enroll through
the API exactly as remote ones do (one-time enrollment token, then a factory token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import httpx
import uvicorn
from temporalio.client import Client

from api.app import create_app
from gigafactory.security import mint
from gigafactory.settings import Settings
from gigafactory.store import open_store
from gigafactory.store.fleet_store import FleetStore
from gigafactory.temporal_client import connect_temporal
from launch.control import ControlPlane
from launch.devserver import TemporalDevServer, free_port
from launch.factory_runtime import FactoryRuntime, enroll_factory

__all__ = ["DevStack", "LocalFactory", "PortInUse", "port_is_free"]

logger = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves signals alone: the stack's owner handles Ctrl-C for everything."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PortInUse(RuntimeError):
    """A port the stack was told to use is taken."""


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
    """A factory the stack runs in-process: `engines` None means every engine found."""

    id: str
    engines: Sequence[str] | None = None
    labels: Sequence[str] = ()
    slots: int = 2


@dataclass
class _Running:
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
    """

    settings: Settings
    factories: Sequence[LocalFactory] = ()
    fallback_ports: bool = False
    ui: bool = True
    admin_key: str = ""
    temporal_server: TemporalDevServer | None = None
    store: FleetStore | None = None
    client: Client | None = None
    _control: ControlPlane | None = None
    _api: uvicorn.Server | None = None
    _api_task: asyncio.Task[None] | None = None
    _running: list[_Running] = field(default_factory=list)

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
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
            )
            await self.temporal_server.start()
            updates["temporal_address"] = self.temporal_server.address
            if ui_port is not None:
                updates["ui_port"] = ui_port
        # The resolved settings are what children (factories, URLs) must see.
        self.settings = s = s.model_copy(update=updates)

        self.store = await open_store(s)
        self.client = await connect_temporal(s)
        self._control = ControlPlane(self.client, self.store, s)
        await self._control.start()

        app = create_app(s, store=self.store, temporal=self.client)
        config = uvicorn.Config(
            app,
            host=s.api_host,
            port=s.api_port,
            log_level="warning",
            lifespan="on",
        )
        self._api = _QuietServer(config)
        self._api_task = asyncio.create_task(self._api.serve(), name="api")
        while not self._api.started:
            if self._api_task.done():
                self._api_task.result()
                raise RuntimeError("the API stopped while starting")
            await asyncio.sleep(0.05)

        for factory in self.factories:
            await self.add_factory(factory)

    async def stop(self) -> None:
        """Stop factories, API, worker, store and dev server, in that order."""
        running, self._running = self._running, []
        for item in running:
            item.stop.set()
        for item in running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(item.task, 30)
        if self._api is not None and self._api_task is not None:
            self._api.should_exit = True
            with contextlib.suppress(Exception):
                await self._api_task
        self._api = self._api_task = None
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self.temporal_server is not None:
            self.temporal_server.stop()
            self.temporal_server = None

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
    async def add_factory(self, spec: LocalFactory) -> FactoryRuntime:
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
        self._running.append(_Running(spec, runtime, stop, task))
        return runtime

    async def stop_factory(self, factory_id: str) -> None:
        """Stop one local factory (its heartbeats stop; the control plane notices)."""
        for item in list(self._running):
            if item.spec.id == factory_id:
                item.stop.set()
                await asyncio.wait_for(item.task, 30)
                self._running.remove(item)
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
    def ui_url(self) -> str | None:
        return self.temporal_server.ui_url if self.temporal_server else None

    @property
    def temporal_address(self) -> str | None:
        return self.settings.temporal_address

    def _port(self, what: str, flag: str, port: int) -> int:
        host = self.settings.api_host if what == "API" else "127.0.0.1"
        if port_is_free(host, port):
            return port
        if self.fallback_ports:
            chosen = free_port(host)
            logger.info("%s port %d is in use; using %d instead", what, port, chosen)
            return chosen
        raise PortInUse(f"{what} port {port} is in use; choose another with {flag}")
