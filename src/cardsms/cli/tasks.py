"""Mass tasks from the terminal: `cardsms task create|list|show|set-rate|revoke`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cardsms.cli.common import DataDir, app, fail, load_settings, open_services, out, run
from cardsms.domain.errors import CardsmsError
from cardsms.domain.schedule import CHINA
from cardsms.services import accounts, task_reports
from cardsms.services.core import Services, as_utc
from cardsms.settings import Settings

task_app = typer.Typer(help="Mass tasks (the Mass Operations Assistant from the terminal).", no_args_is_help=True)
app.add_typer(task_app, name="task")


ACTIVE_TASK_STATES = ("importing", "scheduled", "waiting", "sending", "paused")
RateOption = Annotated[int | None, typer.Option("--rate", help="at most this many messages per second (0: no limit)",
                                                min=0)]
CapOption = Annotated[int | None, typer.Option("--hourly-cap", help="at most this many messages in any hour "
                                                                    "(0: no cap)", min=0)]


AccountOption = Annotated[str, typer.Option("--account", help="account name")]
NameOption = Annotated[str, typer.Option(help="task name (at most 30 characters)")]
SignOption = Annotated[str, typer.Option("--sign", help="approved signature")]
TemplateOption = Annotated[str, typer.Option("--template", help="approved card template or public template code")]
FileOption = Annotated[Path | None, typer.Option("--file", help="numbers: TXT/CSV/XLSX, optionally zip/gzip")]
AudienceOption = Annotated[int | None, typer.Option("--audience", help="saved audience id instead of a file")]
FallbackOption = Annotated[str, typer.Option(help="NONE, SMS or DIGITALSMS")]
FallbackTemplateOption = Annotated[str, typer.Option(help="text or digital template of the fallback")]
CustomTemplateOption = Annotated[str, typer.Option(help="text template for custom send content")]
AtOption = Annotated[str | None, typer.Option("--at", help="scheduled start, 'YYYY-MM-DD HH:MM' Asia/Shanghai")]
WaitOption = Annotated[bool, typer.Option("--wait", help="show progress until the task ends")]
_OPTION_OF_FIELD = {"name": "--name", "sign_name": "--sign", "card_template_code": "--template",
                    "sms_template_code": "--fallback-template", "digital_template_code": "--fallback-template",
                    "template_code": "--custom-template", "scheduled_at": "--at", "file": "--file",
                    "audience_id": "--audience", "fallback_type": "--fallback", "rate": "--rate",
                    "hourly_cap": "--hourly-cap"}


@task_app.command("create")
def task_create(
    account: AccountOption, name: NameOption, sign: SignOption, template: TemplateOption, file: FileOption = None,
    audience: AudienceOption = None, fallback: FallbackOption = "NONE", fallback_template: FallbackTemplateOption = "",
    custom_template: CustomTemplateOption = "", at: AtOption = None, rate: RateOption = None,
    hourly_cap: CapOption = None, wait: WaitOption = False, data_dir: DataDir = None,
) -> None:
    """Create a mass task; a running `cardsms serve` (or worker) imports and sends it. Outside the account's send
    window (08:00-22:00 Asia/Shanghai by default) it waits for the window to open."""
    from cardsms.domain.schedule import parse_local_start
    from cardsms.services import tasks

    if (file is None) == (audience is None):
        raise fail("give --file or --audience (one of the two)")
    if file is not None and not file.is_file():
        raise fail(f"--file {file}: no such file")
    data = file.read_bytes() if file is not None else None
    try:
        scheduled = parse_local_start(at) if at else None
    except ValueError:
        raise fail(f"--at {at!r}: use 'YYYY-MM-DD HH:MM' (Asia/Shanghai)") from None
    kind = fallback.upper()
    form = tasks.TaskForm(name=name, sign_name=sign, card_template_code=template, fallback_type=kind,
                          sms_template_code=fallback_template if kind == "SMS" else "",
                          digital_template_code=fallback_template if kind == "DIGITALSMS" else "",
                          template_code=custom_template, audience_id=audience, scheduled_at=scheduled,
                          rate=rate or None, hourly_cap=hourly_cap or None)
    settings = load_settings(data_dir=data_dir)
    task_id, note = run(settings, partial(_create, account=account, form=form, data=data,
                                          file_name=file.name if file else ""))
    out.print(f"created task {task_id}", highlight=False)
    if note:
        out.print(note, highlight=False)
    if wait:
        _wait_for_task(settings, account, task_id)


async def _create(svc: Services, account: str, form: Any, data: bytes | None, file_name: str) -> tuple[int, str]:
    """The task's id, and a note when it will wait for the send window."""
    from cardsms.services import tasks

    try:
        account_id = await accounts.account_id(svc, account)
        task_id = await tasks.create_task(svc, account_id, form, data=data, file_name=file_name, created_by="cli")
    except CardsmsError as exc:
        option = _OPTION_OF_FIELD.get(exc.field or "", "")
        raise fail(f"{option}: {exc.message}" if option else exc.message) from None
    window = await accounts.send_window(svc, account_id)
    if form.scheduled_at is None and not window.contains(svc.now()):  # said before the import even ends
        start = window.next_start(svc.now()).astimezone(CHINA)
        return task_id, f"now is outside the send window {window} Asia/Shanghai: the task waits for " \
                        f"{start:%Y-%m-%d %H:%M}"
    return task_id, ""


