"""The stop's watchdog: a stop that hangs is ended, and the log names what held it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cardsms.services import idle
from cardsms.services.idle import IdleWait

HANGING = textwrap.dedent("""
    import asyncio, time
    from cardsms.stopping import StopWatchdog

    def held_by_a_blocking_call():
        time.sleep(60)

    async def main():
        dog = StopWatchdog(0.5)
        dog.finished = {finished}
        dog.arm()
        asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="a-pending-loop")
        await asyncio.sleep(0)
        held_by_a_blocking_call()

    asyncio.run(main())
""")


@pytest.mark.parametrize(("finished", "code"), [(False, 1), (True, 0)])
def test_a_hanging_stop_is_ended_and_named(finished: bool, code: int) -> None:
    proc = subprocess.run([sys.executable, "-c", HANGING.format(finished=finished)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == code, proc.stderr
    assert "stop overdue" in proc.stderr
    assert "held_by_a_blocking_call" in proc.stderr  # every thread's stack
    assert "a-pending-loop" in proc.stderr  # and the loop's pending tasks


def test_a_stop_that_ends_is_not_cut_short() -> None:
    script = ("import asyncio\nfrom cardsms.stopping import StopWatchdog\n"
              "async def main():\n    d = StopWatchdog(2)\n    d.arm()\n    await asyncio.sleep(0.1)\n"
              "asyncio.run(main())\nprint('ended by itself')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "ended by itself" in proc.stdout and "overdue" not in proc.stderr


def test_idle_keep_alive_connections_outlast_the_sdks_gaps_between_calls(tmp_path: Path) -> None:
    """uvicorn's own 5 s closed pooled SDK connections as the next call reused them (a reset the SDK does not
    retry); the server keeps an idle connection CARDSMS_HTTP_KEEPALIVE_SECONDS."""
    from cardsms.cli.processes import http_server
    from cardsms.settings import Settings

    assert http_server(object(), Settings(data_dir=tmp_path)).config.timeout_keep_alive == 60
    assert http_server(object(), Settings(data_dir=tmp_path, http_keepalive_seconds=7)).config.timeout_keep_alive == 7


def test_an_idle_loop_rests_longer_after_each_empty_pass_and_briefly_after_work() -> None:
    idle = IdleWait(0.05, 1.0)
    assert [idle.after(False) for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert idle.after(True) == 0.0  # work: the next pass comes at once
    assert idle.after(False) == 0.05  # and an empty one after it rests the shortest time again
    assert IdleWait(2.0, 1.0).after(False) == 2.0  # a longest below the first is the first


def test_a_periodic_job_is_due_at_once_even_just_after_a_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monotonic clock starts near zero at boot: a 10-minute job (closing unanswered submits) must still
    run on the first pass of a server started in the machine's first 10 minutes (a fresh CI machine)."""
    clock = [3.0]
    monkeypatch.setattr(idle.time, "monotonic", lambda: clock[0])
    job = idle.Every(600.0)
    assert job.due()  # at once, 3 s after the boot
    assert not job.due()
    clock[0] += 599.0
    assert not job.due()
    clock[0] += 1.0
    assert job.due() and not job.due()
