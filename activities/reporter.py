"""How a factory reports to the control plane: log chunks and artifacts, under a lease epoch.

`FleetReporter` is what `run_agent` needs; `HttpReporter` calls the API with the factory
token, `RecordingReporter` keeps everything in memory (tests, demos). Both refuse a report
from a stale lease epoch with `Fenced`: the run that made it is a zombie and must stop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from opentelemetry import propagate

__all__ = [
    "REPORT_ABANDONED",
    "STALE_REPORT_FENCED",
    "Fenced",
    "FleetReporter",
    "HttpReporter",
    "RecordedArtifact",
    "RecordedLogChunk",
    "RecordingReporter",
    "ReportRejected",
]

logger = logging.getLogger(__name__)

# Logged by the factory for every report the control plane fenced (HTTP 409), and for every
# report given up while the control plane had it (its run was stopped, e.g. fenced by
# another report, before the answer came): what a chaos run counts as stale reports sent,
# to compare with the `fenced` events the store recorded. Each line names `job=` and `epoch=`.
STALE_REPORT_FENCED = "stale report fenced"
REPORT_ABANDONED = "report abandoned in flight"


class Fenced(Exception):
    """The control plane refused a report: its lease epoch is older than the job's."""


class ReportRejected(Exception):
    """The control plane refused a report for another reason (bad token, bad request...).

    Attributes:
        status_code: the HTTP status, or None when no response was received at all.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class FleetReporter(Protocol):
    """Where `run_agent` sends a run's log and artifacts."""

    async def started(self, job_id: str, product_id: str, epoch: int) -> None:
        """The agent of lease `epoch` started (the job moves to `running`)."""

    async def stopped(self, job_id: str, product_id: str, epoch: int) -> None:
        """The agent of lease `epoch` stopped: its slot may go to the next job."""

    async def append_log(
        self, job_id: str, product_id: str, epoch: int, seq: int, text: str, *, last: bool = False
    ) -> None:
        """Store log chunk `seq` of lease `epoch` (re-sending a seq replaces it); `last`: the
        agent has stopped (its slot may go to the next job).

        Raises:
            Fenced: `epoch` is stale.
        """
        ...

    async def upload_artifact(
        self,
        job_id: str,
        product_id: str,
        epoch: int,
        name: str,
        data: bytes,
        content_type: str,
    ) -> str:
        """Store a file the run produced; returns the artifact's id.

        Raises:
            Fenced: `epoch` is stale.
        """
        ...

    async def download_artifact(
        self, job_id: str, product_id: str, epoch: int, artifact_id: str
    ) -> bytes:
        """The bytes of one of the job's artifacts (an earlier attempt's session bundle).

        Raises:
            Fenced: `epoch` is stale.
            ReportRejected: the artifact is unknown or the API refused.
        """
        ...