def _wait_for_task(settings: Settings, account: str, task_id: int) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy.exc import OperationalError

    from cardsms.services import imports, tasks

    async def _main() -> str:
        svc = await open_services(settings)
        try:
            account_id = await accounts.account_id(svc, account)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=out) as bar:
                shown = bar.add_task("importing", total=None)
                while True:
                    try:
                        t = await tasks.get_task(svc, account_id, task_id)
                        if t["state"] == "importing":
                            aud = await imports.get_audience(svc, account_id, t["audience_id"])
                            bar.update(shown, description="importing", completed=aud["lines_done"],
                                       total=aud["total"])
                        else:
                            stats = await task_reports.task_stats(svc, task_id)
                            bar.update(shown, description=t["state"], total=t["total"],
                                       completed=stats["submitted"] + stats["skipped"])
                    except OperationalError:  # SQLite busy under a heavy send: look again shortly
                        await asyncio.sleep(1)
                        continue
                    if t["state"] not in ACTIVE_TASK_STATES:
                        return str(t["state"])
                    await asyncio.sleep(0.5)
        finally:
            await svc.close()

    state = asyncio.run(_main())
    out.print(f"task {task_id}: {state}", highlight=False)
    if state in ("failed", "cancelled"):
        raise typer.Exit(1)


@task_app.command("list")
def task_list(account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """List an account's mass tasks, newest first."""
    from cardsms.services import tasks

    async def work(svc: Services) -> list[Any]:
        return await tasks.list_tasks(svc, await accounts.account_id(svc, account))

    table = Table("id", "name", "state", "recipients", "template", "scheduled")
    for t in run(load_settings(data_dir=data_dir), work):
        table.add_row(str(t["id"]), t["name"], t["state"], str(t["total"]), t["card_template_code"],
                      str(t["scheduled_at"] or ""))
    out.print(table)


@task_app.command("show")
def task_show(task_id: int, account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """A task's settings, import report and statistics."""
    from cardsms.services import imports, tasks

    async def work(svc: Services) -> tuple[Any, Any, dict[str, int], dict[str, Any], list[Any]]:
        account_id = await accounts.account_id(svc, account)
        t = await tasks.get_task(svc, account_id, task_id)
        stats = await task_reports.task_stats(svc, task_id)
        return (t, await imports.get_audience(svc, account_id, t["audience_id"]), stats,
                await task_reports.progress(svc, t, stats), await tasks.events(svc, account_id, task_id))

    t, aud, stats, live, timeline = run(load_settings(data_dir=data_dir), work)
    table = Table("field", "value", show_header=False)
    for key in ("id", "name", "state", "sign_name", "card_template_code", "fallback_type", "total", "scheduled_at",
                "next_start_at", "started_at", "finished_at", "rate", "hourly_cap", "error"):
        table.add_row(key, str(t[key] if t[key] is not None else ""))
    for key in ("window", "current_rate", "remaining", "finish"):
        value = live[key]
        shown = f"{as_utc(value).astimezone(CHINA):%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else value
        table.add_row(f"live.{key}", str(shown if shown is not None else ""))
    for key in ("state", "lines_done", "total", "invalid", "duplicates", "suppressed"):
        table.add_row(f"import.{key}", str(aud[key]))
    for key, value in stats.items():
        table.add_row(f"stats.{key}", str(value))
    for e in timeline:
        table.add_row(f"event.{e['kind']}", f"{as_utc(e['at']).astimezone(CHINA):%Y-%m-%d %H:%M:%S} {e['detail']}")
    out.print(table)


@task_app.command("set-rate")
def task_set_rate(task_id: int, account: Annotated[str, typer.Option("--account")], rate: RateOption = None,
                  hourly_cap: CapOption = None, data_dir: DataDir = None) -> None:
    """Change a task's send rate and hourly cap, also while it runs (0 removes a limit; an option not given keeps
    its value)."""
    from cardsms.services import tasks

    async def work(svc: Services) -> str:
        account_id = await accounts.account_id(svc, account)
        t = await tasks.get_task(svc, account_id, task_id)
        new_rate = t["rate"] if rate is None else rate or None
        new_cap = t["hourly_cap"] if hourly_cap is None else hourly_cap or None
        try:
            await tasks.set_rate(svc, account_id, task_id, new_rate, new_cap)
        except CardsmsError as exc:
            option = {"rate": "--rate", "hourly_cap": "--hourly-cap"}.get(exc.field, "")
            raise fail(f"{option}: {exc.message}" if option else exc.message) from None
        return f"task {task_id}: rate {new_rate or 'unlimited'}/s, hourly cap {new_cap or 'none'}"

    out.print(run(load_settings(data_dir=data_dir), work), highlight=False)


@task_app.command("revoke")
def task_revoke(task_id: int, account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """Revoke a scheduled task (until 5 minutes before its start)."""
    from cardsms.services import tasks

    async def work(svc: Services) -> None:
        await tasks.revoke_task(svc, await accounts.account_id(svc, account), task_id)

    run(load_settings(data_dir=data_dir), work)
    out.print(f"revoked task {task_id}", highlight=False)


