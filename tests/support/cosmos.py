"""A real Cosmos DB API server for the tests: `@vercel/cosmosdb-server` on Node.js.

The server is pinned in tools/cosmos (package.json + package-lock.json) and started through
tools/cosmos/server.js, which fixes a point read of a missing document (500 -> 404) and binds
127.0.0.1 on a port the OS picks. `npm ci` runs once when node_modules is missing or stale,
under a file lock so parallel pytest processes do not install at the same time.

Use it from a conftest with `from tests.support.cosmos import cosmos_server`; each conftest
that imports the fixture starts its own server once per session.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos.aio import CosmosClient
from azure.cosmos.exceptions import CosmosResourceNotFoundError

from gigafactory.store.cosmos import CosmosBackend

__all__ = [
    "KEY",
    "TOOLS_DIR",
    "CosmosServer",
    "cosmos_backend",
    "cosmos_server",
    "drop_database",
    "ensure_installed",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "tools" / "cosmos"
SERVER_SCRIPT = TOOLS_DIR / "server.js"
# The local server accepts any base64 key.
KEY = base64.b64encode(b"gigafactory-local-cosmos-test-key").decode()

_READY = re.compile(r"Ready to accept HTTPS connections at (\S+):(\d+)")
_PACKAGE = "@vercel/cosmosdb-server"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"`{tool}` is not on PATH: the Cosmos DB store tests run a local Cosmos DB API "
            f"server ({_PACKAGE}) on Node.js. Install Node.js 18+ with npm "
            "(e.g. apt-get install nodejs npm).",
            pytrace=False,
        )
    return path


def _pinned_version() -> str:
    manifest = json.loads((TOOLS_DIR / "package.json").read_text())
    return str(manifest["dependencies"][_PACKAGE])


def _installed_version() -> str | None:
    manifest = TOOLS_DIR / "node_modules" / _PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed() -> None:
    """`npm ci` in tools/cosmos unless the pinned server version is installed there."""
    if _installed_version() == _pinned_version():
        return
    npm = _require("npm")
    digest = hashlib.sha256(str(TOOLS_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"gigafactory-cosmos-npm-{digest}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _installed_version() == _pinned_version():  # another process installed it
            return
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=TOOLS_DIR,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {TOOLS_DIR} took more than 10 minutes", pytrace=False)
        if result.returncode != 0 or _installed_version() != _pinned_version():
            pytest.fail(
                f"`npm ci` in {TOOLS_DIR} failed (exit {result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}",
                pytrace=False,
            )


class CosmosServer:
    """The local Cosmos DB API server as a subprocess, bound to 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("the Cosmos DB server is not started")
        return f"https://{self.host}:{self.port}"

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it answers HTTPS requests."""
        node = _require("node")
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [node, str(SERVER_SCRIPT), "--host", self.host, "--port", "0"],
                cwd=TOOLS_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        try:
            while self.port is None:
                self._check_alive()
                match = _READY.search(self._log_tail())
                if match:
                    self.port = int(match.group(2))
                elif time.monotonic() > deadline:
                    raise TimeoutError("no ready line")
                else:
                    time.sleep(0.05)
            self._wait_answering(deadline)
        except BaseException as exc:
            self.stop()
            pytest.fail(
                f"the local Cosmos DB server did not start ({exc}); its log:\n{self._log_tail()}",
                pytrace=False,
            )

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"the server exited with code {self._process.returncode}")

    def _wait_answering(self, deadline: float) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the server's certificate is self-signed
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.endpoint}/", context=context, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 5 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def cosmos_backend(server: CosmosServer, database: str, **kwargs: Any) -> CosmosBackend:
    """An (unopened) backend on `database` of the local server."""
    return CosmosBackend(server.endpoint, key=KEY, database=database, verify_tls=False, **kwargs)


async def drop_database(server: CosmosServer, database: str) -> None:
    """Delete a test database (missing is fine)."""
    async with CosmosClient(server.endpoint, KEY, connection_verify=False) as client:
        with contextlib.suppress(CosmosResourceNotFoundError):
            await client.delete_database(database)


@pytest.fixture(scope="session")
def cosmos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosmosServer]:
    """The local Cosmos DB API server, started once per session (npm ci first if needed)."""
    ensure_installed()
    server = CosmosServer(tmp_path_factory.mktemp("cosmos") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
