"""Mass tasks from the terminal (`cardsms task ...`) and an import that survives `kill -9`."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from cardsms.db.schema import audience_numbers, audiences, import_problems
from cardsms.domain.schedule import CHINA
from cardsms.settings import Settings
from tests.conftest import BACKENDS, Tenant, env_for, new_tenant
from tests.harness import cli, running_server
from tests.integration.helpers import approved_sign


def test_task_create_wait_list_show_and_bad_arguments(tenant: Tenant, tmp_path: Path) -> None:
    sign = approved_sign(tenant.client(), "终端")
    env = tenant.server.env
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("phone,name\n" + "".join(f"{13500000000 + i},n{i}\n" for i in range(60)) + "bad,x\n")
    base = ["task", "create", "--account", tenant.name, "--sign", sign, "--template", "PUB_ORDER_SHIPPED"]
    done = cli(env, *base, "--name", "terminal", "--file", str(numbers), "--wait")
    assert "created task" in done.stdout and "completed" in done.stdout, done.stdout
    task_id = done.stdout.split("created task ")[1].split()[0]
    listed = cli(env, "task", "list", "--account", tenant.name).stdout
    assert "terminal" in listed and "completed" in listed
    cli(env, "account", "set-window", tenant.name, "08:00-22:00")  # the mainland hours, whatever the test's clock
    shown = cli(env, "task", "show", task_id, "--account", tenant.name).stdout
    assert "import.invalid" in shown and "stats.card" in shown
    for args, needle in (
        (["--name", "x" * 31, "--file", str(numbers)], "--name"),
        (["--name", "t", "--file", str(tmp_path / "missing.csv")], "--file"),
        (["--name", "t", "--file", str(numbers), "--at", "tomorrow"], "--at"),
        (["--name", "t", "--file", str(numbers), "--at", "2030-01-01 23:30"], "08:00"),
        (["--name", "t", "--file", str(numbers), "--fallback", "SMS"], "--fallback-template"),
        (["--name", "t", "--file", str(numbers), "--rate", "100001"], "--rate"),
        (["--name", "t"], "--file or --audience"),
    ):
        bad = cli(env, *base, *args, check=False)
        assert bad.returncode == 2 and needle in bad.stderr, (args, bad.stderr)
    revoke = cli(env, "task", "revoke", task_id, "--account", tenant.name, check=False)
    assert revoke.returncode == 2 and "is completed" in revoke.stderr
    assert cli(env, "task", "list", "--account", tenant.name).stdout.count("completed") == 1  # nothing new


async def _import_state(url: str) -> dict[str, Any] | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(audiences))).mappings().first()
            if row is None:
                return None
            kept = await conn.scalar(select(func.count()).select_from(audience_numbers))
            problems = await conn.scalar(select(func.count()).select_from(import_problems))
            return {**row, "kept": kept, "problems": problems}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_import_progress_survives_kill_9(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    url = Settings(_env_file=None, **{"data_dir": env["CARDSMS_DATA_DIR"],  # type: ignore[call-arg]
                                      "database_url": env.get("CARDSMS_DATABASE_URL", "")}).sqlalchemy_url
    lines = [f"{13300000000 + i}" if i % 1000 != 500 else "oops" for i in range(499_995)] + ["13300000001"] * 5
    numbers = tmp_path / "numbers.txt.gz"
    numbers.write_bytes(gzip.compress("\n".join(lines).encode()))
    start = (datetime.now(CHINA) + timedelta(days=1)).replace(hour=10, minute=0).strftime("%Y-%m-%d %H:%M")
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        sign = approved_sign(tenant.client(), "重启")
        cli(env, "task", "create", "--account", tenant.name, "--sign", sign, "--template", "PUB_SERVICE_NOTICE",
            "--name", "restart", "--file", str(numbers), "--at", start)
        deadline = time.monotonic() + 120
        while True:
            state = asyncio.run(_import_state(url))
            if state and state["lines_done"] >= 50_000 and state["state"] == "importing":
                break
            assert state is None or state["state"] == "importing", "the import finished before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
    killed_at = state["lines_done"]
    with running_server(env, backend):
        deadline = time.monotonic() + 180
        while (state := asyncio.run(_import_state(url))) and state["state"] == "importing":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert state is not None and state["state"] == "ready", state
    print(f"\n[{backend}] killed at line {killed_at:,} of 500,000; resumed and finished")
    assert (state["total"], state["invalid"], state["problems"]) == (500_000, 500, 500)
    assert state["kept"] == 499_495 and state["duplicates"] == 5 and state["valid"] == 499_500


def test_an_import_with_nul_bytes_neither_fails_nor_stalls_other_tasks(tenant: Tenant, tmp_path: Path) -> None:
    """A file with NUL bytes (PostgreSQL cannot store them) imports: those lines are invalid numbers, shown with
    U+FFFD; and an import that fails for any reason of its own fails alone, never holding the tasks behind it."""
    sign = approved_sign(tenant.client(), "空字节")
    env = tenant.server.env
    hostile = tmp_path / "hostile.txt"
    hostile.write_bytes(b"13500100000\n135\x00100001\n\x00\x00\x00\n13500100002\n")
    base = ["task", "create", "--account", tenant.name, "--sign", sign, "--template", "PUB_ORDER_SHIPPED"]
    done = cli(env, *base, "--name", "nul", "--file", str(hostile), "--wait")
    assert "completed" in done.stdout, done.stdout + done.stderr
    task_id = done.stdout.split("created task ")[1].split()[0]
    shown = cli(env, "task", "show", task_id, "--account", tenant.name).stdout.replace(" ", "")
    assert "│import.invalid│2│" in shown and "│import.total│4│" in shown, shown
    after = tmp_path / "after.txt"
    after.write_text("13500100010\n13500100011\n")
    assert "completed" in cli(env, *base, "--name", "after", "--file", str(after), "--wait").stdout
