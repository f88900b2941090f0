"""Pid files of the dev stack: an orphan is stopped only while its pid is still ours."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from launch.processes import ManagedProcess, claim_data_dir, release_data_dir, stop_orphans

REPO_ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_an_orphan_recorded_in_a_pid_file_is_stopped(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    orphan = ManagedProcess("control-1", SLEEPER, pid_directory=pids, log_path=tmp_path / "l")
    orphan.start()
    assert orphan.process is not None
    try:
        # The stack that started it is gone: only its pid file is left.
        assert stop_orphans(pids, timeout_s=5) == ["control-1"]
        assert orphan.process.wait(5) is not None
        assert list(pids.glob("*.pid")) == []
    finally:
        orphan.stop()


def test_a_pid_now_used_by_another_program_is_left_alone(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    stranger = subprocess.Popen(SLEEPER)
    try:
        # The pid was ours once, for another command line; the kernel reused it since.
        (pids / "api.pid").write_text(f"{stranger.pid}\n/usr/bin/temporal server start-dev \n")
        (pids / "garbled.pid").write_text("not a pid\n")
        assert stop_orphans(pids, timeout_s=5) == []
        assert stranger.poll() is None
        assert list(pids.glob("*.pid")) == []
    finally:
        stranger.kill()
        stranger.wait()


def test_a_live_stack_keeps_its_data_directory_and_a_dead_ones_claim_is_taken(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    # A live stack in another process owns the directory.
    stack = ManagedProcess("stack", SLEEPER, pid_directory=pids, log_path=tmp_path / "l")
    stack.start()
    try:
        assert claim_data_dir(pids) == stack.pid
        assert stop_orphans(pids, timeout_s=5) == [], "a stack is never its own orphan"
        assert stack.running()
    finally:
        stack.stop()
    # Once it is gone (its pid file left behind) this process claims the directory.
    (pids / "stack.pid").write_text(f"{stack.pid}\n{' '.join(SLEEPER)} \n")
    assert claim_data_dir(pids) is None
    assert claim_data_dir(pids) is None, "claiming twice from one process is harmless"
    release_data_dir(pids)
    assert not (pids / "stack.pid").exists()


# Claims the data directory at wall time argv[3] (if given), prints the answer, sleeps.
CLAIMER = (
    "import sys, time; from pathlib import Path; from launch.processes import claim_data_dir; "
    "at = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0; "
    "time.sleep(max(0.0, at - time.time())); "
    "print(claim_data_dir(Path(sys.argv[1])), flush=True); time.sleep(float(sys.argv[2]))"
)


def test_stacks_started_at_the_same_instant_claim_the_directory_once(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    at = time.time() + 3  # every racer started and waiting by then
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(pids), "60", str(at)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for _ in range(6)
    ]
    try:
        answers = [r.stdout.readline().strip() for r in racers if r.stdout is not None]
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert answers.count("None") == 1, answers
    winner = racers[answers.index("None")].pid
    assert all(a in (str(winner), "0") for a in answers if a != "None"), answers


def test_a_held_claim_refuses_even_without_its_pid_file_and_dies_with_its_holder(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, str(pids), "60"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "None"
        assert claim_data_dir(pids) == holder.pid
        (pids / "stack.pid").unlink()
        assert claim_data_dir(pids) == 0  # the lock still says a stack runs
    finally:
        holder.kill()
        holder.wait()
    assert claim_data_dir(pids) is None  # the kernel dropped the dead holder's lock
    release_data_dir(pids)
