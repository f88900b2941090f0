"""Artifacts: files a job produced. Metadata in the store, bytes in the blob store.

Factories upload with their token and the lease epoch they run under (fenced when stale);
people upload with an API key. Bytes are written before metadata, so a listed artifact
always has its content.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from gigafactory.models import ApiKey, Artifact, Job, Role
from gigafactory.services.access import Principal, require_role
from gigafactory.services.audit import AuditLog
from gigafactory.services.clock import Clock
from gigafactory.services.errors import InvalidInput, NotFoundError, TooLarge
from gigafactory.services.jobs import JobService, job_not_found
from gigafactory.settings import Settings
from gigafactory.store.backend import NotFound
from gigafactory.store.blobs import BlobStore
from gigafactory.store.fleet_store import FleetStore

__all__ = ["ArtifactService", "NAME_MAX"]

logger = logging.getLogger(__name__)

NAME_MAX = 255


def _blob_key(artifact: Artifact) -> str:
    return f"{artifact.product_id}/{artifact.job_id}/{artifact.id}"


def _artifact_id(job_id: str, epoch: int | None, name: str) -> str:
    # An upload under a lease epoch is idempotent: a factory retrying after a lost response
    # overwrites its own artifact instead of adding a copy.
    if epoch is None:
        return uuid.uuid4().hex[:16]
    return hashlib.sha256(f"{job_id}\0{epoch}\0{name}".encode()).hexdigest()[:16]


@dataclass
class ArtifactService:
    """A job's files."""

    store: FleetStore
    blobs: BlobStore
    settings: Settings
    jobs: JobService
    clock: Clock
    audit: AuditLog

    def too_large(self) -> TooLarge:
        """The refusal of an artifact over FLEET_MAX_ARTIFACT_BYTES."""
        limit = self.settings.max_artifact_bytes
        return TooLarge(f"artifact exceeds the limit of {limit} bytes (FLEET_MAX_ARTIFACT_BYTES)")

    async def upload(
        self,
        caller: Principal,
        job_id: str,
        *,
        name: str,
        data: bytes,
        epoch: int | None = None,
        product_id: str | None = None,
        content_type: str | None = None,
    ) -> Artifact:
        """Store an artifact. A factory must pass the lease `epoch` it runs under (a stale
        one is fenced); a person may pass one too (checked the same way)."""
        if not name or len(name) > NAME_MAX:
            raise InvalidInput(f"name must be 1 to {NAME_MAX} characters", field="name")
        if any(ord(c) < 32 for c in name):
            raise InvalidInput("name must not contain control characters", field="name")
        if len(data) > self.settings.max_artifact_bytes:
            raise self.too_large()
        job = await self._job_for(caller, job_id, epoch, product_id)
        artifact = Artifact(
            id=_artifact_id(job.id, epoch, name),
            job_id=job.id,
            product_id=job.product_id,
            name=name,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=content_type or "application/octet-stream",
            epoch=epoch,
            created_at=self.clock(),
            uploaded_by=caller.actor,
        )
        await self.blobs.put(_blob_key(artifact), data)
        stored = await self.store.put_artifact(artifact)
        logger.info("job %s: artifact %s (%d bytes) from %s", job.id, name, len(data), caller.actor)
        return stored

    async def _job_for(
        self,
        caller: Principal,
        job_id: str,
        epoch: int | None,
        product_id: str | None,
        what: str = "artifact",
    ) -> Job:
        if caller.factory is not None:
            if epoch is None:
                raise InvalidInput(
                    "a factory must pass the lease epoch it runs under", field="epoch"
                )
            return await self.jobs.assigned(caller.factory.id, job_id, product_id, epoch, what=what)
        assert caller.key is not None
        job = await self.jobs.get(caller.key, job_id)
        if product_id is not None and product_id != job.product_id:
            raise job_not_found(job_id)
        if epoch is not None:
            job = await self.jobs.lifecycle.check_report(
                job.id,
                job.product_id,
                epoch,
                actor=caller.actor,
                what="artifact",
                at=self.clock(),
                seen=job,
            )
        return job

    async def list_artifacts(self, key: ApiKey, job_id: str) -> list[Artifact]:
        """A job's artifacts, oldest first."""
        job = await self.jobs.get(key, job_id)
        return await self.store.list_artifacts(job.id, job.product_id)

    async def get(self, key: ApiKey, job_id: str, artifact_id: str) -> Artifact:
        """An artifact's metadata."""
        job = await self.jobs.get(key, job_id)
        try:
            return await self.store.get_artifact(job.id, job.product_id, artifact_id)
        except NotFound:
            raise NotFoundError(f"job {job.id} has no artifact {artifact_id}") from None

    async def content(self, key: ApiKey, job_id: str, artifact_id: str) -> tuple[Artifact, bytes]:
        """An artifact's metadata and bytes."""
        artifact = await self.get(key, job_id, artifact_id)
        return artifact, await self._bytes(artifact)

    async def _bytes(self, artifact: Artifact) -> bytes:
        try:
            return await self.blobs.get(_blob_key(artifact))
        except NotFound:
            raise NotFoundError(
                f"the content of artifact {artifact.id} is missing from the blob store"
            ) from None

    async def content_for(
        self,
        caller: Principal,
        job_id: str,
        artifact_id: str,
        *,
        epoch: int | None = None,
        product_id: str | None = None,
    ) -> tuple[Artifact, bytes]:
        """An artifact's bytes for a person, or for the factory holding the job's current
        lease (`epoch`): a resumed attempt restores what an earlier one uploaded."""
        if caller.key is not None:
            return await self.content(caller.key, job_id, artifact_id)
        job = await self._job_for(caller, job_id, epoch, product_id, what="artifact read")
        try:
            artifact = await self.store.get_artifact(job.id, job.product_id, artifact_id)
        except NotFound:
            raise NotFoundError(f"job {job.id} has no artifact {artifact_id}") from None
        return artifact, await self._bytes(artifact)

    async def delete(self, key: ApiKey, job_id: str, artifact_id: str) -> None:
        """Delete an artifact (operators): its metadata first (it disappears from listings),
        then its bytes."""
        target = f"job:{job_id}/artifact:{artifact_id}"
        async with self.audit.action(key, "artifact.delete", target) as entry:
            require_role(key, Role.OPERATOR, "deleting artifacts")
            artifact = await self.get(key, job_id, artifact_id)
            entry.product_id = artifact.product_id
            entry.data["name"] = artifact.name
            await self.store.delete_artifact(artifact.job_id, artifact.product_id, artifact.id)
            await self.blobs.delete(_blob_key(artifact))
