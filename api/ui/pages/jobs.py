"""The job table (`/ui/jobs`): filters, title search, pages, and the submit dialog."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.ui.forms import JobFilters, SubmitForm, errors_at_fields, parse_submit_form
from api.ui.outcome import ACCESS_REFUSALS, REFUSALS, refused, status_for, to_page
from api.ui.render import fragment, is_htmx, page
from api.ui.session import PostDep, UiContext, UiDep
from gigafactory.models import KNOWN_ENGINES, Priority, Stage
from gigafactory.services import Services
from gigafactory.services.errors import Conflict
from gigafactory.services.jobs import JobPage

__all__ = ["router"]

router = APIRouter(prefix="/ui/jobs", include_in_schema=False)

PAGE_SIZE = 25


def _choices() -> dict[str, object]:
    return {
        "stages": [s.value for s in Stage],
        "priorities": [p.value for p in Priority],
        "engines": list(KNOWN_ENGINES),
    }


async def _page_of(ui: UiContext, services: Services, filters: JobFilters) -> JobPage:
    return await services.jobs.list_jobs(
        ui.key,
        product_id=filters.product,
        stage=filters.stage,
        priority=filters.priority,
        engine=filters.engine,
        factory_id=filters.factory,
        title=filters.title,
        limit=PAGE_SIZE,
        continuation=filters.after,
    )


@router.get("")
async def jobs_page(
    request: Request, ui: UiDep, services: ServicesDep, error: str | None = None
) -> Response:
    """Jobs newest first, filtered; the first page stays live."""
    filters = JobFilters.parse(request.query_params)
    try:
        jobs = await _page_of(ui, services, filters)
    except REFUSALS as err:
        return refused(ui, err, back_to="/ui/jobs")
    context = {"filters": filters, "jobs": jobs, "form": SubmitForm(), "error": error}
    return page(ui, "jobs.html", {**context, **_choices()})


@router.get("/rows")
async def job_rows(request: Request, ui: UiDep, services: ServicesDep) -> Response:
    """The table's rows and pager alone, polled by the first page."""
    filters = JobFilters.parse(request.query_params)
    try:
        jobs = await _page_of(ui, services, filters)
    except REFUSALS as err:
        return refused(ui, err, back_to="/ui/jobs")
    return fragment(request, ui, "fragments/job_rows.html", {"filters": filters, "jobs": jobs})


@router.post("")
async def submit(request: Request, ui: PostDep, services: ServicesDep) -> Response:
    """Submit a job from the dialog; refusals come back at the field they name."""
    form = await parse_submit_form(await request.form(), services.settings.max_spec_bytes)
    try:
        submitted = await services.jobs.submit_once(ui.key, form.submission(), form.idempotency_key)
    except (*REFUSALS, ValueError) as err:
        form.errors = errors_at_fields(err, form)
        if isinstance(err, Conflict):
            # This dialog already made a job and was then changed: sent again, it is a new one.
            form.idempotency_key = SubmitForm().idempotency_key
        # At the field it names, with its own status: 422 for bad input, 403 or 404 when
        # the key may not submit there, 409 when the dialog already made another job.
        status = status_for(err) if isinstance(err, (*ACCESS_REFUSALS, Conflict)) else 422
        context = {"form": form, "open_dialog": True, **_choices()}
        if is_htmx(request):
            return page(ui, "fragments/submit_form.html", context, status=status)
        filters = JobFilters()
        try:
            jobs = await _page_of(ui, services, filters)
        except REFUSALS as list_err:
            return refused(ui, list_err, back_to="/ui/jobs")
        return page(ui, "jobs.html", {**context, "filters": filters, "jobs": jobs}, status=status)
    job = submitted.job
    target = f"/ui/jobs/{job.id}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    notice = f"job {job.id} was already submitted" if submitted.replayed else None
    return to_page(target, notice=notice or f"job {job.id} submitted")
