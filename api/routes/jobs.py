"""Jobs: submit, list, read, cancel, ship; their runs, events and logs.

Reads come from the store's projections; changes go to Temporal (start, cancel) or, for
`ship`, to the projection (the job's workflow has completed by then, decision 0002).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    ROLE_RANK,
    CallerDep,
    ClockDep,
    FactoryDep,
    SettingsDep,
    StoreDep,
    TemporalDep,
    job_for,
    visible_job,
)
from api.errors import ApiError
from api.routes.routing import check_weights
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
    SubmitJob,
)
from gigafactory.contracts import JobTiming
from gigafactory.dag import DagError, DagLimits, validate_dag
from gigafactory.jobspec import inherit_child_fields, parse_job_spec
from gigafactory.models import (
    TERMINAL_STAGES,
    ApiKey,
    ChildSpec,
    Event,
    Job,
    JobSpec,
    LogChunk,
    Priority,
    Role,
    Stage,
)
from gigafactory.settings import Settings
from gigafactory.store.backend import StoreError
from gigafactory.store.fleet_store import FleetStore
from gigafactory.submit import submit_job

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/fleet/jobs", tags=["jobs"])


def job_out(job: Job) -> JobOut:
    """The API view of a stored job."""
    return JobOut.model_validate(job.model_dump(exclude={"etag"}))


def _too_large(what: str, size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"{what} is {size} bytes; the limit is {limit} bytes (FLEET_MAX_SPEC_BYTES)",
        field=what,
    )


def _product_not_found(product_id: str) -> ApiError:
    return ApiError(404, "not_found", f"product {product_id} not found", field="productId")


def build_spec(body: SubmitJob, key: ApiKey, settings: Settings) -> JobSpec:
    """The validated spec of a submit request, in a product the key may see."""
    fields = body.job_fields()
    if body.spec is not None:
        size = len(body.spec.encode())
        if size > settings.max_spec_bytes:
            raise _too_large("spec", size, settings.max_spec_bytes)
        spec = parse_job_spec(
            body.spec, source="api", max_bytes=settings.max_spec_bytes, overrides=fields
        )
    else:
        prompt_size = len((body.prompt or "").encode())
        if prompt_size > settings.max_spec_bytes:
            raise _too_large("prompt", prompt_size, settings.max_spec_bytes)
        spec = JobSpec.model_validate(inherit_child_fields(fields))
    if "product_id" not in spec.model_fields_set:
        # Neither the request nor the spec file named a product: the key's only one, if so.
        if len(key.products) != 1 or key.products[0] == "*":
            which = (
                "every product" if "*" in key.products else f"products {', '.join(key.products)}"
            )
            raise ApiError(
                422,
                "invalid_request",
                f"productId is required: this key may submit to {which}",
                field="productId",
            )
        spec = JobSpec.model_validate(
            inherit_child_fields({**spec.model_dump(by_alias=True), "productId": key.products[0]})
        )
    if not key.may_see(spec.product_id):
        raise _product_not_found(spec.product_id)
    if spec.routing_weights:
        check_weights(spec.routing_weights, layer="request override", field="routingWeights")
    check_dag(spec, settings)
    return spec


def check_dag(
    spec: JobSpec,
    settings: Settings,
    children: Sequence[ChildSpec] | None = None,
    existing: Sequence[ChildSpec] = (),
) -> None:
    """422 naming the id or edge when `children` (default: the spec's), with the parent's
    `existing` ones, are not a valid DAG; their own children are checked the same way."""
    limits = DagLimits(settings.dag_max_children, settings.dag_max_depth)
    top = list(spec.children if children is None else children)
    pending: list[tuple[str, Sequence[ChildSpec], Sequence[ChildSpec]]] = [("", top, existing)]
    while pending:
        where, new, known = pending.pop()
        try:
            validate_dag(new, limits, existing=known)
        except DagError as err:
            raise ApiError(422, "invalid_dag", f"{where}{err}", field="children") from None
        for child in new:
            if child.spec.product_id != spec.product_id:
                raise ApiError(
                    422,
                    "invalid_dag",
                    f"{where}child {child.id!r} is in product {child.spec.product_id}; "
                    f"children belong to their parent's product {spec.product_id}",
                    field="children",
                )
            if child.spec.children:
                pending.append((f"{where}child {child.id!r}: ", child.spec.children, ()))


@router.post("", status_code=201, response_model=JobOut)
async def submit(
    body: SubmitJob,
    key: CallerDep,
    store: StoreDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> JobOut:
    """Submit a job: its fields, or `spec` (a job-spec Markdown file) with overriding fields."""
    spec = build_spec(body, key, settings)
    job = await submit_job(
        store,
        temporal,
        spec,
        submitted_by=f"api:{key.id}",
        now=clock(),
        task_queue=settings.control_task_queue,
        timing=JobTiming(
            lease_heartbeat_timeout_s=settings.lease_heartbeat_timeout_s,
            dispatch_timeout_s=settings.dispatch_timeout_s,
            capacity_recheck_s=settings.capacity_recheck_s,
            stop_grace_s=settings.stop_grace_s,
            budgets=settings.budgets,
            preemption=settings.preemption,
        ),
    )
    return job_out(job)


@router.get("", response_model=JobList)
async def list_jobs(
    key: CallerDep,
    store: StoreDep,
    product_id: Annotated[str | None, Query(alias="productId")] = None,
    stage: Stage | None = None,
    priority: Priority | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    continuation: str | None = None,
) -> JobList:
    """Jobs newest first, limited to the key's products; pass `continuation` for more."""
    products: list[str] | None
    if product_id is not None:
        if not key.may_see(product_id):
            return JobList(items=[])  # as for a product without jobs: nothing to leak
        products = [product_id]
    else:
        products = None if "*" in key.products else list(key.products)
    try:
        page = await store.list_jobs(
            products=products,
            stage=stage,
            priority=priority,
            limit=limit,
            continuation=continuation,
        )
    except StoreError as err:
        if type(err) is not StoreError:  # NotFound & co. are not about the token
            raise
        raise ApiError(
            422,
            "invalid_request",
            f"invalid continuation token ({err}): pass the one the previous page returned "
            "with the same filters",
            field="continuation",
        ) from None
    return JobList(items=[job_out(j) for j in page.items], continuation=page.continuation)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, key: CallerDep, store: StoreDep) -> JobOut:
    """A job of the key's products."""
    return job_out(await visible_job(store, key, job_id))


