"""Mass tasks and imports through the services (the console and the CLI are thin adapters over
them), on SQLite and PostgreSQL: the rules of SPEC.md's Mass Operations Assistant."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import zipfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cardsms.compose import build_services
from cardsms.db.migrate import upgrade
from cardsms.db.schema import messages
from cardsms.domain.errors import CardsmsError
from cardsms.domain.schedule import CHINA
from cardsms.services import accounts, imports, public, signs, suppression, task_reports, task_runner, tasks, templates
from cardsms.services.core import Services
from cardsms.settings import Settings
from tests.conftest import BACKENDS

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=CHINA)
Work = Callable[[Services, int], Awaitable[None]]


def run_on(backend: str, tmp_path: Path, request: pytest.FixtureRequest, work: Work,
           now: datetime = NOON, window: str = "08:00-22:00") -> None:
    """Run `work(svc, account_id)` on a fresh database of the backend, with a fixed clock and the mainland send
    window."""
    url = ""
    if backend == "postgresql":
        url = request.getfixturevalue("pg").create_database(f"tasks_{os.getpid()}_{request.node.name[-30:]}"
                                                            .lower().replace("[", "_").replace("]", "")
                                                            .replace("-", "_"))

    async def main() -> None:
        svc = build_services(Settings(data_dir=tmp_path, secret_key="k" * 40, database_url=url,
                                      sim_review_seconds=0, send_window=window))
        svc.clock = lambda: now.astimezone(UTC)
        await upgrade(svc.engine)
        try:
            account_id = await accounts.create_account(svc, "shop")
            await public.ensure_public_templates(svc)
            await signs.add_sign(svc, account_id, "Shop", 0, 0, "our shop", [])
            await work(svc, account_id)
        finally:
            await svc.close()

    asyncio.run(main())


def form(**kw: object) -> tasks.TaskForm:
    values: dict[str, object] = {"name": "November sale", "sign_name": "Shop",
                                 "card_template_code": "PUB_SERVICE_NOTICE"}
    values.update(kw)
    return tasks.TaskForm(**values)  # type: ignore[arg-type]


def numbers(n: int, start: int = 13800000000) -> list[str]:
    return [str(start + i) for i in range(n)]


async def field_of(coro: Awaitable[object]) -> tuple[str, str]:
    with pytest.raises(CardsmsError) as caught:
        await coro
    return caught.value.field, caught.value.message


@pytest.mark.parametrize("backend", BACKENDS)
def test_task_rules_name_each_field(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async def work(svc: Services, acc: int) -> None:
        data = b"13800138000\n"
        field, message = await field_of(tasks.create_task(svc, acc, form(name="x" * 31), data=data))
        assert field == "name" and "30" in message
        field, message = await field_of(tasks.create_task(svc, acc, form(fallback_type="SMS"), data=data))
        assert field == "sms_template_code" and "text template" in message
        field, message = await field_of(tasks.create_task(svc, acc, form(fallback_type="DIGITALSMS"), data=data))
        assert field == "digital_template_code"
        late = NOON.replace(hour=22, minute=30)
        field, message = await field_of(tasks.create_task(svc, acc, form(scheduled_at=late), data=data))
        assert field == "scheduled_at" and "08:00 and 22:00" in message and "22:30" in message
        early = (NOON + timedelta(days=1)).replace(hour=7, minute=59)
        assert (await field_of(tasks.create_task(svc, acc, form(scheduled_at=early), data=data)))[0] == "scheduled_at"
        past = NOON - timedelta(hours=1)
        assert "future" in (await field_of(tasks.create_task(svc, acc, form(scheduled_at=past), data=data)))[1]
        field, message = await field_of(tasks.create_task(svc, acc, form(sign_name="Nobody"), data=data))
        assert field == "sign_name"
        field, _ = await field_of(tasks.create_task(svc, acc, form(card_template_code="CARD_SMS_404"), data=data))
        assert field == "card_template_code"
        assert (await field_of(tasks.create_task(svc, acc, form())))[0] == "file"  # no recipients at all
        assert await tasks.list_tasks(svc, acc) == []  # nothing was written by any of these

    run_on(backend, tmp_path, request, work)


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_limits_and_formats(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async def work(svc: Services, acc: int) -> None:
        big = os.urandom(3 * 1024 * 1024 + 1)
        field, message = await field_of(tasks.create_task(svc, acc, form(), data=big))
        assert field == "file" and "3 MB" in message
        too_many = gzip.compress("\n".join(numbers(500_001)).encode())
        assert len(too_many) < 3 * 1024 * 1024
        field, message = await field_of(tasks.create_task(svc, acc, form(), data=too_many))
        assert field == "file" and "500,000" in message
        assert (await field_of(tasks.create_task(svc, acc, form(), data=b"\x00\x01binary")))[0] == "file"
        assert "header" in (await field_of(tasks.create_task(svc, acc, form(), data=b"phone,bad name\n1380\n")))[1]
        assert await tasks.list_tasks(svc, acc) == []
        assert not list((svc.settings.data_dir / "imports").glob("*")), "rejected uploads are not kept"

        # every accepted container gives the same numbers
        lines = ["phone,name", "13800000001,Li", "+86 138-0000-0002,Wang", "13800000001,Li again", "12345,x", ""]
        text = "\n".join(lines).encode()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("numbers.csv", text)
        xlsx = io.BytesIO()
        from openpyxl import Workbook

        wb = Workbook()
        for row in lines[:-1]:
            wb.active.append(row.split(","))
        wb.save(xlsx)
        for payload in (text, gzip.compress(text), buf.getvalue(), xlsx.getvalue(), "\n".join(lines).encode("gbk")):
            aud_id = await imports.start_import(svc, acc, name="t", saved=True, file_name="f", data=payload)
            await imports.run_import(svc, aud_id)
            aud = await imports.get_audience(svc, acc, aud_id)
            assert (aud["state"], aud["total"], aud["valid"], aud["duplicates"], aud["invalid"]) == \
                ("ready", 4, 3, 1, 1), payload[:20]
            assert aud["columns"] == ["name"]
            assert [r[1] for r in await imports.sample_numbers(svc, acc, aud_id)] == ["13800000001", "13800000002"]
            assert [(line, raw) for line, raw, _ in await imports.problems(svc, acc, aud_id)] == [(5, "12345")]

    run_on(backend, tmp_path, request, work)


@pytest.mark.parametrize("backend", BACKENDS)
def test_task_feeds_once_pauses_cancels_and_reports(backend: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    async def work(svc: Services, acc: int) -> None:
        await suppression.add_suppressed(svc, acc, "13800000003")
        listed = "\n".join(numbers(5000) + numbers(100) + ["bad", "1380000"]).encode()  # 100 duplicates, 2 invalid
        task_id = await tasks.create_task(svc, acc, form(), data=gzip.compress(listed), file_name="n.csv.gz")
        assert (await tasks.get_task(svc, acc, task_id))["state"] == "importing"
        await task_runner.run_once(svc)  # imports, then starts
        aud = await imports.get_audience(svc, acc, (await tasks.get_task(svc, acc, task_id))["audience_id"])
        assert (aud["total"], aud["duplicates"], aud["invalid"], aud["suppressed"]) == (5102, 100, 2, 1)
        t = await tasks.get_task(svc, acc, task_id)
        assert t["state"] == "sending" and t["total"] == 5000
        await task_runner.run_once(svc)
        await tasks.pause_task(svc, acc, task_id)
        paused_at = (await tasks.get_task(svc, acc, task_id))["cursor"]
        await task_runner.run_once(svc)
        fed = (await tasks.get_task(svc, acc, task_id))["cursor"]
        assert fed == paused_at  # a paused task is not fed
        async with svc.engine.connect() as conn:
            states = dict((await conn.execute(select(messages.c.state, func.count()).where(
                messages.c.task_id == task_id).group_by(messages.c.state))).all())
        assert states.get("queued", 0) == 0 and states["paused"] > 0
        await task_runner.run_once(svc)
        assert (await tasks.get_task(svc, acc, task_id))["cursor"] == fed
        await tasks.resume_task(svc, acc, task_id)
        for _ in range(10):
            await task_runner.run_once(svc)
        async with svc.engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(messages).where(messages.c.task_id == task_id))
            distinct = await conn.scalar(select(func.count(func.distinct(messages.c.phone))).where(
                messages.c.task_id == task_id))
        assert total == distinct == 5000  # every recipient exactly once across pause and resume
        stats = await task_reports.task_stats(svc, task_id)
        assert stats["skipped"] >= 1 and stats["card"] + stats["skipped"] == 5000  # fallback NONE: card or skipped
        await tasks.cancel_task(svc, acc, task_id)
        assert (await tasks.get_task(svc, acc, task_id))["state"] == "cancelled"
        async with svc.engine.connect() as conn:
            left = await conn.scalar(select(func.count()).select_from(messages).where(
                messages.c.task_id == task_id, messages.c.state.in_(("queued", "paused"))))
        assert left == 0
        with pytest.raises(CardsmsError, match="cancelled"):
            await tasks.resume_task(svc, acc, task_id)

    run_on(backend, tmp_path, request, work)


@pytest.mark.parametrize("backend", BACKENDS)
def test_revoke_until_five_minutes_before_start(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async def work(svc: Services, acc: int) -> None:
        start = NOON + timedelta(hours=2)
        task_id = await tasks.create_task(svc, acc, form(scheduled_at=start), data=b"13800138000\n")
        await task_runner.run_once(svc)
        assert (await tasks.get_task(svc, acc, task_id))["state"] == "scheduled"
        svc.clock = lambda: (start - timedelta(minutes=4)).astimezone(UTC)
        _, message = await field_of(tasks.revoke_task(svc, acc, task_id))
        assert "5 minutes" in message
        svc.clock = lambda: (start - timedelta(minutes=6)).astimezone(UTC)
        await tasks.revoke_task(svc, acc, task_id)
        assert (await tasks.get_task(svc, acc, task_id))["state"] == "revoked"
        svc.clock = lambda: (start + timedelta(minutes=1)).astimezone(UTC)
        await task_runner.run_once(svc)
        assert (await tasks.get_task(svc, acc, task_id))["state"] == "revoked"  # a revoked task never starts
        now_task = await tasks.create_task(svc, acc, form(name="now"), data=b"13800138000\n")
        assert "no scheduled start" in (await field_of(tasks.revoke_task(svc, acc, now_task)))[1]

    run_on(backend, tmp_path, request, work)


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_fallback_needs_its_variables_as_columns(backend: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    async def work(svc: Services, acc: int) -> None:
        code = await templates.add_text_template(svc, acc, 1, "pickup", "Your code is ${code}", "pickups")
        field, message = await field_of(tasks.create_task(
            svc, acc, form(fallback_type="SMS", sms_template_code=code), data=b"13800138000\n"))
        assert field == "sms_template_code" and "code" in message
        task_id = await tasks.create_task(svc, acc, form(fallback_type="SMS", sms_template_code=code),
                                          data=b"phone,code\n13800138000,A1\n13900139000,\n")
        for _ in range(3):
            await task_runner.run_once(svc)
        async with svc.engine.connect() as conn:
            rows = dict((await conn.execute(select(messages.c.phone, messages.c.content).where(
                messages.c.task_id == task_id))).all())
        assert len(rows) == 2  # the empty value skips that number (BAD_PARAMS), not the whole chunk

    run_on(backend, tmp_path, request, work)


def test_csv_cells_cannot_become_formulas() -> None:
    assert task_reports.safe_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert task_reports.safe_cell("+1") == "'+1" and task_reports.safe_cell("@a") == "'@a"
    assert task_reports.safe_cell("-2") == "'-2"
    assert task_reports.safe_cell("13800138000") == "13800138000"


@pytest.mark.parametrize("backend", BACKENDS)
def test_task_from_a_saved_audience(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async def work(svc: Services, acc: int) -> None:
        aud_id = await imports.start_import(svc, acc, name="VIP", saved=True, file_name="vip.txt",
                                            data="\n".join(numbers(300)).encode())
        field, message = await field_of(tasks.create_task(svc, acc, form(audience_id=aud_id)))
        assert field == "audience_id" and "importing" in message  # not ready yet
        await task_runner.run_once(svc)
        task_id = await tasks.create_task(svc, acc, form(audience_id=aud_id, scheduled_at=NOON + timedelta(hours=1)))
        assert (await tasks.get_task(svc, acc, task_id))["state"] == "scheduled"
        with pytest.raises(CardsmsError, match="unfinished task"):
            await imports.delete_audience(svc, acc, aud_id)
        svc.clock = lambda: (NOON + timedelta(hours=1, seconds=1)).astimezone(UTC)
        for _ in range(3):
            await task_runner.run_once(svc)
        async with svc.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(messages).where(
                messages.c.task_id == task_id)) == 300
        now_id = await tasks.create_task(svc, acc, form(audience_id=aud_id))  # sent now from the audience
        await task_runner.run_once(svc)
        assert (await tasks.get_task(svc, acc, now_id))["started_at"] is not None
        assert [e["kind"] for e in await tasks.events(svc, acc, now_id)][:2] == ["created", "started"]
        other = await accounts.create_account(svc, "other")
        await signs.add_sign(svc, other, "Shop", 0, 0, "their shop", [])
        field, message = await field_of(tasks.create_task(svc, other, form(audience_id=aud_id)))
        assert field == "audience" and "does not exist" in message
        with pytest.raises(CardsmsError, match="does not exist"):
            await imports.get_audience(svc, other, aud_id)  # audiences are scoped to their account

    run_on(backend, tmp_path, request, work)
