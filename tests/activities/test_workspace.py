"""Jobs with a repository, under ActivityEnvironment with real git: a worktree on
`gigafactory/<jobId>`, the agent's changes committed with their diff as an artifact, a
stopped run pushed as WIP and continued by the next attempt on another factory, bad input
refused with nothing left behind, and shipping (with a remote that refuses)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.workspace import DIFF_ARTIFACT, Workspaces
from gigafactory.contracts import RemoveWorkspaceInput, ShipBranchInput
from gigafactory.models import RunOutcome
from gigafactory.settings import Settings
from launch.factory_runtime import factory_workspaces
from tests.activities.conftest import Factory, job, wait_for
from tests.support.agents import git, git_repo


def factory_with(make_factory: Callable[..., Factory], root: Path, **options: object) -> Factory:
    """A factory whose workspaces (and mirrors) live under `root`."""
    workspaces = Workspaces(root / "mirrors", root / "ws", **options)  # type: ignore[arg-type]
    factory = make_factory(workspaces=workspaces)
    factory.acts.workspace_root = (root / "ws").resolve()
    return factory


async def test_a_job_edits_its_worktree_and_ends_with_a_commit_and_a_diff(
    make_factory: Callable[..., Factory], tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo")
    factory = factory_with(make_factory, tmp_path / "f1")
    result = await factory.run(
        job("shell", "echo changed > README.md\necho new > added.txt\npwd", repo=str(repo))
    )

    assert result.outcome == RunOutcome.SUCCEEDED, result.reason
    assert result.branch == "gigafactory/j1"
    worktree = tmp_path / "f1" / "ws" / "p1" / "j1" / "repo"
    assert str(worktree.resolve()) in factory.reporter.log_text("j1"), "the agent ran there"
    assert git(worktree, "rev-parse", "HEAD") == result.commit
    assert git(worktree, "log", "-1", "--format=%an <%ae>") == "Gigafactory <gigafactory@localhost>"
    assert "job j1 epoch 1" in git(worktree, "log", "-1", "--format=%s")
    assert git(worktree, "status", "--porcelain") == ""
    diff = factory.reporter.artifact("j1", DIFF_ARTIFACT)
    assert diff is not None and diff.id in result.artifacts
    assert b"+changed" in diff.data and b"+new" in diff.data
    # Not pushed: only a stopped run's work goes to the work remote.
    assert git(repo, "branch", "--list", "gigafactory/j1") == ""


async def test_a_stopped_run_is_pushed_as_wip_and_continued_on_another_factory(
    make_factory: Callable[..., Factory], tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo")
    first = factory_with(make_factory, tmp_path / "f1")
    script = "echo step1 > progress.txt\necho 'GF-PROGRESS {\"step\": 1}'\nsleep 300"
    task = first.start(job("shell", script, repo=str(repo)))
    await wait_for(lambda: first.progress().get("step") == 1)
    first.env.cancel()
    stopped = await task

    assert stopped.outcome == RunOutcome.CANCELLED
    assert stopped.checkpoint is not None and stopped.checkpoint["commit"] == stopped.commit
    assert git(repo, "rev-parse", "gigafactory/j1") == stopped.commit, "WIP pushed"
    assert "WIP" in git(repo, "log", "-1", "--format=%s", "gigafactory/j1")

    second = factory_with(make_factory, tmp_path / "f2")
    resumed = await second.run(
        job(
            "shell",
            "cat progress.txt\necho step2 >> progress.txt",
            repo=str(repo),
            epoch=2,
            checkpoint=stopped.checkpoint,
        )
    )

    assert resumed.outcome == RunOutcome.SUCCEEDED, resumed.reason
    assert "step1" in second.reporter.log_text("j1"), "the second factory started from the WIP"
    worktree = tmp_path / "f2" / "ws" / "p1" / "j1" / "repo"
    assert git(worktree, "merge-base", "--is-ancestor", stopped.commit, "HEAD") == ""
    diff = second.reporter.artifact("j1", DIFF_ARTIFACT)
    assert diff is not None and b"+step1" in diff.data and b"+step2" in diff.data


@pytest.mark.parametrize("problem", ["no-repo", "no-base", "dirty-branch"])
async def test_bad_input_fails_the_attempt_with_a_reason_and_leaves_no_worktree(
    make_factory: Callable[..., Factory], tmp_path: Path, problem: str
) -> None:
    repo = git_repo(tmp_path / "repo")
    factory = factory_with(make_factory, tmp_path / "f1")
    spec: dict[str, object] = {"repo": str(repo)}
    expected = ""
    if problem == "no-repo":
        spec["repo"] = str(tmp_path / "missing")
        expected = f"repository {tmp_path / 'missing'} cannot be reached"
    elif problem == "no-base":
        spec["base_ref"] = "release-9"
        expected = f"base ref release-9 does not exist in repository {repo}"
    else:
        git(repo, "branch", "gigafactory/j1")  # someone else's branch under the job's name
        expected = "branch gigafactory/j1 already exists"

    result = await factory.run(job("shell", "touch should-not-run", **spec))

    assert result.outcome == RunOutcome.FAILED
    assert result.reason is not None and expected in result.reason, result.reason
    job_dir = tmp_path / "f1" / "ws" / "p1" / "j1"
    assert not (job_dir / "repo").exists()
    assert factory.reporter.log_text("j1") == "", "the agent never started"


async def test_a_base_ref_names_where_the_branch_starts(
    make_factory: Callable[..., Factory], tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo")
    git(repo, "tag", "v1")
    (repo / "later.txt").write_text("later\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "later")
    factory = factory_with(make_factory, tmp_path / "f1")
    result = await factory.run(job("shell", "ls", repo=str(repo), base_ref="v1"))

    assert result.outcome == RunOutcome.SUCCEEDED
    assert "later.txt" not in factory.reporter.log_text("j1")
    assert result.commit == git(repo, "rev-parse", "v1")


async def test_ship_pushes_the_branch_to_the_ship_remote_idempotently(
    make_factory: Callable[..., Factory], tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", str(remote))
    factory = factory_with(
        make_factory,
        tmp_path / "f1",
        ship_remote=str(remote),
        forge_command="echo PR for {branch} https://forge.invalid/pr/1",
    )
    ran = await factory.run(job("shell", "echo shipped > ship.txt", repo=str(repo)))
    inp = ShipBranchInput(job_id="j1", product_id="p1", repo=str(repo), commit=ran.commit)

    shipped = await factory.env.run(factory.acts.ship_branch, inp)
    again = await factory.env.run(factory.acts.ship_branch, inp)

    assert git(remote, "rev-parse", "gigafactory/j1") == ran.commit == shipped.commit
    assert shipped.remote == str(remote) and shipped.branch == "gigafactory/j1"
    assert shipped.output == "PR for gigafactory/j1 https://forge.invalid/pr/1"
    assert shipped.url == "https://forge.invalid/pr/1"
    assert again == shipped

    removed = await factory.env.run(
        factory.acts.remove_workspace,
        RemoveWorkspaceInput(job_id="j1", product_id="p1", repo=str(repo)),
    )
    assert removed.removed and not (tmp_path / "f1" / "ws" / "p1" / "j1" / "repo").exists()


async def test_ship_fails_cleanly_when_the_remote_refuses_the_push(
    make_factory: Callable[..., Factory], tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", str(remote))
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch protection: pushes are not allowed' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    factory = factory_with(make_factory, tmp_path / "f1", ship_remote=str(remote))
    ran = await factory.run(job("shell", "echo x > x.txt", repo=str(repo)))

    with pytest.raises(ApplicationError) as caught:
        await factory.env.run(
            factory.acts.ship_branch,
            ShipBranchInput(job_id="j1", product_id="p1", repo=str(repo), commit=ran.commit),
        )

    assert caught.value.type == "ShipRefused" and caught.value.non_retryable
    assert "was refused" in caught.value.message
    assert "branch protection: pushes are not allowed" in caught.value.message
    assert git(remote, "branch", "--list") == ""


def test_expired_worktrees_are_listed_for_cleanup(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "mirrors", tmp_path / "ws")
    repo = git_repo(tmp_path / "repo")
    old = workspaces.prepare(
        job_id="old", product_id="p", repo=str(repo), base_ref=None, checkpoint=None
    )
    workspaces.prepare(job_id="new", product_id="p", repo=str(repo), base_ref=None, checkpoint=None)
    (old.path.parent / ".gigafactory" / "last-used").write_text("0\n")

    assert workspaces.expired(3600) == [("p", "old")]
    assert workspaces.remove(job_id="old", product_id="p", repo=None)
    assert not old.path.exists() and workspaces.expired(3600) == []


def test_factory_cleanup_removes_expired_worktrees(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    workspaces = factory_workspaces(settings, "f1")
    repo = git_repo(tmp_path / "repo")
    old = workspaces.prepare(
        job_id="old", product_id="p", repo=str(repo), base_ref=None, checkpoint=None
    )
    new = workspaces.prepare(
        job_id="new", product_id="p", repo=str(repo), base_ref=None, checkpoint=None
    )
    (old.path.parent / ".gigafactory" / "last-used").write_text("0\n")

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.cli.main",
            "factory",
            "cleanup",
            "--id",
            "f1",
            "--older-than",
            "1d",
        ],
        env={**os.environ, "FLEET_DATA_DIR": str(settings.data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "removed p/old" in done.stdout and "1 worktree(s) unused for more than 1d" in done.stdout
    assert not old.path.exists() and new.path.exists()
    assert git(old.mirror, "branch", "--list", "gigafactory/old") == ""
