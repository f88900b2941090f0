"""The CLI's pure helpers and its error paths that need no server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.fleet import Latency, percentile
from gigafactory.settings import Settings
from launch.cli.client import CliError, resolve_api_key, resolve_api_url, write_stack_file
from launch.cli.factory_cmds import split_list
from launch.cli.jobs import parse_params as _params
from launch.cli.main import app
from launch.cli.render import ago, short_time, table
from launch.stack import port_is_free

runner = CliRunner()


def test_table_aligns_columns_and_renders_none_as_dash() -> None:
    out = table(["id", "stage"], [("a", None), ("bbbb", "running")])
    assert out.splitlines() == ["ID    STAGE", "a     -", "bbbb  running"]


def test_times() -> None:
    assert short_time("2026-11-25T14:03:07.123+00:00") == "14:03:07"
    assert short_time(None) is None
    assert ago("2026-11-25T14:03:07Z", "2026-11-25T14:03:09.5Z") == "2.5s"
    assert ago("2026-11-25T14:03:07Z", None) is None


def test_split_list() -> None:
    assert split_list(None) is None
    assert split_list("") == []
    assert split_list("shell, sim,,") == ["shell", "sim"]


def test_params_parse_json_values_and_reject_missing_equals() -> None:
    assert _params(["durationS=2", "outcome=failed", "flag=true"]) == {
        "durationS": 2,
        "outcome": "failed",
        "flag": True,
    }
    assert _params(None) is None
    with pytest.raises(CliError, match="key=value"):
        _params(["oops"])


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) == 0.0
    assert Latency.of([1.0, 3.0]).mean == 2.0


def test_stack_file_gives_the_cli_its_url_and_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert resolve_api_key(settings) is None
    assert resolve_api_url(settings) == "http://127.0.0.1:8000"
    write_stack_file(settings, {"apiUrl": "http://127.0.0.1:9999"}, "gfk_secret")
    assert resolve_api_url(settings) == "http://127.0.0.1:9999"
    assert resolve_api_key(settings) == "gfk_secret"
    assert os.stat(tmp_path / "admin.key").st_mode & 0o777 == 0o600
    # Explicit settings win over the stack file.
    explicit = Settings(data_dir=tmp_path, api_url="http://x:1", api_key="k")
    assert (resolve_api_url(explicit), resolve_api_key(explicit)) == ("http://x:1", "k")


def test_port_is_free_sees_a_bound_port() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free("127.0.0.1", sock.getsockname()[1])


def test_commands_without_a_key_say_how_to_get_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "jobs"], env={"FLEET_API_KEY": ""})
    assert result.exit_code == 1
    assert "no API key" in result.output


def test_unreachable_api_is_named(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["--data-dir", str(tmp_path), "--api-url", "http://127.0.0.1:9", "jobs"],
        env={"FLEET_API_KEY": "gfk_x"},
    )
    assert result.exit_code == 1
    assert "cannot reach the API at http://127.0.0.1:9" in result.output


def test_submit_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["--data-dir", str(tmp_path), "submit", str(tmp_path / "nope.md")],
        env={"FLEET_API_KEY": "gfk_x"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_factory_run_without_token_explains_enrollment(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["--data-dir", str(tmp_path), "factory", "run", "--id", "f1"],
        env={"FLEET_FACTORY_TOKEN": ""},
    )
    assert result.exit_code == 2
    assert "gigafactory factory enroll --id f1" in result.output


def test_invalid_setting_is_named(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["--data-dir", str(tmp_path), "jobs"], env={"FLEET_API_PORT": "not-a-port"}
    )
    assert result.exit_code == 2
    assert "api_port" in result.output


def test_render_dag_draws_the_tree_with_dependencies_and_costs() -> None:
    from launch.cli.jobs import render_dag

    def node(child_id: str | None, stage: str, deps: list[str], **extra: object) -> dict:
        base = {
            "id": f"p.{child_id}" if child_id else "p",
            "childId": child_id,
            "stage": stage,
            "stageReason": None,
            "dependsOn": deps,
            "dependencyKind": "succeeded",
            "factoryId": "f1",
            "costUsd": 0.1,
            "rollupCostUsd": 0.1,
            "progress": None,
            "children": [],
        }
        base.update(extra)
        return base

    tree = node(
        None,
        "waiting",
        [],
        rollupCostUsd=0.3,
        progress="1 of 2 done",
        children=[
            node("a", "succeeded", []),
            node("fix", "blocked", ["a"], dependencyKind="failed", factoryId=None),
        ],
    )
    assert render_dag(tree).splitlines() == [
        "p  waiting on f1  $0.10 (tree $0.30, 1 of 2 done)",
        "├─ a  succeeded on f1  $0.10",
        "└─ fix  blocked  $0.10 after a (failed)",
    ]
