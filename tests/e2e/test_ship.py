"""Jobs with a repository, end to end on the dev server: the agent's edit is committed on
`gigafactory/<jobId>`; SHIP through the API pushes that branch to the ship remote (a local
bare repository standing in for it) and removes the worktree; a refused push leaves the
job succeeded with git's reason and may be retried; a cancelled job's worktree goes."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gigafactory.contracts import ship_workflow_id
from launch.devserver import TemporalDevServer
from launch.factory_runtime import factory_workspaces
from tests.e2e.conftest import fleet_settings, open_fleet
from tests.e2e.harness import Fleet, cli, unique_label
from tests.replay.recording import record_history
from tests.support.agents import git, git_repo

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
async def fleet(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    """A control plane whose ship remote is `<remotes>/<repository name>.git`."""
    remotes = tmp_path_factory.mktemp("remotes")
    settings = fleet_settings(
        temporal_server.address,
        tmp_path_factory.mktemp("ship-fleet"),
        ship_remote=str(remotes / "{name}.git"),
        ship_wait_s=60,
    )
    async with open_fleet(settings) as fleet:
        yield fleet


def bare_remote(fleet: Fleet, repo: Path) -> Path:
    """The ship remote of `repo` under the fleet's template, created empty."""
    assert fleet.settings.ship_remote is not None
    path = Path(fleet.settings.ship_remote.replace("{name}", repo.name))
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    return path


async def edited_job(fleet: Fleet, tmp_path: Path, name: str) -> tuple[dict[str, Any], Path]:
    """A shell job that writes a file in a fresh repository, run to success on a factory
    of its own; returns the succeeded job and the repository."""
    label = unique_label()
    await fleet.start_factory(engines=["shell"], labels=[label])
    repo = git_repo(tmp_path / name)
    job = await fleet.submit(
        {
            "engine": "shell",
            "prompt": "echo shipped-by-gigafactory > greeting.txt",
            "productId": "ship",
            "capabilities": [label],
            "repo": str(repo),
        }
    )
    return await fleet.wait_for(job["id"], ["succeeded"], timeout=60), repo


async def ship(fleet: Fleet, job_id: str, note: str | None = None) -> Any:
    return await fleet.http.patch(
        f"/fleet/jobs/{job_id}", json={"action": "ship", "reason": note}, headers=fleet.auth()
    )


async def test_ship_pushes_the_jobs_commit_and_removes_its_worktree(
    fleet: Fleet, tmp_path: Path
) -> None:
    job, repo = await edited_job(fleet, tmp_path, "shop")
    remote = bare_remote(fleet, repo)
    (run,) = await fleet.runs(job["id"])
    assert run["branch"] == f"gigafactory/{job['id']}" and run["commit"]
    workspaces = factory_workspaces(fleet.settings, run["factoryId"])
    worktree = workspaces.worktree_for("ship", job["id"])
    assert (worktree / "greeting.txt").read_text() == "shipped-by-gigafactory\n"

    r = await ship(fleet, job["id"], "release 7")
    assert r.status_code == 200, r.text
    shipped = r.json()
    assert shipped["stage"] == "shipped"
    shipment = shipped["shipment"]
    assert (shipment["branch"], shipment["commit"], shipment["factoryId"]) == (
        run["branch"],
        run["commit"],
        run["factoryId"],
    )
    assert shipment["remote"] == str(remote)
    # The remote holds the branch at the run's commit, with the agent's edit.
    assert git(remote, "rev-parse", run["branch"]) == run["commit"]
    assert git(remote, "show", f"{run['commit']}:greeting.txt") == "shipped-by-gigafactory"
    assert not worktree.exists()
    events = await fleet.events(job["id"])
    last = events[-1]
    assert (last["stage"], last["reason"], last["data"]["commit"]) == (
        "shipped",
        "release 7",
        run["commit"],
    )
    # Shipping again is refused: it is shipped.
    again = await ship(fleet, job["id"])
    assert again.status_code == 409 and "is shipped" in again.json()["error"]["message"]
    await record_history(fleet.client, "ship", ship_workflow_id(job["productId"], job["id"]))


async def test_a_refused_push_leaves_the_job_succeeded_with_gits_reason(
    fleet: Fleet, tmp_path: Path
) -> None:
    job, repo = await edited_job(fleet, tmp_path, "guarded")
    remote = bare_remote(fleet, repo)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch protection: pushes need review' >&2\nexit 1\n")
    hook.chmod(0o755)

    r = await ship(fleet, job["id"])
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "ship_refused"
    assert "pushes need review" in error["message"], error
    assert (await fleet.job(job["id"]))["stage"] == "succeeded"
    refused = [e for e in await fleet.events(job["id"]) if e["kind"] == "ship_refused"]
    assert len(refused) == 1 and "pushes need review" in refused[0]["reason"]
    with pytest.raises(subprocess.CalledProcessError):
        git(remote, "rev-parse", "--verify", f"gigafactory/{job['id']}")

    # Once the remote accepts, the same job ships.
    hook.unlink()
    r = await ship(fleet, job["id"])
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "shipped"
    (run,) = await fleet.runs(job["id"])
    assert git(remote, "rev-parse", run["branch"]) == run["commit"]


async def test_the_cli_ships_and_says_where_the_branch_went(fleet: Fleet, tmp_path: Path) -> None:
    job, repo = await edited_job(fleet, tmp_path, "clirepo")
    remote = bare_remote(fleet, repo)
    (run,) = await fleet.runs(job["id"])
    done = await cli(fleet, "ship", job["id"], "--note", "from the CLI")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"job {job['id']} shipped: {run['branch']} at {run['commit'][:12]} to {remote}"
    )
    assert git(remote, "rev-parse", run["branch"]) == run["commit"]


async def test_a_cancelled_jobs_worktree_is_removed(fleet: Fleet, tmp_path: Path) -> None:
    label = unique_label()
    factory = await fleet.start_factory(engines=["shell"], labels=[label])
    repo = git_repo(tmp_path / "long")
    job = await fleet.submit(
        {
            "engine": "shell",
            "prompt": "echo started > started.txt; sleep 60",
            "productId": "ship",
            "capabilities": [label],
            "repo": str(repo),
        }
    )
    await fleet.wait_for(job["id"], ["running"], timeout=60)
    worktree = factory_workspaces(fleet.settings, factory.id).worktree_for("ship", job["id"])
    assert worktree.exists()
    r = await fleet.http.patch(
        f"/fleet/jobs/{job['id']}", json={"action": "cancel"}, headers=fleet.auth()
    )
    assert r.status_code == 202, r.text
    await fleet.wait_for(job["id"], ["cancelled"], timeout=60)
    await fleet.wait_closed(job["id"], timeout=60)
    assert not worktree.exists()


async def test_a_repository_that_cannot_be_reached_fails_the_job_with_the_reason(
    fleet: Fleet, tmp_path: Path
) -> None:
    label = unique_label()
    factory = await fleet.start_factory(engines=["shell"], labels=[label])
    missing = tmp_path / "nowhere"
    job = await fleet.submit(
        {
            "engine": "shell",
            "prompt": "touch should-not-run",
            "productId": "ship",
            "capabilities": [label],
            "repo": str(missing),
        }
    )
    failed = await fleet.wait_for(job["id"], ["failed"], timeout=60)
    assert f"repository {missing} cannot be reached" in failed["stageReason"], failed
    worktree = factory_workspaces(fleet.settings, factory.id).worktree_for("ship", job["id"])
    assert not worktree.exists()
