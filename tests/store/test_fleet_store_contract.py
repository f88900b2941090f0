"""The FleetStore contract: jobs, events, fencing, runs, artifacts, logs, factories, keys."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gigafactory.models import (
    FLEET_PARTITION,
    ApiKey,
    Artifact,
    AuditEvent,
    EnrollmentToken,
    Event,
    Factory,
    LogChunk,
    Priority,
    Role,
    Run,
    RunOutcome,
    SlotReservation,
    Stage,
)
from gigafactory.services.errors import Fenced
from gigafactory.services.lifecycle import Lifecycle
from gigafactory.store import (
    AlreadyExists,
    EnrollmentRefused,
    FleetStore,
    NotFound,
    PreconditionFailed,
)
from tests.store.conftest import T0, make_job

# --- jobs -------------------------------------------------------------------------------------


async def test_create_and_get_job(store: FleetStore):
    job = make_job("j1", priority="high")
    created = await store.create_job(job)
    assert created.etag
    assert created.model_dump() == job.model_dump()
    by_product = await store.get_job("j1", "acme")
    by_id = await store.get_job("j1")
    assert by_product == by_id == created
    assert by_id.spec.priority is Priority.HIGH
    with pytest.raises(AlreadyExists):
        await store.create_job(job)
    with pytest.raises(NotFound):
        await store.get_job("nope")
    with pytest.raises(NotFound):
        await store.get_job("j1", "other")


async def test_list_jobs_newest_first_with_filters(store: FleetStore):
    await store.create_job(make_job("a", "acme", minutes=1))
    await store.create_job(make_job("b", "acme", minutes=2, priority="high", stage="running"))
    await store.create_job(make_job("c", "beta", minutes=3, parent_id="a"))
    await store.create_job(make_job("d", "gamma", minutes=4, priority="high"))

    async def ids(**filters) -> list[str]:
        return [job.id for job in (await store.list_jobs(**filters)).items]

    assert await ids() == ["d", "c", "b", "a"]
    assert await ids(products=["acme", "beta"]) == ["c", "b", "a"]
    assert await ids(products=[]) == []
    assert await ids(stage=Stage.QUEUED) == ["d", "c", "a"]
    assert await ids(priority=Priority.HIGH) == ["d", "b"]
    assert await ids(priority=Priority.HIGH, products=["acme"]) == ["b"]
    assert await ids(parent_id="a") == ["c"]


async def test_list_jobs_by_engine_factory_and_title(store: FleetStore):
    await store.create_job(make_job("a", "acme", minutes=1, title="Fix the LOGIN page"))
    await store.create_job(
        make_job("b", "acme", minutes=2, engine="shell", factory_id="f1", title="Deploy")
    )
    await store.create_job(make_job("c", "beta", minutes=3, factory_id="f1"))  # no title
    await store.create_job(make_job("d", "beta", minutes=4, title="Ünïcode Straße login"))

    async def ids(**filters) -> list[str]:
        return [job.id for job in (await store.list_jobs(**filters)).items]

    assert await ids(engine="shell") == ["b"]
    assert await ids(engine="sim") == ["d", "c", "a"]
    assert await ids(factory_id="f1") == ["c", "b"]
    assert await ids(factory_id="f1", engine="sim") == ["c"]
    assert await ids(title="login") == ["d", "a"]  # case ignored
    assert await ids(title="STRASSE") == ["d"]  # casefolded: ß is ss
    assert await ids(title="do it") == ["c"]  # no title: the prompt's first line
    assert await ids(title="login", products=["acme"]) == ["a"]
    assert await ids(title="nothing like it") == []
    job = await store.get_job("a", "acme")
    assert job.spec.title == "Fix the LOGIN page"  # the search copy is not part of the job
    assert "titleSearch" not in job.wire()


async def test_list_jobs_pages(store: FleetStore):
    for i in range(5):
        await store.create_job(make_job(f"j{i}", minutes=i))
    first = await store.list_jobs(limit=2)
    second = await store.list_jobs(limit=2, continuation=first.continuation)
    third = await store.list_jobs(limit=2, continuation=second.continuation)
    assert [j.id for j in first.items + second.items + third.items] == [
        "j4",
        "j3",
        "j2",
        "j1",
        "j0",
    ]
    assert third.continuation is None


async def test_update_job_cas(store: FleetStore):
    created = await store.create_job(make_job("j1"))

    def to_running(job):
        job.stage = Stage.RUNNING
        return job

    updated = await store.update_job("j1", "acme", to_running)
    assert updated.stage is Stage.RUNNING
    assert updated.etag != created.etag
    assert (await store.update_job("j1", "acme", lambda job: None)) == updated

    # Concurrent increments all stick: the loser of each compare-and-set retries.
    def bump(job):
        job.attempts += 1
        return job

    await asyncio.gather(*(store.update_job("j1", "acme", bump) for _ in range(20)))
    assert (await store.get_job("j1", "acme")).attempts == 20

    with pytest.raises(NotFound):
        await store.update_job("nope", "acme", bump)


async def test_update_from_a_copy_just_read_saves_the_read_and_survives_staleness(
    store: FleetStore,
):
    await store.create_job(make_job("j1"))
    seen = await store.get_job("j1", "acme")

    def bump(job):
        job.attempts += 1
        return job

    # Fresh: applied to the copy as read.
    fresh = await store.update_job("j1", "acme", bump, seen=seen)
    assert fresh.attempts == 1
    # Stale (someone wrote since `seen` was read): the replace fails, the job is read again
    # and the other write is kept.
    stale = await store.update_job("j1", "acme", bump, seen=seen)
    assert stale.attempts == 2
    assert (await store.get_job("j1", "acme")).attempts == 2


async def test_stale_job_write_conflicts(store: FleetStore):
    created = await store.create_job(make_job("j1"))
    await store.update_job("j1", "acme", lambda job: job.model_copy(update={"attempts": 1}))
    assert created.etag is not None
    with pytest.raises(PreconditionFailed):
        await store.backend.replace("jobs", {"id": "j1", "productId": "acme"}, etag=created.etag)


async def test_delete_job(store: FleetStore):
    await store.create_job(make_job("j1"))
    await store.delete_job("j1", "acme")
    with pytest.raises(NotFound):
        await store.get_job("j1", "acme")
    with pytest.raises(NotFound):
        await store.delete_job("j1", "acme")


# --- events, fencing --------------------------------------------------------------------------


def _event(event_id: str, seconds: int, job_id: str = "j1") -> Event:
    return Event(
        id=event_id,
        job_id=job_id,
        product_id="acme",
        at=T0 + timedelta(seconds=seconds),
        kind="stage",
        actor="workflow",
        stage=Stage.RUNNING,
    )


async def test_events_idempotent_and_ordered(store: FleetStore):
    await store.append_event(_event("e3", 3))
    await store.append_event(_event("e1", 1))
    await store.append_event(_event("e2b", 2))
    await store.append_event(_event("e2a", 2))
    await store.append_event(_event("other", 0, job_id="j2"))
    kept = await store.append_event(_event("e1", 1).model_copy(update={"reason": "again"}))
    assert kept.reason is None  # the first write is kept

    events, continuation = await store.list_events("j1", "acme")
    assert [e.id for e in events] == ["e1", "e2a", "e2b", "e3"]
    assert continuation is None
    assert events[0] == _event("e1", 1)

    first, token = await store.list_events("j1", "acme", limit=3)
    rest, end = await store.list_events("j1", "acme", limit=3, continuation=token)
    assert [e.id for e in first + rest] == ["e1", "e2a", "e2b", "e3"]
    assert end is None


async def test_event_times_sort_across_precision_and_offsets(store: FleetStore):
    # Zero vs non-zero microseconds and non-UTC offsets must still order by instant.
    from datetime import timezone

    plus2 = timezone(timedelta(hours=2))
    e_late = _event("x", 0).model_copy(update={"at": T0.replace(microsecond=500_000)})
    e_early = _event("y", 0)
    e_mid = _event("z", 0).model_copy(
        update={"at": (T0 + timedelta(microseconds=1)).astimezone(plus2)}
    )
    for event in (e_late, e_early, e_mid):
        await store.append_event(event)
    events, _ = await store.list_events("j1", "acme")
    assert [e.id for e in events] == ["y", "z", "x"]


async def test_check_epoch_accepts_current_and_newer(store: FleetStore):
    await store.create_job(make_job("j1", lease_epoch=2))
    for epoch in (2, 3):
        job = await Lifecycle(store).check_report(
            "j1", "acme", epoch, actor="factory:f1", what="x", at=T0
        )
        assert job.lease_epoch == 2
    assert (await store.get_job("j1", "acme")).fenced_reports == 0
    assert (await store.list_events("j1", "acme"))[0] == []


async def test_check_epoch_fences_older(store: FleetStore):
    await store.create_job(make_job("j1", lease_epoch=2))
    lifecycle = Lifecycle(store)
    with pytest.raises(Fenced) as raised:
        await lifecycle.check_report("j1", "acme", 1, actor="factory:f1", what="heartbeat", at=T0)
    assert (raised.value.job_id, raised.value.reported, raised.value.current) == ("j1", 1, 2)
    with pytest.raises(Fenced):
        await lifecycle.check_report("j1", "acme", 0, actor="factory:f2", what="finish", at=T0)

    assert (await store.get_job("j1", "acme")).fenced_reports == 2
    events, _ = await store.list_events("j1", "acme")
    assert len(events) == 2
    fenced = next(e for e in events if e.actor == "factory:f1")
    assert fenced.kind == "fenced"
    assert fenced.epoch == 1
    assert fenced.reason == "stale report (heartbeat) from lease epoch 1; current epoch is 2"
    assert fenced.data == {"what": "heartbeat", "currentEpoch": 2}


# --- runs, artifacts, logs --------------------------------------------------------------------


def _run(epoch: int, job_id: str = "j1") -> Run:
    return Run(
        id=f"{job_id}.{epoch}",
        job_id=job_id,
        product_id="acme",
        epoch=epoch,
        factory_id="f1",
        engine="sim",
        started_at=T0,
    )


async def test_runs(store: FleetStore):
    for epoch in (10, 2, 1):
        await store.upsert_run(_run(epoch))
    await store.upsert_run(_run(1, job_id="j2"))
    finished = _run(2).model_copy(update={"outcome": RunOutcome.SUCCEEDED, "cost_usd": 1.5})
    await store.upsert_run(finished)
    assert await store.get_run("j1.2", "acme") == finished
    assert [r.epoch for r in await store.list_runs("j1", "acme")] == [1, 2, 10]
    with pytest.raises(NotFound):
        await store.get_run("j1.3", "acme")


def _artifact(artifact_id: str, job_id: str = "j1", minutes: int = 0) -> Artifact:
    return Artifact(
        id=artifact_id,
        job_id=job_id,
        product_id="acme",
        name=f"{artifact_id}.txt",
        size=3,
        sha256="0" * 64,
        created_at=T0 + timedelta(minutes=minutes),
        uploaded_by="factory:f1",
    )


async def test_artifacts(store: FleetStore):
    await store.put_artifact(_artifact("a2", minutes=2))
    await store.put_artifact(_artifact("a1", minutes=1))
    await store.put_artifact(_artifact("b1", job_id="j2"))
    assert await store.get_artifact("j1", "acme", "a1") == _artifact("a1", minutes=1)
    assert [a.id for a in await store.list_artifacts("j1", "acme")] == ["a1", "a2"]
    with pytest.raises(NotFound):
        await store.get_artifact("j1", "acme", "b1")  # another job's artifact
    with pytest.raises(NotFound):
        await store.delete_artifact("j1", "acme", "b1")
    await store.delete_artifact("j1", "acme", "a1")
    assert [a.id for a in await store.list_artifacts("j1", "acme")] == ["a2"]
    with pytest.raises(NotFound):
        await store.delete_artifact("j1", "acme", "a1")


def _chunk(epoch: int, seq: int, job_id: str = "j1") -> LogChunk:
    return LogChunk(
        id="ignored",
        job_id=job_id,
        product_id="acme",
        epoch=epoch,
        seq=seq,
        at=T0,
        text=f"{epoch}:{seq}",
    )


async def test_logs_ordering_after_seq_and_idempotency(store: FleetStore):
    for epoch, seq in [(2, 0), (1, 10), (1, 2), (10, 0), (1, 0), (2, 1), (1, 1)]:
        await store.append_log(_chunk(epoch, seq))
    await store.append_log(_chunk(1, 2).model_copy(update={"text": "duplicate"}))
    await store.append_log(_chunk(1, 0, job_id="j2"))

    chunks = await store.read_log("j1", "acme")
    assert [(c.epoch, c.seq) for c in chunks] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 10),
        (2, 0),
        (2, 1),
        (10, 0),
    ]
    assert chunks[2].text == "1:2"
    assert chunks[2].id == "j1.1.00000002"

    assert [c.seq for c in await store.read_log("j1", "acme", epoch=1)] == [0, 1, 2, 10]
    assert [c.seq for c in await store.read_log("j1", "acme", epoch=1, after_seq=1)] == [2, 10]
    assert [c.seq for c in await store.read_log("j1", "acme", epoch=1, limit=2)] == [0, 1]
    assert await store.read_log("j1", "acme", epoch=3) == []


# --- factories, slots -------------------------------------------------------------------------


def _factory(factory_id: str, token_id: str | None = None) -> Factory:
    return Factory(id=factory_id, engines=["sim"], slots=2, token_id=token_id, enrolled_at=T0)


async def test_factories(store: FleetStore):
    created = await store.create_factory(_factory("f2", token_id="t2"))
    await store.create_factory(_factory("f1", token_id="t1"))
    assert created.etag and created.product_id == FLEET_PARTITION
    with pytest.raises(AlreadyExists):
        await store.create_factory(_factory("f1"))
    assert (await store.get_factory("f2")) == created
    assert (await store.find_factory_by_token_id("t1")).id == "f1"
    with pytest.raises(NotFound):
        await store.find_factory_by_token_id("t9")
    with pytest.raises(NotFound):
        await store.get_factory("f9")
    assert [f.id for f in await store.list_factories()] == ["f1", "f2"]

    def heartbeat(factory):
        factory.last_heartbeat_at = T0 + timedelta(seconds=5)
        factory.running = 1
        return factory

    updated = await store.update_factory("f1", heartbeat)
    assert updated.running == 1
    assert (await store.get_factory("f1")).last_heartbeat_at == T0 + timedelta(seconds=5)


def _reservation(job_id: str, epoch: int = 1) -> SlotReservation:
    return SlotReservation(job_id=job_id, product_id="acme", epoch=epoch, reserved_at=T0)


async def test_reserve_slot_idempotent_and_capacity(store: FleetStore):
    empty = await store.get_slots("f1")
    assert (empty.id, empty.factory_id, empty.reservations) == ("slots-f1", "f1", [])
    assert await store.reserve_slot("f1", 2, _reservation("a"))
    assert await store.reserve_slot("f1", 2, _reservation("a"))  # idempotent
    assert await store.reserve_slot("f1", 2, _reservation("b"))
    assert not await store.reserve_slot("f1", 2, _reservation("c"))
    assert await store.reserve_slot("f1", 2, _reservation("b"))  # held, even when full
    assert not await store.reserve_slot("f2", 0, _reservation("a"))
    table = await store.get_slots("f1")
    assert [r.job_id for r in table.reservations] == ["a", "b"]
    assert table.etag
    assert [t.id for t in await store.list_slot_tables()] == ["slots-f1"]


async def test_release_slot(store: FleetStore):
    assert not await store.release_slot("f1", "a")  # no table yet
    await store.reserve_slot("f1", 3, _reservation("a", epoch=1))
    await store.reserve_slot("f1", 3, _reservation("a", epoch=2))
    await store.reserve_slot("f1", 3, _reservation("b"))
    assert not await store.release_slot("f1", "a", epoch=5)
    assert await store.release_slot("f1", "a", epoch=1)
    assert [(r.job_id, r.epoch) for r in (await store.get_slots("f1")).reservations] == [
        ("a", 2),
        ("b", 1),
    ]
    assert await store.release_slot("f1", "a")
    assert not await store.release_slot("f1", "a")
    assert [r.job_id for r in (await store.get_slots("f1")).reservations] == ["b"]
    assert await store.reserve_slot("f1", 1, _reservation("c")) is False
    assert await store.release_slot("f1", "b")
    assert await store.reserve_slot("f1", 1, _reservation("c"))


# --- API keys, enrollment tokens --------------------------------------------------------------


async def test_api_keys(store: FleetStore):
    key = ApiKey(
        id="k1", name="ci", role=Role.SUBMITTER, products=["acme"], key_hash="h", created_at=T0
    )
    assert await store.create_api_key(key) == key
    with pytest.raises(AlreadyExists):
        await store.create_api_key(key)
    await store.create_api_key(key.model_copy(update={"id": "k0", "products": ["*"]}))
    assert await store.get_api_key("k1") == key
    assert [k.id for k in await store.list_api_keys()] == ["k0", "k1"]
    revoked = await store.update_api_key(
        "k1", lambda k: k.model_copy(update={"revoked_at": T0 + timedelta(days=1)})
    )
    assert revoked.revoked_at == T0 + timedelta(days=1)
    assert (await store.get_api_key("k1")).revoked_at == revoked.revoked_at
    with pytest.raises(NotFound):
        await store.get_api_key("k9")


def _token(token_id: str = "t1", hours: int = 1) -> EnrollmentToken:
    return EnrollmentToken(
        id=token_id,
        token_hash="secret-hash",
        created_at=T0,
        expires_at=T0 + timedelta(hours=hours),
        created_by="api:k1",
    )


async def test_enrollment_consumed_once(store: FleetStore):
    await store.create_enrollment(_token())
    now = T0 + timedelta(minutes=5)
    used = await store.consume_enrollment("t1", "secret-hash", "f1", now)
    assert (used.used_at, used.used_by_factory) == (now, "f1")
    with pytest.raises(EnrollmentRefused, match="already used"):
        await store.consume_enrollment("t1", "secret-hash", "f2", now)


async def test_enrollment_refusals(store: FleetStore):
    await store.create_enrollment(_token("t1"))
    with pytest.raises(EnrollmentRefused):
        await store.consume_enrollment("t9", "secret-hash", "f1", T0)
    with pytest.raises(EnrollmentRefused):
        await store.consume_enrollment("t1", "wrong-hash", "f1", T0)
    with pytest.raises(EnrollmentRefused, match="expired"):
        await store.consume_enrollment("t1", "secret-hash", "f1", T0 + timedelta(hours=1))
    # None of the refusals used the token up.
    assert (await store.consume_enrollment("t1", "secret-hash", "f1", T0)).used_by_factory == "f1"


async def test_enrollment_concurrent_consumers_one_wins(store: FleetStore):
    await store.create_enrollment(_token())
    results = await asyncio.gather(
        *(store.consume_enrollment("t1", "secret-hash", f"f{i}", T0) for i in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, EnrollmentToken)]
    assert len(winners) == 1
    assert all(isinstance(r, EnrollmentRefused) for r in results if r not in winners)
    stored = await store.backend.read("enrollments", FLEET_PARTITION, "t1")
    assert stored["usedByFactory"] == winners[0].used_by_factory


# --- the audit log ----------------------------------------------------------------------------


async def test_audit_events_newest_first_filtered_and_paged(store: FleetStore):
    def event(n: int, product: str, action: str) -> AuditEvent:
        return AuditEvent(
            id=f"a{n:02d}",
            product_id=product,
            at=T0 + timedelta(seconds=n),
            actor="api:k1" if n % 2 else "api:k2",
            role="admin",
            action=action,
            target=f"job:{n}",
            outcome="ok",
        )

    for n in range(6):
        await store.record_audit(event(n, "acme", "job.cancel"))
    await store.record_audit(event(6, FLEET_PARTITION, "factory.revoke"))
    await store.record_audit(event(7, "beta", "job.ship"))
    with pytest.raises(AlreadyExists):
        await store.record_audit(event(7, "beta", "job.ship"))

    every = (await store.list_audit()).items
    assert [e.id for e in every] == [f"a{n:02d}" for n in reversed(range(8))]
    acme = await store.list_audit(partitions=["acme"], limit=4)
    assert [e.id for e in acme.items] == ["a05", "a04", "a03", "a02"]
    rest = await store.list_audit(partitions=["acme"], limit=4, continuation=acme.continuation)
    assert [e.id for e in rest.items] == ["a01", "a00"] and rest.continuation is None
    fleet = await store.list_audit(partitions=[FLEET_PARTITION, "beta"])
    assert [e.action for e in fleet.items] == ["job.ship", "factory.revoke"]
    by_actor = await store.list_audit(actor="api:k2", action="job.cancel")
    assert [e.id for e in by_actor.items] == ["a04", "a02", "a00"]
    assert [e.id for e in (await store.list_audit(target="job:3")).items] == ["a03"]
    since = await store.list_audit(since=T0 + timedelta(seconds=5))
    assert [e.id for e in since.items] == ["a07", "a06"]
