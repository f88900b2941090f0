"""Stopping an agent stops its whole tree: children that setsid or double-fork (and so
leave the agent's process group and session) included, whether the run is cancelled or the
agent exits and leaves them behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gigafactory.models import RunOutcome
from tests.activities.conftest import Factory, job, pid_running, wait_for

# Two escapees: one in a new session (setsid), one double-forked into a new session (its
# parent exits at once, so it is re-parented). Each writes its pid, then sleeps.
ESCAPING_AGENT = """
setsid bash -c 'echo $$ > "{pids}/setsid"; exec sleep 300' &
python3 -c '
import os, sys, time
if os.fork(): sys.exit(0)
os.setsid()
if os.fork(): os._exit(0)
open(sys.argv[1] + "/double", "w").write(str(os.getpid()))
time.sleep(300)
' "{pids}"
sleep 300 &
echo $! > "{pids}/plain"
echo 'GF-PROGRESS {{"step": 1}}'
{tail}
"""


def escapees(pids: Path) -> list[int]:
    return [int((pids / name).read_text()) for name in ("setsid", "double", "plain")]


def started(pids: Path) -> Callable[[], bool]:
    def check() -> bool:
        names = ("setsid", "double", "plain")
        return all((pids / n).exists() and (pids / n).read_text() for n in names)

    return check


async def test_cancel_stops_setsid_and_double_forked_children(
    factory: Factory, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    task = factory.start(job("shell", ESCAPING_AGENT.format(pids=pids, tail="wait")))
    await wait_for(started(pids))
    await wait_for(lambda: factory.progress().get("step") == 1)
    children = escapees(pids)
    assert all(pid_running(pid) for pid in children)

    factory.env.cancel()
    result = await task

    assert result.outcome == RunOutcome.CANCELLED
    assert [pid for pid in children if pid_running(pid)] == []


async def test_what_an_agent_leaves_running_is_stopped_when_it_exits(
    factory: Factory, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    tail = f'while [ ! -s "{pids}/double" ] || [ ! -s "{pids}/setsid" ]; do sleep 0.05; done'
    result = await factory.run(job("shell", ESCAPING_AGENT.format(pids=pids, tail=tail)))

    assert result.outcome == RunOutcome.SUCCEEDED
    assert [pid for pid in escapees(pids) if pid_running(pid)] == []
