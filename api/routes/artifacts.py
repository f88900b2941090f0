"""Artifacts: files a job produced. Metadata in the store, bytes in the blob store.

Factories upload with their token and the lease epoch they run under (fenced when stale);
people upload with an API key. Bytes are written before metadata, so a listed artifact
always has its content.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import (
    BlobsDep,
    CallerDep,
    ClockDep,
    OperatorDep,
    PrincipalDep,
    SettingsDep,
    StoreDep,
    job_for,
    job_not_found,
    visible_job,
)
from api.errors import ApiError
from api.routes.jobs import ensure_assigned
from api.schemas import ArtifactList, ArtifactOut
from gigafactory.models import Artifact, Job
from gigafactory.store.backend import NotFound
from gigafactory.store.blobs import BlobStore
from gigafactory.store.fleet_store import FleetStore

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/fleet/jobs/{job_id}/artifacts", tags=["artifacts"])

_NAME_MAX = 255


def artifact_out(artifact: Artifact) -> ArtifactOut:
    """The API view of stored artifact metadata."""
    return ArtifactOut.model_validate(artifact.model_dump())


def _blob_key(artifact: Artifact) -> str:
    return f"{artifact.product_id}/{artifact.job_id}/{artifact.id}"


def _artifact_id(job_id: str, epoch: int | None, name: str) -> str:
    # An upload under a lease epoch is idempotent: a factory retrying after a lost response
    # overwrites its own artifact instead of adding a copy.
    if epoch is None:
        return uuid.uuid4().hex[:16]
    return hashlib.sha256(f"{job_id}\0{epoch}\0{name}".encode()).hexdigest()[:16]


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes."""
    too_large = ApiError(
        413,
        "too_large",
        f"artifact exceeds the limit of {limit} bytes (FLEET_MAX_ARTIFACT_BYTES)",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            raise too_large
    return bytes(data)


@router.post("", status_code=201, response_model=ArtifactOut)
async def upload(
    job_id: str,
    request: Request,
    caller: PrincipalDep,
    store: StoreDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    clock: ClockDep,
    name: Annotated[str, Query(min_length=1, max_length=_NAME_MAX)],
    epoch: Annotated[int | None, Query(ge=0)] = None,
    product_id: Annotated[str | None, Query(alias="productId")] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> ArtifactOut:
    """Upload an artifact (raw body). Factories pass the lease `epoch` they run under."""
    if any(ord(c) < 32 for c in name):
        raise ApiError(
            422, "invalid_request", "name must not contain control characters", field="name"
        )
    now = clock()
    if caller.factory is not None:
        if epoch is None:
            raise ApiError(
                422,
                "invalid_request",
                "a factory must pass the lease epoch it runs under",
                field="epoch",
            )
        job = await job_for(store, job_id, product_id)
    else:
        assert caller.key is not None
        job = await visible_job(store, caller.key, job_id)
        if product_id is not None and product_id != job.product_id:
            raise job_not_found(job_id)
    if epoch is not None:
        job = await store.check_epoch(
            job.id, job.product_id, epoch, actor=caller.actor, what="artifact", at=now
        )
        if caller.factory is not None:
            ensure_assigned(job, caller.factory.id, epoch)
    data = await _read_limited(request, settings.max_artifact_bytes)
    artifact = Artifact(
        id=_artifact_id(job.id, epoch, name),
        job_id=job.id,
        product_id=job.product_id,
        name=name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type or "application/octet-stream",
        epoch=epoch,
        created_at=now,
        uploaded_by=caller.actor,
    )
    await blobs.put(_blob_key(artifact), data)
    stored = await store.put_artifact(artifact)
    logger.info("job %s: artifact %s (%d bytes) from %s", job.id, name, len(data), caller.actor)
    return artifact_out(stored)


@router.get("", response_model=ArtifactList)
async def list_artifacts(job_id: str, key: CallerDep, store: StoreDep) -> ArtifactList:
    """A job's artifacts, oldest first."""
    job = await visible_job(store, key, job_id)
    return ArtifactList(
        items=[artifact_out(a) for a in await store.list_artifacts(job.id, job.product_id)]
    )


async def _artifact(store: FleetStore, job: Job, artifact_id: str) -> Artifact:
    try:
        return await store.get_artifact(job.id, job.product_id, artifact_id)
    except NotFound:
        raise ApiError(404, "not_found", f"job {job.id} has no artifact {artifact_id}") from None


async def _content(blobs: BlobStore, artifact: Artifact) -> Response:
    try:
        data = await blobs.get(_blob_key(artifact))
    except NotFound:
        raise ApiError(
            404,
            "not_found",
            f"the content of artifact {artifact.id} is missing from the blob store",
        ) from None
    return Response(
        content=data,
        media_type=artifact.content_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(artifact.name)}",
            "ETag": f'"{artifact.sha256}"',
        },
    )


@router.get(
    "/{artifact_id}",
    response_model=ArtifactOut,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_artifact(
    job_id: str,
    artifact_id: str,
    key: CallerDep,
    store: StoreDep,
    blobs: BlobsDep,
    download: bool = False,
) -> ArtifactOut | Response:
    """An artifact's metadata, or its bytes with `?download=1`."""
    job = await visible_job(store, key, job_id)
    artifact = await _artifact(store, job, artifact_id)
    if download:
        return await _content(blobs, artifact)
    return artifact_out(artifact)


@router.get(
    "/{artifact_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_artifact_content(
    job_id: str,
    artifact_id: str,
    caller: PrincipalDep,
    store: StoreDep,
    blobs: BlobsDep,
    epoch: Annotated[int | None, Query(ge=0)] = None,
    product_id: Annotated[str | None, Query(alias="productId")] = None,
) -> Response:
    """An artifact's bytes, with its content type.

    A factory may read the artifacts of a job whose current lease it holds (`epoch`): a
    resumed attempt restores the agent session an earlier attempt uploaded.
    """
    if caller.factory is not None:
        job = await job_for(store, job_id, product_id)
        ensure_assigned(job, caller.factory.id, -1 if epoch is None else epoch)
    else:
        assert caller.key is not None
        job = await visible_job(store, caller.key, job_id)
    return await _content(blobs, await _artifact(store, job, artifact_id))


@router.delete("/{artifact_id}", status_code=204, response_class=Response)
async def delete_artifact(
    job_id: str, artifact_id: str, key: OperatorDep, store: StoreDep, blobs: BlobsDep
) -> Response:
    """Delete an artifact: its metadata first (it disappears from listings), then its bytes."""
    job = await visible_job(store, key, job_id)
    artifact = await _artifact(store, job, artifact_id)
    await store.delete_artifact(job.id, job.product_id, artifact.id)
    await blobs.delete(_blob_key(artifact))
    return Response(status_code=204)
