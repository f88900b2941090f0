"""The jobs service: what a key may see and do, and the submit saga's rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigafactory.job_rules import gives_up
from gigafactory.models import Role
from gigafactory.services import Services
from gigafactory.services.errors import Conflict, Forbidden, InvalidInput, NotFoundError
from gigafactory.services.jobs import timing_from
from gigafactory.services.specs import Submission
from gigafactory.settings import Settings
from tests.services.conftest import key
from tests.store.conftest import make_job


async def test_another_products_job_is_not_found_and_never_listed(services: Services) -> None:
    await services.store.create_job(make_job("j1", "acme"))
    await services.store.create_job(make_job("j2", "beta"))
    acme = key(Role.SUBMITTER, ["acme"])
    assert (await services.jobs.get(acme, "j1")).id == "j1"
    with pytest.raises(NotFoundError, match="job j2 not found"):
        await services.jobs.get(acme, "j2")
    assert [j.id for j in (await services.jobs.list_jobs(acme)).items] == ["j1"]
    assert (await services.jobs.list_jobs(acme, product_id="beta")).items == []


async def test_a_bad_continuation_token_names_the_field(services: Services) -> None:
    with pytest.raises(InvalidInput) as refused:
        await services.jobs.list_jobs(key(), continuation="not-a-token")
    assert refused.value.field == "continuation"


async def test_shipping_needs_an_operator_and_cancelling_a_finished_job_conflicts(
    services: Services,
) -> None:
    await services.store.create_job(make_job("j1", stage="succeeded"))
    with pytest.raises(Forbidden, match="shipping needs the operator role"):
        await services.shipping.ship(key(Role.SUBMITTER, ["acme"]), "j1")
    with pytest.raises(Conflict, match="already succeeded"):
        await services.jobs.cancel(key(Role.SUBMITTER, ["acme"]), "j1")
    shipped = await services.shipping.ship(key(Role.OPERATOR, ["acme"]), "j1", "go")
    assert (shipped.job.stage.value, shipped.pending) == ("shipped", False)


async def test_submit_writes_the_whole_dag_and_starts_only_the_parent(services: Services) -> None:
    children = [
        {"id": "a", "spec": {"prompt": "a"}},
        {"id": "b", "dependsOn": ["a"], "spec": {"prompt": "b", "children": [
            {"id": "c", "spec": {"prompt": "c"}}]}},
    ]  # fmt: skip
    parent = await services.jobs.submit(
        key(),
        Submission(
            fields={"engine": "sim", "prompt": "", "productId": "acme", "children": children}
        ),  # fmt: skip
    )
    ids = {j.id for j in (await services.jobs.list_jobs(key(), limit=10)).items}
    assert ids == {parent.id, f"{parent.id}.a", f"{parent.id}.b", f"{parent.id}.b.c"}
    handle = services.temporal.get_workflow_handle(parent.workflow_id)
    assert (await handle.describe()).workflow_type == "JobWorkflow"
    tree = await services.tree.dag(key(), parent.id)
    assert [c.id for c in tree.children] == [f"{parent.id}.a", f"{parent.id}.b"]
    assert [c.id for c in tree.children[1].children] == [f"{parent.id}.b.c"]
    await handle.terminate(reason="test cleanup")
    assert await services.store.list_products() == ["acme"]


def test_a_jobs_timing_comes_from_the_settings_at_submit(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        lease_heartbeat_timeout_s=4,
        dispatch_timeout_s=9,
        stop_grace_s=1,
        max_lost_attempts=7,
        budgets=True,
    )
    timing = timing_from(settings)
    assert (timing.lease_heartbeat_timeout_s, timing.dispatch_timeout_s) == (4, 9)
    assert (timing.stop_grace_s, timing.max_lost_attempts, timing.budgets) == (1, 7, True)
    assert not gives_up(6, timing) and gives_up(7, timing)
