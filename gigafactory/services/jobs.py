"""Jobs: submit, list, read, cancel; their runs, events and logs.

A job is two things that must agree: its projection in the store and its JobWorkflow in
Temporal. Submit writes the projection (and a parent's whole subtree) first, so the
workflow's first transition always finds it; if the workflow cannot be started, everything
written is removed again, so nothing is left half-written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gigafactory.contracts import (
    JOB_WORKFLOW,
    JobTiming,
    JobWorkflowInput,
    TransitionInput,
    child_job_id,
    job_workflow_id,
)
from gigafactory.models import (
    KNOWN_ENGINES,
    TERMINAL_STAGES,
    ApiKey,
    ChildSpec,
    Event,
    Job,
    JobSpec,
    LogChunk,
    Priority,
    Run,
    Stage,
    WaitReason,
)
from gigafactory.services import idempotency
from gigafactory.services.access import visible_products
from gigafactory.services.audit import AuditLog
from gigafactory.services.clock import Clock
from gigafactory.services.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFoundError,
    Unavailable,
)
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.services.limits import check_log_chunk, check_page_size, continuation_checked
from gigafactory.services.rate_limits import RateLimits
from gigafactory.services.specs import Submission, build_spec
from gigafactory.settings import Settings
from gigafactory.store.backend import AlreadyExists, NotFound
from gigafactory.store.fleet_store import FleetStore, JobPage
from gigafactory.workflow_view import (
    initial_search_attributes,
    new_job_id,
    temporal_priority,
    workflow_details,
    workflow_summary,
)

__all__ = [
    "TITLE_SEARCH_MAX",
    "JobPage",
    "JobService",
    "Submitted",
    "job_not_found",
    "timing_from",
]

logger = logging.getLogger(__name__)

# The longest title search accepted.
TITLE_SEARCH_MAX = 200


def job_not_found(job_id: str) -> NotFoundError:
    """The one answer for a job that does not exist or that the caller may not see."""
    return NotFoundError(f"job {job_id} not found")


def timing_from(settings: Settings) -> JobTiming:
    """The timeouts and flags a job's workflow runs with (workflows read no environment)."""
    return JobTiming(
        lease_heartbeat_timeout_s=settings.lease_heartbeat_timeout_s,
        dispatch_timeout_s=settings.dispatch_timeout_s,
        stop_grace_s=settings.stop_grace_s,
        max_lost_attempts=settings.max_lost_attempts,
        budgets=settings.budgets,
        preemption=settings.preemption,
    )


@dataclass(frozen=True)
class Submitted:
    """A submit's job, and whether an earlier submit with the same idempotency key made it."""

    job: Job
    replayed: bool