@router.patch("/{job_id}", status_code=202, response_model=JobOut)
async def change_job(
    job_id: str,
    body: JobAction,
    key: CallerDep,
    store: StoreDep,
    temporal: TemporalDep,
    clock: ClockDep,
) -> JobOut:
    """`cancel` a job (the workflow stops it wherever it is) or `ship` a succeeded one."""
    job = await visible_job(store, key, job_id)
    actor = f"api:{key.id}"
    if body.action == "ship":
        if ROLE_RANK[key.role] < ROLE_RANK[Role.OPERATOR]:
            raise ApiError(
                403,
                "forbidden",
                f"shipping needs the operator role; API key {key.id} is a {key.role.value}",
            )
        return job_out(await _ship(store, job, actor, body.reason, clock()))
    if job.stage in TERMINAL_STAGES:
        raise ApiError(
            409, "conflict", f"job {job_id} is already {job.stage.value}; nothing to cancel"
        )
    try:
        await temporal.get_workflow_handle(job.workflow_id).cancel()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(
                409, "conflict", f"job {job_id}'s workflow has already finished; nothing to cancel"
            ) from None
        raise
    await store.append_event(
        Event(
            id=uuid.uuid4().hex,
            job_id=job.id,
            product_id=job.product_id,
            at=clock(),
            kind="cancel_requested",
            actor=actor,
            reason=body.reason or "cancel requested",
        )
    )
    return job_out(job)


