"""`gigafactory chaos` at CI size, as a subprocess: a dev stack of processes (Temporal
included) with every kind of fault done to it at least once; every invariant must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch.chaos.plan import FaultKind

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(600)
@pytest.mark.parametrize("controls", [1, 2], ids=["one-control-process", "two-control-processes"])
def test_a_small_chaos_run_keeps_every_invariant(tmp_path: Path, controls: int) -> None:
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "launch.cli.main", "chaos",
            "--jobs", "30", "--factories", "3", "--events-every", "3", "--seed", "12",
            "--control-processes", str(controls),
            "--data-dir", str(tmp_path / "stack"), "--report", str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )  # fmt: skip
    assert report_path.exists(), result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    broken = [c for c in report["checks"] if not c["ok"]]
    assert broken == [], result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every invariant holds" in result.stdout
    if controls > 1:  # each restart hit one of the control processes, by name
        restarts = [f for f in report["faults"] if f["kind"] == "restart-control"]
        assert restarts and {f["target"] for f in restarts} <= {"control-1", "control-2"}

    figures = report["figures"]
    # The run did what it claims: every kind of fault, none of them failing to be done...
    assert set(figures["faults"]) == {k.value for k in FaultKind}
    assert figures["faults that failed"] == 0
    # ... on every job it planned, each once (a submit retried after a lost answer carries
    # its Idempotency-Key), the budget ceiling reached, everything drained.
    assert figures["jobs planned"] == 30
    assert figures["jobs in the store"] == 30
    assert figures["jobs succeeded"] == figures["jobs in the store"]
    assert figures["jobs waiting on the budget at the end of the chaos"] > 0
    assert figures["drained"] is True
    # The evidence is real: every job that succeeded ran a traced agent.
    assert figures["sim agents traced"] >= figures["jobs succeeded"]


def test_a_data_dir_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "fleet.sqlite3").write_text("someone's store")
    result = subprocess.run(
        [sys.executable, "-m", "launch.cli.main", "chaos", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{tmp_path} is not empty" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.sqlite3"]
