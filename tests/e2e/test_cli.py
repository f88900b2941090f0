"""The CLI against the real control plane: submit, follow, inspect, keys, factories."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Fleet, cli, unique_label

pytestmark = pytest.mark.temporal


async def test_submit_follow_and_inspect_a_job(fleet: Fleet, tmp_path: Path) -> None:
    label = unique_label()
    factory = await fleet.start_factory(engines=["shell"], labels=[label])
    spec = tmp_path / "job.md"
    spec.write_text(
        "| engine | timeout |\n|---|---|\n| shell | 1m |\n\necho cli-says-hi\necho second line\n"
    )
    follow = await cli(
        fleet,
        "submit", str(spec), "--product", "e2e", "-c", label, "--cwd", str(tmp_path),
        "--priority", "high", "--follow",
    )  # fmt: skip
    assert follow.returncode == 0, follow.stderr
    assert "cli-says-hi" in follow.stdout
    assert "--- succeeded" in follow.stderr
    job_id = follow.stdout.split()[2]

    shown = await cli(fleet, "job", job_id)
    assert shown.returncode == 0, shown.stderr
    assert f"job {job_id}  succeeded" in shown.stdout
    assert factory.id in shown.stdout and "priority high" in shown.stdout
    assert "second line" in shown.stdout  # the log tail

    listed = await cli(fleet, "jobs", "--product", "e2e", "--stage", "succeeded")
    assert job_id in listed.stdout

    factories = await cli(fleet, "factory", "list")
    assert factory.id in factories.stdout


async def test_failing_job_exits_nonzero_and_bad_spec_is_named(
    fleet: Fleet, tmp_path: Path
) -> None:
    label = unique_label()
    await fleet.start_factory(engines=["shell"], labels=[label])
    bad = tmp_path / "bad.md"
    bad.write_text("| engine | timeout |\n|---|---|\n| shell | soon |\n\necho x\n")
    refused = await cli(fleet, "submit", str(bad), "--product", "e2e")
    assert refused.returncode == 1
    assert "timeout" in refused.stderr and "soon" in refused.stderr

    failing = tmp_path / "fail.md"
    failing.write_text("| engine |\n|---|\n| shell |\n\nexit 4\n")
    run = await cli(fleet, "submit", str(failing), "--product", "e2e", "-c", label, "--follow")
    assert run.returncode == 1
    assert "--- failed" in run.stderr and "4" in run.stderr


async def test_keys_scope_what_the_cli_sees(fleet: Fleet) -> None:
    created = await cli(
        fleet, "key", "create", "--name", "other-team", "--role", "submitter",
        "--product", "otherproduct",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.split()[1]
    key = created.stdout.strip().splitlines()[-1]
    label = unique_label()
    job = await fleet.submit(
        {"engine": "sim", "prompt": "p", "productId": "e2e", "capabilities": [label]}
    )
    hidden = await cli(fleet, "job", job["id"], key=key)
    assert hidden.returncode == 1 and "404" in hidden.stderr
    assert key_id in (await cli(fleet, "key", "list")).stdout
    assert (await cli(fleet, "key", "revoke", key_id)).returncode == 0
    refused = await cli(fleet, "jobs", key=key)
    assert refused.returncode == 1 and "401" in refused.stderr
    cancelled = await cli(fleet, "cancel", job["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    await fleet.wait_for(job["id"], ["cancelled"])


async def test_audit_shows_who_did_what(fleet: Fleet) -> None:
    created = await cli(
        fleet, "key", "create", "--name", "audited", "--role", "operator", "--product", "e2e"
    )
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.split()[1]
    operator = created.stdout.strip().splitlines()[-1]
    assert (await cli(fleet, "key", "revoke", key_id)).returncode == 0
    refused = await cli(fleet, "audit", key=operator)
    assert refused.returncode == 1 and "401" in refused.stderr  # revoked: not even an admin

    shown = await cli(fleet, "audit", "--target", f"key:{key_id}")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME", "REASON"]
    rows = [line.split() for line in lines[1:]]
    # Newest first: the revocation, then the creation, both by the bootstrap admin.
    assert [(r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("api:bootstrap", "admin", "key.revoke", f"key:{key_id}", "ok"),
        ("api:bootstrap", "admin", "key.create", f"key:{key_id}", "ok"),
    ]


async def test_a_submit_repeated_with_its_idempotency_key_makes_one_job(
    fleet: Fleet, tmp_path: Path
) -> None:
    spec = tmp_path / "once.md"
    spec.write_text("| engine |\n|---|\n| shell |\n\necho once\n")
    key = f"deploy-{unique_label()}"
    args = ("submit", str(spec), "--product", "e2e", "-c", unique_label())
    first = await cli(fleet, *args, "--idempotency-key", key)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("submitted job ")
    job_id = first.stdout.split()[2]
    again = await cli(fleet, *args, "--idempotency-key", key)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"already submitted as job {job_id} ")

    changed = await cli(fleet, *args, "--priority", "high", "--idempotency-key", key)
    assert changed.returncode == 1
    assert f"Idempotency-Key '{key}' was used for a different request (job {job_id})" in (
        changed.stderr
    )
    listed = await cli(fleet, "jobs", "--product", "e2e", "--limit", "200")
    assert listed.stdout.count(job_id) == 1
    assert (await cli(fleet, "cancel", job_id)).returncode == 0  # no factory has its label
