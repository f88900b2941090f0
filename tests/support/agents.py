"""The real agent CLIs for tests: where `make agents` installs them, the fake model server
(`fake_llm.py`, standard library only) and the environment that points the CLIs at it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from launch.devserver import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = REPO_ROOT / "tools" / "agents" / "node_modules" / ".bin"
AIDER_BIN = REPO_ROOT / ".venv-aider" / "bin"
FAKE_LLM = Path(__file__).with_name("fake_llm.py")
# What each CLI's test needs on PATH, and where its installation log is.
CLIS: dict[str, tuple[str, Path, Path]] = {
    "claude-code": ("claude", NODE_BIN, REPO_ROOT / "tools" / "agents" / "install.log"),
    "codex": ("codex", NODE_BIN, REPO_ROOT / "tools" / "agents" / "install.log"),
    "gemini": ("gemini", NODE_BIN, REPO_ROOT / "tools" / "agents" / "install.log"),
    "opencode": ("opencode", NODE_BIN, REPO_ROOT / "tools" / "agents" / "install.log"),
    "aider": ("aider", AIDER_BIN, REPO_ROOT / ".venv-aider" / "install.log"),
}
# The model names the fake server is run with, and their prices (USD per million tokens).
FAKE_MODEL = "fake-model"
MODELS = {"codex": FAKE_MODEL, "opencode": FAKE_MODEL, "aider": f"openai/{FAKE_MODEL}"}
PRICES = {FAKE_MODEL: {"inputPerMtok": 3.0, "outputPerMtok": 15.0}}


def require_cli(engine: str) -> Path:
    """The folder holding `engine`'s CLI; fails the test, with the reason, when it is not
    installed (never skips: CI must run every CLI)."""
    binary, folder, log = CLIS[engine]
    if (folder / binary).exists():
        return folder
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise AssertionError(
        f"{binary} is not installed in {folder}: `make agents` installs it "
        f"(its log, {log}, ends with:)\n{tail or '(no log: the installation never ran)'}"
    )


@dataclass
class FakeLlm:
    """A running fake model server."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def requests(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


@contextlib.contextmanager
def fake_llm(folder: Path) -> Iterator[FakeLlm]:
    """`fake_llm.py` on a free 127.0.0.1 port, stopped on exit."""
    port = free_port()
    log = folder / "requests.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(FAKE_LLM), "--port", str(port), "--log", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError("the fake model server did not start")
            time.sleep(0.05)
        yield FakeLlm(url, log, process)
    finally:
        process.terminate()
        process.wait(10)


def agent_env(server: FakeLlm) -> dict[str, str]:
    """What a factory's environment needs to point every CLI at the fake server."""
    path = os.pathsep.join([str(NODE_BIN), str(AIDER_BIN), os.environ.get("PATH", "")])
    return {
        "PATH": path,
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": "fake-anthropic-key",
        # A refused key is otherwise retried for minutes.
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "OPENAI_BASE_URL": f"{server.url}/v1",
        "OPENAI_API_KEY": "fake-openai-key",
        "GOOGLE_GEMINI_BASE_URL": server.url,
        "GEMINI_API_KEY": "fake-gemini-key",
    }


def git_repo(path: Path) -> Path:
    """A small repository with one commit on `main`."""
    path.mkdir(parents=True)
    run = {"cwd": path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "--quiet", "-b", "main"], **run)  # type: ignore[call-overload]
    (path / "README.md").write_text("# demo\n")
    subprocess.run(["git", "add", "."], **run)  # type: ignore[call-overload]
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "init"],
        **run,  # type: ignore[call-overload]
    )
    return path


def git(path: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True)
    return done.stdout.strip()