class HttpReporter:
    """`FleetReporter` over the fleet API, authenticated with the factory token.

    Transient failures (no connection, timeouts, 5xx, 429) are retried with exponential
    backoff; a 409 is `Fenced`; any other error is `ReportRejected` with the API's message.
    A retried log chunk is harmless (chunks are keyed by seq); a retried artifact upload
    whose first response was lost may store the artifact twice.
    """

    def __init__(
        self,
        base_url: str,
        factory_token: str,
        client: httpx.AsyncClient | None = None,
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        on_unauthorized: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {factory_token}"}
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0))
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        # Told when the API refuses the factory token (revoked or rotated away), so the
        # factory stops taking work at once rather than at its next heartbeat.
        self.on_unauthorized = on_unauthorized

    async def aclose(self) -> None:
        """Close the HTTP client if this reporter created it."""
        if self._owns_client:
            await self._client.aclose()

    async def append_log(
        self, job_id: str, product_id: str, epoch: int, seq: int, text: str, *, last: bool = False
    ) -> None:
        """`POST /fleet/jobs/{id}/log` -> 204."""
        body: dict[str, Any] = {"productId": product_id, "epoch": epoch, "seq": seq, "text": text}
        if last:
            body["agentStopped"] = True
        await self._request(
            "POST",
            f"/fleet/jobs/{quote(job_id, safe='')}/log",
            what=f"log chunk {seq} of job {job_id}",
            job=job_id,
            epoch=epoch,
            json=body,
        )

    async def upload_artifact(
        self,
        job_id: str,
        product_id: str,
        epoch: int,
        name: str,
        data: bytes,
        content_type: str,
    ) -> str:
        """`POST /fleet/jobs/{id}/artifacts?name=&epoch=&productId=` (raw body) -> 201 {"id"}."""
        response = await self._request(
            "POST",
            f"/fleet/jobs/{quote(job_id, safe='')}/artifacts",
            what=f"artifact {name} of job {job_id}",
            job=job_id,
            epoch=epoch,
            params={"name": name, "epoch": str(epoch), "productId": product_id},
            content=data,
            headers={"Content-Type": content_type},
        )
        try:
            artifact_id = response.json()["id"]
        except (ValueError, KeyError, TypeError) as err:
            raise ReportRejected(
                f"artifact {name} of job {job_id}: the API answered {response.status_code} "
                "without an artifact id",
                response.status_code,
            ) from err
        return str(artifact_id)

    async def started(self, job_id: str, product_id: str, epoch: int) -> None:
        """`POST /fleet/jobs/{id}/started`."""
        await self._request(
            "POST",
            f"/fleet/jobs/{quote(job_id, safe='')}/started",
            what=f"start of job {job_id}",
            job=job_id,
            epoch=epoch,
            json={"productId": product_id, "epoch": epoch},
        )

    async def stopped(self, job_id: str, product_id: str, epoch: int) -> None:
        """`POST /fleet/jobs/{id}/stopped`."""
        await self._request(
            "POST",
            f"/fleet/jobs/{quote(job_id, safe='')}/stopped",
            what=f"stop of job {job_id}",
            job=job_id,
            epoch=epoch,
            json={"productId": product_id, "epoch": epoch},
        )

    async def download_artifact(
        self, job_id: str, product_id: str, epoch: int, artifact_id: str
    ) -> bytes:
        """`GET /fleet/jobs/{id}/artifacts/{artifactId}/content?productId=&epoch=`."""
        response = await self._request(
            "GET",
            f"/fleet/jobs/{quote(job_id, safe='')}/artifacts/{quote(artifact_id, safe='')}/content",
            what=f"artifact {artifact_id} of job {job_id}",
            job=job_id,
            epoch=epoch,
            params={"epoch": str(epoch), "productId": product_id},
        )
        return response.content

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        job: str,
        epoch: int,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = self.base_url + path
        all_headers = {**self._headers, **(headers or {})}
        # The run's trace (when tracing is on) continues in the API's span for the report.
        propagate.inject(all_headers)
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = await self._client.request(method, url, headers=all_headers, **kwargs)
            except asyncio.CancelledError:
                logger.info("%s job=%s epoch=%d: %s", REPORT_ABANDONED, job, epoch, what)
                raise
            except httpx.TransportError as err:
                if last:
                    raise ReportRejected(
                        f"{what}: control plane unreachable after {attempt} attempts: {err!r}"
                    ) from err
                logger.warning("%s: %r (attempt %d, retrying)", what, err, attempt)
            else:
                status = response.status_code
                if status < 300:
                    return response
                message = _message(response)
                if status == 409:
                    logger.warning(
                        "%s job=%s epoch=%d: %s: %s", STALE_REPORT_FENCED, job, epoch, what, message
                    )
                    raise Fenced(f"{what}: {message}")
                if status == 401 and self.on_unauthorized is not None:
                    self.on_unauthorized(message)
                if status != 429 and status < 500:
                    raise ReportRejected(f"{what}: refused ({status}): {message}", status)
                if last:
                    raise ReportRejected(
                        f"{what}: failed ({status}) after {attempt} attempts: {message}", status
                    )
                logger.warning(
                    "%s: HTTP %d (attempt %d, retrying): %s", what, status, attempt, message
                )
            await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # the loop always returns or raises


