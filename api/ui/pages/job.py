"""A job's page (`/ui/jobs/{id}`): stage timeline, runs, artifacts, a log that follows,
the last routing decision, the DAG; cancel, ship, delete an artifact."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.ui.outcome import REFUSALS, act, refused
from api.ui.render import fragment, page
from api.ui.session import PostDep, UiDep

__all__ = ["router"]

router = APIRouter(prefix="/ui/jobs/{job_id}", include_in_schema=False)


def _here(job_id: str) -> str:
    return f"/ui/jobs/{quote(job_id, safe='')}"


@router.get("")
async def job_page(
    job_id: str,
    ui: UiDep,
    services: ServicesDep,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    """Everything about one job; the live parts poll until it ends."""
    try:
        detail = await services.overview.job_detail(ui.key, job_id)
    except REFUSALS as err:
        return refused(ui, err, back_to="/ui/jobs")
    return page(ui, "job.html", {"d": detail, "notice": notice, "error": error})


@router.get("/live")
async def job_live(job_id: str, request: Request, ui: UiDep, services: ServicesDep) -> Response:
    """The live part of the page; 286 (stop polling) once the job can change no more."""
    try:
        detail = await services.overview.job_detail(ui.key, job_id, with_log=False)
    except REFUSALS as err:
        return refused(ui, err, back_to="/ui/jobs")
    # A succeeded job may still be shipped: keep polling it, but not a job past that.
    final = detail.finished and detail.job.stage.value != "succeeded"
    return fragment(request, ui, "fragments/job_live.html", {"d": detail}, final=final)


@router.get("/log")
async def job_log(
    job_id: str,
    request: Request,
    ui: UiDep,
    services: ServicesDep,
    epoch: Annotated[int, Query(ge=0)] = 0,
    after: Annotated[int, Query(ge=-1)] = -1,
) -> Response:
    """Log lines after `after` of attempt `epoch`; follows the job to its next attempt."""
    try:
        tail = await services.overview.log_tail(ui.key, job_id, epoch=epoch, after_seq=after)
    except REFUSALS as err:
        return refused(ui, err, back_to=_here(job_id))
    final = tail.finished and not tail.chunks and tail.job.lease_epoch == epoch
    context = {"tail": tail, "epoch": epoch, "after": after, "final": final}
    return fragment(request, ui, "fragments/log_follow.html", context, final=final)


@router.post("/cancel")
async def cancel(
    job_id: str,
    ui: PostDep,
    services: ServicesDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Cancel the job wherever it is."""
    reason = reason.strip() or "cancelled from the web UI"
    cancelling = services.jobs.cancel(ui.key, job_id, reason)
    return await act(ui, cancelling, back_to=_here(job_id), notice="cancel requested")


@router.post("/ship")
async def ship(
    job_id: str,
    ui: PostDep,
    services: ServicesDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Ship a succeeded job (operators)."""
    shipping = services.shipping.ship(ui.key, job_id, note.strip() or None)
    return await act(
        ui,
        shipping,
        back_to=_here(job_id),
        notice=lambda done: "ship under way" if done.pending else "shipped",
    )


@router.get("/artifacts/{artifact_id}")
async def download(job_id: str, artifact_id: str, ui: UiDep, services: ServicesDep) -> Response:
    """An artifact's bytes, as a download."""
    try:
        artifact, data = await services.artifacts.content(ui.key, job_id, artifact_id)
    except REFUSALS as err:
        return refused(ui, err, back_to=_here(job_id))
    return Response(
        content=data,
        # Never rendered by the browser as a page of this site: a download, sniffing off.
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(artifact.name)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


@router.post("/artifacts/{artifact_id}/delete")
async def delete_artifact(
    job_id: str, artifact_id: str, ui: PostDep, services: ServicesDep
) -> Response:
    """Delete an artifact (operators)."""
    deleting = services.artifacts.delete(ui.key, job_id, artifact_id)
    return await act(ui, deleting, back_to=_here(job_id), notice="artifact deleted")
