"""Jobs: submit, list, read, cancel, ship; their runs, events and logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from api.deps import CallerDep, FactoryDep, ServicesDep
from api.schemas import (
    EventList,
    EventOut,
    JobAction,
    JobList,
    JobOut,
    LogChunkIn,
    LogChunkOut,
    LogOut,
    RunList,
    RunOut,
    StartedIn,
    SubmitJob,
)
from gigafactory.models import Priority, Stage
from gigafactory.services.idempotency import HEADER as IDEMPOTENCY_HEADER

__all__ = ["router"]

router = APIRouter(prefix="/fleet/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses={
        200: {
            "model": JobOut,
            "description": "An earlier submit with the same Idempotency-Key made this job "
            "(header `Idempotent-Replayed: true`); nothing new was created.",
        },
        409: {"description": "The Idempotency-Key was used for a different request."},
    },
)
async def submit(
    body: SubmitJob,
    key: CallerDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            description="Makes the submit safe to retry: the same key (per API key and "
            "product) with the same request returns the job it made, with 200.",
        ),
    ] = None,
) -> JobOut:
    """Submit a job: its fields, or `spec` (a job-spec Markdown file) with overriding fields."""
    submitted = await services.jobs.submit_once(key, body.submission(), idempotency_key)
    if submitted.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return JobOut.of(submitted.job)


@router.get("", response_model=JobList)
async def list_jobs(
    key: CallerDep,
    services: ServicesDep,
    product_id: Annotated[str | None, Query(alias="productId")] = None,
    stage: Stage | None = None,
    priority: Priority | None = None,
    engine: str | None = None,
    factory_id: Annotated[str | None, Query(alias="factoryId")] = None,
    title: Annotated[
        str | None, Query(description="A substring of the job's title (case ignored).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    continuation: str | None = None,
) -> JobList:
    """Jobs newest first, limited to the key's products; pass `continuation` for more.

    `engine`, `factoryId` (of the current or last attempt) and `title` (a substring of the
    title, else of the prompt's first line, case ignored) narrow the list.
    """
    page = await services.jobs.list_jobs(
        key,
        product_id=product_id,
        stage=stage,
        priority=priority,
        engine=engine,
        factory_id=factory_id,
        title=title,
        limit=limit,
        continuation=continuation,
    )
    return JobList(items=[JobOut.of(j) for j in page.items], continuation=page.continuation)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, key: CallerDep, services: ServicesDep) -> JobOut:
    """A job of the key's products."""
    return JobOut.of(await services.jobs.get(key, job_id))


@router.patch("/{job_id}", status_code=202, response_model=JobOut)
async def change_job(
    job_id: str, body: JobAction, key: CallerDep, services: ServicesDep, response: Response
) -> JobOut:
    """`cancel` a job (the workflow stops it wherever it is) or `ship` a succeeded one.

    Shipping a job with a repository pushes its branch from a factory: 200 with the job
    shipped once the push is done, 202 with the job still succeeded while it is under way,
    409 with git's reason when the push was refused.
    """
    if body.action == "ship":
        outcome = await services.shipping.ship(key, job_id, body.reason)
        response.status_code = 202 if outcome.pending else 200
        return JobOut.of(outcome.job)
    return JobOut.of(await services.jobs.cancel(key, job_id, body.reason))


@router.get("/{job_id}/runs", response_model=RunList)
async def list_runs(job_id: str, key: CallerDep, services: ServicesDep) -> RunList:
    """A job's attempts by lease epoch."""
    runs = await services.jobs.runs(key, job_id)
    return RunList(items=[RunOut.model_validate(r.model_dump()) for r in runs])


@router.get("/{job_id}/events", response_model=EventList)
async def list_events(
    job_id: str,
    key: CallerDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    continuation: str | None = None,
) -> EventList:
    """A job's events oldest first: transitions, routing decisions, fenced reports."""
    events, more = await services.jobs.events(key, job_id, limit=limit, continuation=continuation)
    return EventList(
        items=[EventOut.model_validate(e.model_dump()) for e in events], continuation=more
    )


@router.get("/{job_id}/log", response_model=LogOut)
async def read_log(
    job_id: str,
    key: CallerDep,
    services: ServicesDep,
    epoch: Annotated[int | None, Query(ge=0)] = None,
    after_seq: Annotated[int, Query(alias="afterSeq", ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogOut:
    """A job's log chunks (of one lease `epoch`, or all), after `afterSeq`."""
    chunks = await services.jobs.read_log(
        key, job_id, epoch=epoch, after_seq=after_seq, limit=limit
    )
    return LogOut(
        items=[LogChunkOut(epoch=c.epoch, seq=c.seq, at=c.at, text=c.text) for c in chunks],
        text="".join(c.text for c in chunks),
        next_seq=chunks[-1].seq if chunks else after_seq,
    )


@router.post("/{job_id}/started", status_code=204, response_class=Response)
async def report_started(
    job_id: str, body: StartedIn, factory: FactoryDep, services: ServicesDep
) -> Response:
    """A factory started the agent of the attempt (lease `epoch`) it holds: `running`."""
    await services.jobs.mark_running(factory.id, job_id, body.product_id, epoch=body.epoch)
    return Response(status_code=204)


@router.post("/{job_id}/stopped", status_code=204, response_class=Response)
async def report_stopped(
    job_id: str, body: StartedIn, factory: FactoryDep, services: ServicesDep
) -> Response:
    """A factory's agent of the attempt (lease `epoch`) stopped: its slot goes to the next
    job at once, while the run's record is still on its way."""
    await services.attempts.stopped(factory.id, job_id, body.product_id, epoch=body.epoch)
    return Response(status_code=204)


@router.post("/{job_id}/log", status_code=204, response_class=Response)
async def report_log(
    job_id: str, body: LogChunkIn, factory: FactoryDep, services: ServicesDep
) -> Response:
    """A factory streams a log chunk of the attempt (lease `epoch`) it runs."""
    await services.attempts.log(
        factory.id,
        job_id,
        body.product_id,
        epoch=body.epoch,
        seq=body.seq,
        text=body.text,
        agent_stopped=body.agent_stopped,
    )
    return Response(status_code=204)
