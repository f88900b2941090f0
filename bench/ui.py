"""`gigafactory bench --ui`: what open web UI pages cost the API process.

The API runs in its own process (`python -m api`) against the same SQLite data directory
and Temporal dev server as a control plane (worker and dispatch reconciler) and two local
`sim` factories, which run in this process. A fleet of 50 jobs is made: finished ones, four
long ones running (one per slot) and the rest waiting for capacity. Then the API process's
CPU time (utime + stime, from /proc) is measured over a window twice: with no page open
(heartbeats, log chunks and the workers' reads: the baseline), and with five pages open in
Debian's chromium (the fleet map, the job table, two running jobs' pages with their logs
following, the budget panel), each polling at the UI's interval. The difference is the
pages' share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.usage import cpu_seconds
from gigafactory.security import mint
from gigafactory.settings import Settings, settings_env
from gigafactory.store import open_store
from gigafactory.temporal_client import connect_temporal
from launch.control import ControlPlane
from launch.devserver import TemporalDevServer, free_port
from launch.factory_runtime import FactoryRuntime, enroll_factory

__all__ = ["CHROMIUM_ARGS", "UiBenchReport", "render_ui_report", "run_ui_bench"]

logger = logging.getLogger(__name__)

JOBS = 50
FINISHED = 30
RUNNING = 4  # two factories of two slots
PAGES = 5
# Headless Debian chromium with no outbound traffic of its own (the browser tests use these).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class CpuWindow:
    """The API process's CPU time over one wall-clock window."""

    cpu_s: float
    wall_s: float

    @property
    def share(self) -> float:
        """CPU time over wall time: 0.05 is 5 % of one core."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0


@dataclass
class UiBenchReport:
    """The two windows and what the pages asked."""

    jobs: int
    pages: list[str]
    poll_interval_s: float
    idle: CpuWindow
    polling: CpuWindow
    requests: int = 0
    revalidated: int = 0  # requests the browser sent with If-None-Match
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def pages_share(self) -> float:
        return max(0.0, self.polling.share - self.idle.share)


async def _measure(pid: int, seconds: float) -> CpuWindow:
    cpu, wall = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return CpuWindow(cpu_seconds(pid) - cpu, time.monotonic() - wall)


@contextlib.asynccontextmanager
async def _api_process(settings: Settings, log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`python -m api` with the settings as FLEET_* variables, until it answers /healthz."""
    env = {**os.environ, **settings_env(settings), "FLEET_LOG_LEVEL": "WARNING"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        async with httpx.AsyncClient(base_url=settings.resolved_api_url, timeout=5) as http:
            for _ in range(200):
                if process.poll() is not None:
                    raise RuntimeError(f"the API exited ({process.returncode}); see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the API did not answer /healthz; see {log}")
        yield process
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()


async def _wait(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


async def _make_fleet(http: httpx.AsyncClient) -> list[str]:
    """50 jobs: finished ones, long ones running, the rest waiting; the running ids."""

    async def submit(title: str, duration_s: float) -> str:
        body = {
            "productId": "bench",
            "engine": "sim",
            "title": title,
            "prompt": "benchmark the web UI",
            "params": {"durationS": duration_s, "costUsd": 0.01},
        }
        r = await http.post("/fleet/jobs", json=body)
        r.raise_for_status()
        return str(r.json()["id"])

    quick = [await submit(f"quick job {i}", 0.1) for i in range(FINISHED)]

    async def all_finished() -> bool:
        stages = [(await http.get(f"/fleet/jobs/{j}")).json()["stage"] for j in quick]
        return all(s in ("succeeded", "failed") for s in stages)

    await _wait(all_finished, "the quick jobs to finish")
    running = [await submit(f"long job {i}", 3600) for i in range(RUNNING)]

    async def all_running() -> bool:
        stages = [(await http.get(f"/fleet/jobs/{j}")).json()["stage"] for j in running]
        return all(s == "running" for s in stages)

    await _wait(all_running, "the long jobs to run")
    for i in range(JOBS - FINISHED - RUNNING):
        await submit(f"waiting job {i}", 3600)
    return running


@contextlib.asynccontextmanager
async def _open_pages(api_url: str, admin_key: str, report: UiBenchReport) -> AsyncIterator[None]:
    """Chromium with the five pages open, counting their requests; closed on exit."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as err:  # a dev dependency
        raise RuntimeError("bench --ui needs Playwright: pip install -e '.[dev]'") from err
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("bench --ui needs Debian's chromium: make browser")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{api_url}/ui/sign-in")
            await page.get_by_label("API key").fill(admin_key)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(f"{api_url}/ui")
            pages = [page]
            for path in report.pages[1:]:
                pages.append(await context.new_page())
                await pages[-1].goto(f"{api_url}{path}")

            notes: list[asyncio.Future[None]] = []

            async def note(response: Any) -> None:
                # The browser's own cache headers are only in all_headers(); a revalidated
                # fragment (a 304 on the wire) shows as its cached 200 here.
                headers = await response.request.all_headers()
                report.requests += 1
                report.statuses[int(response.status)] += 1
                if headers.get("if-none-match"):
                    report.revalidated += 1

            context.on(
                "response", lambda response: notes.append(asyncio.ensure_future(note(response)))
            )
            yield
            await asyncio.gather(*notes, return_exceptions=True)
        finally:
            await browser.close()


async def run_ui_bench(measure_s: float = 60.0, warm_up_s: float = 10.0) -> UiBenchReport:
    """Measure the API process's CPU without and with five polling pages."""
    with tempfile.TemporaryDirectory(prefix="gigafactory-bench-ui-") as tmp:
        data_dir = Path(tmp)
        server = TemporalDevServer(log_file=data_dir / "temporal.log")
        await server.start()
        try:
            return await _bench(data_dir, server, measure_s, warm_up_s)
        finally:
            server.stop()


async def _bench(
    data_dir: Path, server: TemporalDevServer, measure_s: float, warm_up_s: float
) -> UiBenchReport:
    _, admin_key = mint("gfk")
    settings = Settings(
        data_dir=data_dir,
        temporal_address=server.address,
        api_port=free_port(),
        admin_key=admin_key,
        budgets=True,
        control_task_queue="fleet-control-bench-ui",
    )
    api_url = settings.resolved_api_url
    store = await open_store(settings)
    client = await connect_temporal(settings)
    control = ControlPlane(client, store, settings)
    await control.start()
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    try:
        async with (
            _api_process(settings, data_dir / "api.log") as api,
            httpx.AsyncClient(
                base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
            ) as http,
        ):
            for factory_id in ("bench-a", "bench-b"):
                token_r = await http.post("/fleet/factories/enrollment-tokens")
                token = await enroll_factory(
                    api_url,
                    token_r.raise_for_status().json()["token"],
                    factory_id=factory_id,
                    engines=["sim"],
                    labels=[],
                    slots=2,
                )
                runtime = FactoryRuntime(
                    settings,
                    client,
                    factory_id=factory_id,
                    token=token,
                    engines=["sim"],
                    labels=[],
                    slots=2,
                    api_url=api_url,
                )
                stop = asyncio.Event()
                stops.append((stop, asyncio.create_task(runtime.run(stop))))
            running = await _make_fleet(http)
            report = UiBenchReport(
                jobs=JOBS,
                pages=["/ui", "/ui/jobs", *(f"/ui/jobs/{j}" for j in running[:2]), "/ui/budgets"],
                poll_interval_s=settings.ui_poll_interval_s,
                idle=CpuWindow(0, 0),
                polling=CpuWindow(0, 0),
            )
            await asyncio.sleep(warm_up_s)
            report.idle = await _measure(api.pid, measure_s)
            async with _open_pages(api_url, admin_key, report):
                await asyncio.sleep(warm_up_s)
                report.requests = report.revalidated = 0
                report.statuses.clear()
                report.polling = await _measure(api.pid, measure_s)
            return report
    finally:
        # Stopping factories under running jobs fails their activities: expected here.
        logging.getLogger("temporalio").setLevel(logging.CRITICAL)
        for stop, _ in stops:
            stop.set()
        for _, task in stops:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        await control.stop()
        await store.close()


def render_ui_report(report: UiBenchReport) -> str:
    """The figures, one per line."""
    statuses = ", ".join(f"{n} x {code}" for code, n in sorted(report.statuses.items()))
    window = report.polling.wall_s or 1.0
    return "\n".join(
        [
            f"fleet: {report.jobs} jobs; pages: {', '.join(report.pages)}",
            f"poll interval: {report.poll_interval_s:g}s (budget panel: twice that)",
            f"API CPU, no page open:  {report.idle.share:6.2%} of one core "
            f"({report.idle.cpu_s:.2f}s over {report.idle.wall_s:.0f}s)",
            f"API CPU, {len(report.pages)} pages open: {report.polling.share:6.2%} of one core "
            f"({report.polling.cpu_s:.2f}s over {report.polling.wall_s:.0f}s)",
            f"the pages' share:       {report.pages_share:6.2%} of one core",
            f"requests from the pages: {report.requests} ({report.requests / window:.1f}/s): "
            f"{statuses or 'none'}; {report.revalidated} sent If-None-Match",
        ]
    )
