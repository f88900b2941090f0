"""Artifacts: files a job produced (upload, list, read, download, delete)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import CallerDep, PrincipalDep, ServicesDep
from api.schemas import ArtifactList, ArtifactOut
from gigafactory.models import Artifact
from gigafactory.services.artifacts import NAME_MAX

__all__ = ["router"]

router = APIRouter(prefix="/fleet/jobs/{job_id}/artifacts", tags=["artifacts"])


async def _read_limited(request: Request, services: ServicesDep) -> bytes:
    """The request body, refused with 413 as soon as it exceeds the artifact limit."""
    limit = services.settings.max_artifact_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise services.artifacts.too_large()
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            raise services.artifacts.too_large()
    return bytes(data)


def _download(artifact: Artifact, data: bytes) -> Response:
    return Response(
        content=data,
        media_type=artifact.content_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(artifact.name)}",
            "ETag": f'"{artifact.sha256}"',
        },
    )


@router.post("", status_code=201, response_model=ArtifactOut)
async def upload(
    job_id: str,
    request: Request,
    caller: PrincipalDep,
    services: ServicesDep,
    name: Annotated[str, Query(min_length=1, max_length=NAME_MAX)],
    epoch: Annotated[int | None, Query(ge=0)] = None,
    product_id: Annotated[str | None, Query(alias="productId")] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> ArtifactOut:
    """Upload an artifact (raw body). Factories pass the lease `epoch` they run under."""
    data = await _read_limited(request, services)
    artifact = await services.artifacts.upload(
        caller,
        job_id,
        name=name,
        data=data,
        epoch=epoch,
        product_id=product_id,
        content_type=content_type,
    )
    return ArtifactOut.of(artifact)


@router.get("", response_model=ArtifactList)
async def list_artifacts(job_id: str, key: CallerDep, services: ServicesDep) -> ArtifactList:
    """A job's artifacts, oldest first."""
    artifacts = await services.artifacts.list_artifacts(key, job_id)
    return ArtifactList(items=[ArtifactOut.of(a) for a in artifacts])


@router.get(
    "/{artifact_id}",
    response_model=ArtifactOut,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_artifact(
    job_id: str, artifact_id: str, key: CallerDep, services: ServicesDep, download: bool = False
) -> ArtifactOut | Response:
    """An artifact's metadata, or its bytes with `?download=1`."""
    if download:
        return _download(*await services.artifacts.content(key, job_id, artifact_id))
    return ArtifactOut.of(await services.artifacts.get(key, job_id, artifact_id))


@router.get(
    "/{artifact_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_artifact_content(
    job_id: str,
    artifact_id: str,
    caller: PrincipalDep,
    services: ServicesDep,
    epoch: Annotated[int | None, Query(ge=0)] = None,
    product_id: Annotated[str | None, Query(alias="productId")] = None,
) -> Response:
    """An artifact's bytes, with its content type.

    A factory may read the artifacts of a job whose current lease it holds (`epoch`): a
    resumed attempt restores the agent session an earlier attempt uploaded.
    """
    content = await services.artifacts.content_for(
        caller, job_id, artifact_id, epoch=epoch, product_id=product_id
    )
    return _download(*content)


@router.delete("/{artifact_id}", status_code=204, response_class=Response)
async def delete_artifact(
    job_id: str, artifact_id: str, key: CallerDep, services: ServicesDep
) -> Response:
    """Delete an artifact: its metadata first (it disappears from listings), then its bytes."""
    await services.artifacts.delete(key, job_id, artifact_id)
    return Response(status_code=204)