async def _ship(store: FleetStore, job: Job, actor: str, note: str | None, now: datetime) -> Job:
    """succeeded -> shipped on the projection (compare-and-set), with an event."""
    seen: list[Stage] = []

    def mutate(j: Job) -> Job | None:
        seen.append(j.stage)
        if j.stage != Stage.SUCCEEDED:
            return None
        j.stage = Stage.SHIPPED
        j.stage_reason = note or f"shipped by {actor}"
        j.updated_at = now
        return j

    shipped = await store.update_job(job.id, job.product_id, mutate)
    if shipped.stage != Stage.SHIPPED or seen[-1] != Stage.SUCCEEDED:
        raise ApiError(
            409,
            "conflict",
            f"job {job.id} is {seen[-1].value}; only a succeeded job can be shipped",
        )
    await store.append_event(
        Event(
            id=f"{job.id}.shipped",
            job_id=job.id,
            product_id=job.product_id,
            at=now,
            kind="stage",
            actor=actor,
            stage=Stage.SHIPPED,
            from_stage=Stage.SUCCEEDED,
            reason=note or "shipped",
        )
    )
    return shipped


@router.get("/{job_id}/runs", response_model=RunList)
async def list_runs(job_id: str, key: CallerDep, store: StoreDep) -> RunList:
    """A job's attempts by lease epoch."""
    job = await visible_job(store, key, job_id)
    runs = await store.list_runs(job.id, job.product_id)
    return RunList(items=[RunOut.model_validate(r.model_dump()) for r in runs])


@router.get("/{job_id}/events", response_model=EventList)
async def list_events(
    job_id: str,
    key: CallerDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    continuation: str | None = None,
) -> EventList:
    """A job's events oldest first: transitions, routing decisions, fenced reports."""
    job = await visible_job(store, key, job_id)
    events, more = await store.list_events(
        job.id, job.product_id, limit=limit, continuation=continuation
    )
    return EventList(
        items=[EventOut.model_validate(e.model_dump()) for e in events], continuation=more
    )


@router.get("/{job_id}/log", response_model=LogOut)
async def read_log(
    job_id: str,
    key: CallerDep,
    store: StoreDep,
    epoch: Annotated[int | None, Query(ge=0)] = None,
    after_seq: Annotated[int, Query(alias="afterSeq", ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogOut:
    """A job's log chunks (of one lease `epoch`, or all), after `afterSeq`."""
    job = await visible_job(store, key, job_id)
    chunks = await store.read_log(
        job.id, job.product_id, epoch=epoch, after_seq=after_seq, limit=limit
    )
    return LogOut(
        items=[LogChunkOut(epoch=c.epoch, seq=c.seq, at=c.at, text=c.text) for c in chunks],
        text="".join(c.text for c in chunks),
        next_seq=chunks[-1].seq if chunks else after_seq,
    )


@router.post("/{job_id}/log", status_code=204, response_class=Response)
async def report_log(
    job_id: str, body: LogChunkIn, factory: FactoryDep, store: StoreDep, clock: ClockDep
) -> Response:
    """A factory streams a log chunk of the attempt (lease `epoch`) it runs."""
    now = clock()
    job = await job_for(store, job_id, body.product_id)
    job = await store.check_epoch(
        job.id, job.product_id, body.epoch, actor=f"factory:{factory.id}", what="log", at=now
    )
    ensure_assigned(job, factory.id, body.epoch)
    await store.append_log(
        LogChunk(
            id=f"{job.id}.{body.epoch}.{body.seq:08d}",
            job_id=job.id,
            product_id=job.product_id,
            epoch=body.epoch,
            seq=body.seq,
            at=now,
            text=body.text,
        )
    )
    return Response(status_code=204)


def ensure_assigned(job: Job, factory_id: str, epoch: int) -> None:
    """403 unless the job's current lease is held by `factory_id` (after check_epoch)."""
    if job.factory_id != factory_id or job.lease_epoch != epoch:
        raise ApiError(
            403,
            "forbidden",
            f"job {job.id} lease epoch {job.lease_epoch} is held by "
            f"{job.factory_id or 'no factory'}, not by factory {factory_id} at epoch {epoch}",
        )
