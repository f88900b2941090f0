"""HttpReporter against an injected transport, and the in-memory RecordingReporter."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import httpx
import pytest

from activities.reporter import (
    REPORT_ABANDONED,
    STALE_REPORT_FENCED,
    Fenced,
    HttpReporter,
    RecordingReporter,
    ReportRejected,
)

Handler = Callable[[httpx.Request], httpx.Response]


def reporter(handler: Handler, requests: list[httpx.Request]) -> HttpReporter:
    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return HttpReporter("http://fleet.test/", "ft-secret", client, attempts=3, backoff_s=0)


async def test_append_log_posts_the_chunk_with_the_factory_token() -> None:
    requests: list[httpx.Request] = []
    rep = reporter(lambda r: httpx.Response(204), requests)

    await rep.append_log("job 1", "p1", 3, 7, "hello\n")

    [request] = requests
    assert request.method == "POST"
    assert str(request.url) == "http://fleet.test/fleet/jobs/job%201/log"
    assert request.headers["Authorization"] == "Bearer ft-secret"
    assert json.loads(request.content) == {
        "productId": "p1",
        "epoch": 3,
        "seq": 7,
        "text": "hello\n",
    }


async def test_upload_artifact_sends_raw_bytes_and_returns_the_id() -> None:
    requests: list[httpx.Request] = []
    rep = reporter(
        lambda r: httpx.Response(201, json={"id": "art-1", "name": "agent.log"}), requests
    )

    artifact_id = await rep.upload_artifact("j1", "p1", 2, "agent.log", b"\x00log", "text/plain")

    assert artifact_id == "art-1"
    [request] = requests
    assert request.url.path == "/fleet/jobs/j1/artifacts"
    assert dict(request.url.params) == {"name": "agent.log", "epoch": "2", "productId": "p1"}
    assert request.content == b"\x00log"
    assert request.headers["Content-Type"] == "text/plain"
    assert request.headers["Authorization"] == "Bearer ft-secret"


async def test_409_is_fenced_with_the_api_message() -> None:
    body = {"error": {"code": "fenced", "message": "epoch 1 is stale, current epoch is 2"}}
    requests: list[httpx.Request] = []
    rep = reporter(lambda r: httpx.Response(409, json=body), requests)

    with pytest.raises(Fenced, match="epoch 1 is stale"):
        await rep.append_log("j1", "p1", 1, 1, "x")
    assert len(requests) == 1, "a fence is final, never retried"


async def test_every_fenced_or_abandoned_report_is_logged_with_its_job_and_epoch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `gigafactory chaos` counts as the stale reports a factory sent."""
    caplog.set_level(logging.INFO, logger="activities.reporter")
    rep = reporter(lambda r: httpx.Response(409, json={"detail": "stale"}), [])
    with pytest.raises(Fenced):
        await rep.started("j.a", "p1", 4)
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    pending = asyncio.create_task(HttpReporter("http://f.test", "t", client).stopped("j2", "p", 7))
    await asyncio.sleep(0.05)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending

    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if STALE_REPORT_FENCED in line] == [
        f"{STALE_REPORT_FENCED} job=j.a epoch=4: start of job j.a: stale"
    ]
    assert [line for line in lines if REPORT_ABANDONED in line] == [
        f"{REPORT_ABANDONED} job=j2 epoch=7: stop of job j2"
    ]


async def test_5xx_and_connection_errors_are_retried() -> None:
    answers = iter([httpx.Response(503, text="busy"), None, httpx.Response(204)])

    def flaky(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        return answer

    requests: list[httpx.Request] = []
    await reporter(flaky, requests).append_log("j1", "p1", 1, 1, "x")
    assert len(requests) == 3


async def test_persistent_transport_errors_give_up_with_a_reason() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    requests: list[httpx.Request] = []
    with pytest.raises(ReportRejected, match="unreachable after 3 attempts"):
        await reporter(down, requests).append_log("j1", "p1", 1, 1, "x")
    assert len(requests) == 3


async def test_other_client_errors_are_not_retried_and_carry_the_message() -> None:
    requests: list[httpx.Request] = []
    rep = reporter(
        lambda r: httpx.Response(401, json={"detail": "factory token revoked"}), requests
    )

    with pytest.raises(ReportRejected, match="refused \\(401\\): factory token revoked") as caught:
        await rep.upload_artifact("j1", "p1", 1, "agent.log", b"x", "text/plain")
    assert caught.value.status_code == 401
    assert len(requests) == 1


async def test_an_upload_answer_without_an_id_is_an_error() -> None:
    rep = reporter(lambda r: httpx.Response(201, text="ok"), [])
    with pytest.raises(ReportRejected, match="without an artifact id"):
        await rep.upload_artifact("j1", "p1", 1, "agent.log", b"x", "text/plain")


async def test_recording_reporter_keeps_chunks_and_fences_stale_epochs() -> None:
    rep = RecordingReporter()
    await rep.append_log("j1", "p1", 1, 2, "b")
    await rep.append_log("j1", "p1", 1, 1, "a")
    await rep.append_log("j1", "p1", 1, 2, "bc")  # a resent chunk replaces the first copy
    first = await rep.upload_artifact("j1", "p1", 1, "agent.log", b"abc", "text/plain")

    assert rep.log_text("j1") == "abc"
    assert rep.artifact("j1", "agent.log") == rep.artifacts[first]

    rep.current_epochs["j1"] = 2
    with pytest.raises(Fenced):
        await rep.append_log("j1", "p1", 1, 3, "late")
    with pytest.raises(Fenced):
        await rep.upload_artifact("j1", "p1", 1, "agent.log", b"late", "text/plain")
    await rep.append_log("j1", "p1", 2, 1, "new")
    await rep.append_log("other", "p1", 1, 1, "unaffected")
    assert len(rep.fenced) == 2
    assert rep.log_text("j1", 2) == "new"