def _message(response: httpx.Response) -> str:
    """The error message of an API response: `{"error": {"message"}}`, `{"detail"}` or text."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("detail"):
            return str(body["detail"])
        if body.get("message"):
            return str(body["message"])
    return str(body)


@dataclass(frozen=True)
class RecordedLogChunk:
    """One log chunk a `RecordingReporter` accepted."""

    job_id: str
    product_id: str
    epoch: int
    seq: int
    text: str


@dataclass(frozen=True)
class RecordedArtifact:
    """One artifact a `RecordingReporter` accepted."""

    id: str
    job_id: str
    product_id: str
    epoch: int
    name: str
    data: bytes
    content_type: str


@dataclass
class RecordingReporter:
    """An in-memory `FleetReporter` that fences like the API does.

    Set `current_epochs[job_id]` (or `current_epoch` for every job) to the job's lease epoch
    to make older epochs `Fenced`; with neither set every report is accepted.
    """

    current_epoch: int | None = None
    current_epochs: dict[str, int] = field(default_factory=dict)
    logs: dict[tuple[str, int, int], RecordedLogChunk] = field(default_factory=dict)
    artifacts: dict[str, RecordedArtifact] = field(default_factory=dict)
    fenced: list[str] = field(default_factory=list)
    starts: list[tuple[str, int]] = field(default_factory=list)
    stops: list[tuple[str, int]] = field(default_factory=list)

    def _check(self, job_id: str, epoch: int, what: str) -> None:
        current = self.current_epochs.get(job_id, self.current_epoch)
        if current is not None and epoch < current:
            message = (
                f"{what} of job {job_id}: lease epoch {epoch} is stale, current epoch is {current}"
            )
            self.fenced.append(message)
            raise Fenced(message)

    async def started(self, job_id: str, product_id: str, epoch: int) -> None:
        """Note that the agent of `epoch` started."""
        self._check(job_id, epoch, "start")
        self.starts.append((job_id, epoch))

    async def stopped(self, job_id: str, product_id: str, epoch: int) -> None:
        """Note that the agent of `epoch` stopped."""
        self._check(job_id, epoch, "stop")
        self.stops.append((job_id, epoch))

    async def append_log(
        self, job_id: str, product_id: str, epoch: int, seq: int, text: str, *, last: bool = False
    ) -> None:
        """Keep the chunk (replacing an earlier one with the same seq)."""
        self._check(job_id, epoch, f"log chunk {seq}")
        self.logs[(job_id, epoch, seq)] = RecordedLogChunk(job_id, product_id, epoch, seq, text)
        if last:
            self.stops.append((job_id, epoch))

    async def upload_artifact(
        self,
        job_id: str,
        product_id: str,
        epoch: int,
        name: str,
        data: bytes,
        content_type: str,
    ) -> str:
        """Keep the artifact; its id is derived from the job, epoch, name and content."""
        self._check(job_id, epoch, f"artifact {name}")
        digest = hashlib.sha256(f"{job_id}/{epoch}/{name}".encode() + data).hexdigest()[:16]
        self.artifacts[digest] = RecordedArtifact(
            digest, job_id, product_id, epoch, name, data, content_type
        )
        return digest

    async def download_artifact(
        self, job_id: str, product_id: str, epoch: int, artifact_id: str
    ) -> bytes:
        """The bytes of an artifact this reporter kept."""
        self._check(job_id, epoch, f"artifact {artifact_id}")
        artifact = self.artifacts.get(artifact_id)
        if artifact is None or artifact.job_id != job_id:
            raise ReportRejected(f"job {job_id} has no artifact {artifact_id}", 404)
        return artifact.data

    def log_chunks(self, job_id: str, epoch: int | None = None) -> list[RecordedLogChunk]:
        """A job's chunks (of one epoch, or all) in (epoch, seq) order."""
        return [
            chunk
            for key, chunk in sorted(self.logs.items())
            if key[0] == job_id and (epoch is None or key[1] == epoch)
        ]

    def log_text(self, job_id: str, epoch: int | None = None) -> str:
        """The streamed log of a job, chunks joined in order."""
        return "".join(chunk.text for chunk in self.log_chunks(job_id, epoch))

    def artifact(self, job_id: str, name: str) -> RecordedArtifact | None:
        """The newest-epoch artifact of a job with that name, if any."""
        matching = [a for a in self.artifacts.values() if a.job_id == job_id and a.name == name]
        return max(matching, key=lambda a: a.epoch) if matching else None