@dataclass
class JobService:
    """Every operation on jobs, for the API, the web UI and the CLI (through the API)."""

    store: FleetStore
    temporal: Client
    settings: Settings
    lifecycle: Lifecycle
    clock: Clock
    audit: AuditLog
    rates: RateLimits
    # Products this process has recorded as existing (recording is idempotent; this only
    # saves the write on every submit).
    _known_products: set[str] = field(default_factory=set)

    # --- reading ------------------------------------------------------------------------------
    async def find(self, job_id: str, product_id: str | None = None) -> Job:
        """A job by id (in `product_id` when known). Raises NotFoundError."""
        try:
            return await self.store.get_job(job_id, product_id)
        except NotFound:
            raise job_not_found(job_id) from None

    async def get(self, key: ApiKey, job_id: str) -> Job:
        """A job the key may see; another product's job is "not found", as if it did not exist."""
        job = await self.find(job_id)
        if not key.may_see(job.product_id):
            raise job_not_found(job_id)
        return job

    async def list_jobs(
        self,
        key: ApiKey,
        *,
        product_id: str | None = None,
        stage: Stage | None = None,
        priority: Priority | None = None,
        parent_id: str | None = None,
        engine: str | None = None,
        factory_id: str | None = None,
        title: str | None = None,
        limit: int = 50,
        continuation: str | None = None,
    ) -> JobPage:
        """Jobs newest first, limited to the key's products.

        `engine`, `factory_id` (the factory of the current or last attempt) and `title` (a
        substring of the title, else of the prompt's first line, case ignored) narrow it.

        Raises:
            InvalidInput: an unknown engine, a title search over 200 characters, or a
                continuation token this listing did not return.
        """
        check_page_size(self.settings, limit)
        if engine is not None and engine not in KNOWN_ENGINES:
            raise InvalidInput(
                f"unknown engine {engine!r}; known engines: {', '.join(KNOWN_ENGINES)}",
                field="engine",
            )
        title = (title or "").strip() or None
        if title is not None and len(title) > TITLE_SEARCH_MAX:
            raise InvalidInput(
                f"the title search is {len(title)} characters; at most {TITLE_SEARCH_MAX}",
                field="title",
            )
        products = visible_products(key, product_id)
        if products == []:
            return JobPage([], None)  # as for a product without jobs: nothing to leak
        with continuation_checked():
            return await self.store.list_jobs(
                products=products,
                stage=stage,
                priority=priority,
                parent_id=parent_id,
                engine=engine,
                factory_id=factory_id,
                title=title,
                limit=limit,
                continuation=continuation,
            )

    async def runs(self, key: ApiKey, job_id: str) -> list[Run]:
        """A job's attempts by lease epoch."""
        job = await self.get(key, job_id)
        return await self.store.list_runs(job.id, job.product_id)

    async def events(
        self, key: ApiKey, job_id: str, *, limit: int = 500, continuation: str | None = None
    ) -> tuple[list[Event], str | None]:
        """A job's events oldest first: transitions, routing decisions, fenced reports."""
        check_page_size(self.settings, limit)
        job = await self.get(key, job_id)
        with continuation_checked():
            return await self.store.list_events(
                job.id, job.product_id, limit=limit, continuation=continuation
            )

    async def read_log(
        self,
        key: ApiKey,
        job_id: str,
        *,
        epoch: int | None = None,
        after_seq: int = -1,
        limit: int = 1000,
    ) -> list[LogChunk]:
        """A job's log chunks (of one lease `epoch`, or all), after `after_seq`."""
        check_page_size(self.settings, limit)
        job = await self.get(key, job_id)
        return await self.store.read_log(
            job.id, job.product_id, epoch=epoch, after_seq=after_seq, limit=limit
        )

    # --- submit -------------------------------------------------------------------------------
    async def submit(self, key: ApiKey, submission: Submission) -> Job:
        """Validate a submission and create the job (see `create`).

        Raises:
            RateLimited: the key submitted more than FLEET_RATE_SUBMIT_* allows.
        """
        return (await self.submit_once(key, submission, None)).job

    async def submit_once(
        self, key: ApiKey, submission: Submission, idempotency_key: str | None
    ) -> Submitted:
        """`submit`; with an idempotency key, a submit the key already made returns its
        job (`replayed`) instead of creating a second one, and finishes it when the submit
        that made it died half-way (`gigafactory.services.idempotency`).

        Raises:
            InvalidInput: a bad spec, or a malformed key.
            Conflict: the key was used for a different request.
            Unavailable: the first submit with the key is still starting the job.
            RateLimited: the key submitted more than FLEET_RATE_SUBMIT_* allows.
        """
        if idempotency_key is not None:
            idempotency.check_key(idempotency_key)
        self.rates.submits.take(f"api:{key.id}")
        spec = build_spec(submission, key, self.settings)
        submitted_by = f"api:{key.id}"
        if idempotency_key is None:
            return Submitted(await self.create(spec, submitted_by=submitted_by), replayed=False)
        job_id = idempotency.job_id_for(key.id, spec.product_id, idempotency_key)
        digest = idempotency.request_digest(spec)
        deadline = asyncio.get_running_loop().time() + idempotency.IN_PROGRESS_WAIT_S
        while True:
            try:
                earlier = await self.store.get_job(job_id, spec.product_id)
            except NotFound:
                try:
                    job = await self.create(
                        spec,
                        submitted_by=submitted_by,
                        job_id=job_id,
                        idempotent_as=(idempotency_key, digest),
                    )
                except AlreadyExists:  # the same key, at the same time: see what it made
                    continue
                return Submitted(job, replayed=False)
            if earlier.request_digest != digest:
                raise Conflict(
                    f"{idempotency.HEADER} {idempotency_key!r} was used for a different "
                    f"request (job {earlier.id}); use a new key for a new job",
                    field=idempotency.HEADER,
                )
            # A job its workflow has moved on (or finished: its history may be gone with
            # the namespace's retention) had its submit completed.
            untouched = earlier.stage == Stage.QUEUED and earlier.lease_epoch == 0
            if not untouched or await self._workflow_exists(earlier.workflow_id):
                return Submitted(earlier, replayed=True)
            if self.clock() - earlier.created_at >= idempotency.ABANDONED_AFTER:
                await self._finish_abandoned(earlier)
                return Submitted(earlier, replayed=True)
            if asyncio.get_running_loop().time() >= deadline:
                raise Unavailable(
                    f"the first submit with {idempotency.HEADER} {idempotency_key!r} is still "
                    f"starting job {earlier.id}; retry in a few seconds"
                )
            await asyncio.sleep(idempotency.POLL_S)

    async def _workflow_exists(self, workflow_id: str) -> bool:
        try:
            await self.temporal.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def _finish_abandoned(self, job: Job) -> None:
        """Finish a submit that wrote the job but died before starting its workflow (its
        API process was killed): its children's projections, then the workflow."""
        logger.warning("job %s: finishing the submit that wrote it and died", job.id)
        if job.spec.children:
            await self.create_children(
                job, job.spec.children, submitted_by=job.submitted_by or "api", existing_ok=True
            )
        try:
            await self._start_workflow(job.id, job.spec, job.workflow_id, idempotent=True)
        except WorkflowAlreadyStartedError:
            pass  # another repeat finished it meanwhile

    async def _start_workflow(
        self, job_id: str, spec: JobSpec, workflow_id: str, *, idempotent: bool
    ) -> None:
        await self.temporal.start_workflow(
            JOB_WORKFLOW,
            JobWorkflowInput(
                job_id=job_id,
                product_id=spec.product_id,
                spec=spec,
                timing=timing_from(self.settings),
            ),
            id=workflow_id,
            task_queue=self.settings.control_task_queue,
            # One workflow per job, ever: a job id is never reused for a second run. An
            # idempotent submit retried after a start that was rolled back (terminated)
            # may start its job's workflow again.
            id_reuse_policy=(
                WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
                if idempotent
                else WorkflowIDReusePolicy.REJECT_DUPLICATE
            ),
            search_attributes=initial_search_attributes(spec),
            static_summary=workflow_summary(job_id, spec),
            static_details=workflow_details(job_id, spec),
            priority=temporal_priority(spec),
        )

    async def create(
        self,
        spec: JobSpec,
        *,
        submitted_by: str,
        job_id: str | None = None,
        parent_id: str | None = None,
        idempotent_as: tuple[str, str] | None = None,
    ) -> Job:
        """Create a job from a validated spec: its projection, its children's, its first
        event and its JobWorkflow; on any failure nothing of it is left.

        Raises:
            AlreadyExists: a job with this id already exists in the product.
            WorkflowAlreadyStartedError: a workflow with the job's id exists.
            RPCError: Temporal refused the start.
            RuntimeError: a lazy client could not connect to Temporal.
        """
        now = self.clock()
        job_id = job_id or new_job_id()
        product_id = spec.product_id
        key, digest = idempotent_as or (None, None)
        workflow_id = job_workflow_id(product_id, job_id)
        job = await self.lifecycle.create(
            Job(
                id=job_id,
                product_id=product_id,
                workflow_id=workflow_id,
                spec=spec,
                stage=Stage.QUEUED,
                parent_id=parent_id,
                submitted_by=submitted_by,
                created_at=now,
                updated_at=now,
                idempotency_key=key,
                request_digest=digest,
            ),
            reason="submitted",
        )
        children: list[Job] = []
        try:
            if product_id not in self._known_products:
                await self.store.touch_product(product_id, now)
                self._known_products.add(product_id)
            # A parent's children (and theirs) exist from the start, waiting for their turn,
            # so the DAG view is whole at once and every child workflow finds its projection.
            children = await self.create_children(job, spec.children, submitted_by=submitted_by)
            await self._start_workflow(job_id, spec, workflow_id, idempotent=key is not None)
        except WorkflowAlreadyStartedError:
            if key is None:
                await self.remove_children(children)
                await self.lifecycle.remove(job)
                raise
            # The same key's repeat took this submit for dead and started the job itself.
            logger.info("job %s: its workflow was started by a repeat of the submit", job_id)
        except BaseException as err:
            logger.warning("submit of job %s rolled back: %s", workflow_id, err)
            # The start may have reached the server before the call failed (a timeout): a
            # workflow with this fresh id can only be ours, so stop it rather than leave it
            # running without its projection.
            await self._terminate_quietly(workflow_id)
            await self.remove_children(children)
            await self.lifecycle.remove(job)
            raise
        logger.info("submitted job %s (%s)", workflow_id, workflow_summary(job_id, spec))
        return job

    async def create_children(
        self,
        parent: Job,
        children: Sequence[ChildSpec],
        *,
        submitted_by: str,
        existing_ok: bool = False,
    ) -> list[Job]:
        """Write the projections of a parent's children, and theirs, each `queued` and waiting
        for its dependencies; their workflows are started by the parent's.

        On a failure, what this call wrote is removed again and the error re-raised.
        `existing_ok`: a child already written (by a submit that died half-way) is kept
        as it is, and not counted as written by this call.

        Returns:
            The jobs written, parents before their children.
        """
        now = self.clock()
        written: list[Job] = []
        try:
            pending = [(parent, list(children))]
            while pending:
                owner, specs = pending.pop(0)
                for child in specs:
                    job_id = child_job_id(owner.id, child.id)
                    waits = ", ".join(child.depends_on)
                    child_job = Job(
                        id=job_id,
                        product_id=owner.product_id,
                        workflow_id=job_workflow_id(owner.product_id, job_id),
                        spec=child.spec,
                        stage=Stage.QUEUED,
                        wait_reason=WaitReason.DEPS,
                        stage_reason=(
                            f"waiting for {waits}" if waits else "waiting for its parent"
                        ),
                        parent_id=owner.id,
                        submitted_by=submitted_by,
                        created_at=now,
                        updated_at=now,
                    )
                    try:
                        job = await self.lifecycle.create(
                            child_job,
                            reason=f"submitted as child {child.id!r} of job {owner.id}",
                        )
                    except AlreadyExists:
                        if not existing_ok:
                            raise
                        job = await self.store.get_job(job_id, owner.product_id)
                    else:
                        written.append(job)
                    if child.spec.children:
                        pending.append((job, list(child.spec.children)))
        except BaseException:
            await self.remove_children(written)
            raise
        return written

    async def remove_children(self, jobs: Sequence[Job]) -> None:
        """Undo `create_children`."""
        for job in reversed(jobs):
            await self.lifecycle.remove(job)

    async def _terminate_quietly(self, workflow_id: str) -> None:
        try:
            await self.temporal.get_workflow_handle(workflow_id).terminate(
                reason="submit rolled back", rpc_timeout=timedelta(seconds=5)
            )
        except Exception as err:  # best effort: usually there is no such workflow (NOT_FOUND)
            logger.debug("rollback of %s: terminate: %s", workflow_id, err)

    # --- changing -----------------------------------------------------------------------------
    async def cancel(self, key: ApiKey, job_id: str, reason: str | None = None) -> Job:
        """Ask the job's workflow to cancel (it stops the job wherever it is).

        Raises:
            Conflict: the job, or its workflow, has already finished.
        """
        async with self.audit.action(key, "job.cancel", f"job:{job_id}", reason=reason) as entry:
            job = await self.get(key, job_id)
            entry.product_id = job.product_id
            if job.stage in TERMINAL_STAGES:
                raise Conflict(f"job {job_id} is already {job.stage.value}; nothing to cancel")
            try:
                await self.temporal.get_workflow_handle(job.workflow_id).cancel()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    raise Conflict(
                        f"job {job_id}'s workflow has already finished; nothing to cancel"
                    ) from None
                raise
            await self.lifecycle.record_event(
                job.id,
                job.product_id,
                kind="cancel_requested",
                actor=f"api:{key.id}",
                at=self.clock(),
                reason=reason or "cancel requested",
            )
        return job

    # --- factory reports ----------------------------------------------------------------------
    async def assigned(
        self, factory_id: str, job_id: str, product_id: str | None, epoch: int, *, what: str
    ) -> Job:
        """The job a factory reports for, if its lease `epoch` is current and is held by that
        factory.

        Raises:
            NotFoundError: no such job.
            Fenced: `epoch` is stale (recorded as a fenced report).
            Forbidden: the current lease is held by another factory or epoch.
            RateLimited: the factory reported more than FLEET_RATE_REPORT_* allows.
        """
        self.rates.reports.take(f"factory:{factory_id}")
        job = await self.find(job_id, product_id)
        job = await self.lifecycle.check_report(
            job.id,
            job.product_id,
            epoch,
            actor=f"factory:{factory_id}",
            what=what,
            at=self.clock(),
            seen=job,
        )
        if job.factory_id != factory_id or job.lease_epoch != epoch:
            raise Forbidden(
                f"job {job.id} lease epoch {job.lease_epoch} is held by "
                f"{job.factory_id or 'no factory'}, not by factory {factory_id} at epoch {epoch}"
            )
        return job

    async def mark_running(
        self, factory_id: str, job_id: str, product_id: str | None, *, epoch: int
    ) -> Job:
        """A factory started the agent of lease `epoch`: the job is `running` (a report for
        an attempt already past `dispatched` changes nothing)."""
        job = await self.assigned(factory_id, job_id, product_id, epoch, what="agent started")
        if job.stage != Stage.DISPATCHED:
            return job
        now = self.clock()
        moved = await self.lifecycle.transition(
            TransitionInput(
                job_id=job.id,
                product_id=job.product_id,
                event_id=f"{job.id}.{epoch}.running",
                at=now,
                stage=Stage.RUNNING,
                reason=f"agent started on {factory_id}",
                actor=f"factory:{factory_id}",
                epoch=epoch,
                factory_id=factory_id,
            ),
            seen=job,
        )
        assert moved is not None
        return moved

    async def append_log(
        self,
        factory_id: str,
        job_id: str,
        product_id: str | None,
        *,
        epoch: int,
        seq: int,
        text: str,
    ) -> Job:
        """A factory streams a log chunk of the attempt (lease `epoch`) it runs."""
        check_log_chunk(self.settings, text)
        job = await self.assigned(factory_id, job_id, product_id, epoch, what="log")
        await self.store.append_log(
            LogChunk(
                id=f"{job.id}.{epoch}.{seq:08d}",
                job_id=job.id,
                product_id=job.product_id,
                epoch=epoch,
                seq=seq,
                at=self.clock(),
                text=text,
            )
        )
        return job
