"""The protective rules from the terminal: `cardsms frequency` (services/frequency.py) and `cardsms domain`
(link domains, services/domains.py). Registered on the main app by cardsms.cli; every change is audited as
the CLI's."""

from __future__ import annotations

from typing import Annotated

import typer

from cardsms.cli.accounts import account_app
from cardsms.cli.common import DataDir, app, fail, load_settings, out, run
from cardsms.domain import frequency as rules
from cardsms.services import accounts, alerts, domains, frequency
from cardsms.services.core import Services

frequency_app = typer.Typer(help="Frequency control: what one number may receive (Alibaba's limits by default).",
                            no_args_is_help=True)
app.add_typer(frequency_app, name="frequency")
domain_app = typer.Typer(help="Link domains: the hosts an account's card links and short links are on.",
                         no_args_is_help=True)
app.add_typer(domain_app, name="domain")


@frequency_app.command("show")
def show(account: str, data_dir: DataDir = None) -> None:
    """The account's limits per kind and window, its exempt numbers and the duplicate-content guard."""
    async def work(svc: Services) -> dict[str, object]:
        return await frequency.describe(svc, await accounts.account_id(svc, account))

    found = run(load_settings(data_dir=data_dir), work)
    for row in found["limits"]:  # type: ignore[attr-defined]
        if row["limit"] or row["own"]:
            origin = "own" if row["own"] else "default"
            out.print(f"{row['kind']:<13} {row['period']:<7} {row['limit'] or 'no limit'} ({origin})", highlight=False)
    seconds = found["duplicate_seconds"]
    out.print(f"duplicate content: {f'the same text at most once per {seconds} s' if seconds else 'off'}",
              highlight=False)
    exempt = found["exempt"]
    out.print(f"exempt numbers ({len(exempt)}): {', '.join(exempt) or '-'}", highlight=False)  # type: ignore[arg-type]


@frequency_app.command("set")
def set_limit(
    account: str,
    kind: Annotated[str, typer.Argument(help=f"one of {', '.join(rules.KINDS)}")],
    period: Annotated[str, typer.Argument(help=f"one of {', '.join(rules.PERIODS)} (the day in mainland time)")],
    limit: Annotated[str, typer.Argument(help="messages one number may get per signature in the window; 0 = no "
                                              "limit; 'default' = Alibaba's")],
    data_dir: DataDir = None,
) -> None:
    """Tighten or loosen one limit of an account."""
    if limit == "default":
        value = None
    elif limit.isdigit():
        value = int(limit)
    else:
        raise fail(f"LIMIT: a whole number of messages (0 = no limit) or 'default', got {limit!r}")
    try:
        rules.check_limit(kind, period, value or 0)
    except ValueError as exc:
        raise fail(str(exc)) from None

    async def work(svc: Services) -> None:
        await frequency.set_limit(svc, await accounts.account_id(svc, account), kind, period, value)

    run(load_settings(data_dir=data_dir), work)
    out.print(f"account {account}: {kind} {period} limit {limit}", highlight=False)


@frequency_app.command("exempt")
def exempt(
    account: str,
    numbers: Annotated[list[str] | None, typer.Argument(
        help=f"the numbers frequency control never refuses (replaces the list; at most {rules.MAX_EXEMPT})")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="exempt no number")] = False,
    data_dir: DataDir = None,
) -> None:
    """Replace the account's exempt numbers (an allowlist, e.g. its test phones)."""
    if not numbers and not clear:
        raise fail("NUMBERS: give the exempt numbers, or --clear to exempt none")

    async def work(svc: Services) -> list[str]:
        return await frequency.set_exempt(svc, await accounts.account_id(svc, account),
                                          rules.parse_exempt(numbers or []))

    stored = run(load_settings(data_dir=data_dir), work)
    out.print(f"account {account}: {len(stored)} exempt number(s)", highlight=False)


@frequency_app.command("duplicates")
def duplicates(
    account: str,
    seconds: Annotated[int, typer.Argument(help="refuse the same text to the same number within this many seconds "
                                                "(0 = off; 30 is Tencent's rule)", min=0,
                                           max=rules.MAX_DUPLICATE_SECONDS)],
    data_dir: DataDir = None,
) -> None:
    """The duplicate-content guard of an account."""
    async def work(svc: Services) -> None:
        await frequency.set_duplicate_seconds(svc, await accounts.account_id(svc, account), seconds)

    run(load_settings(data_dir=data_dir), work)
    out.print(f"account {account}: duplicate-content guard {f'{seconds} s' if seconds else 'off'}", highlight=False)


@account_app.command("set-alert")
def daily_alert(
    account: str,
    threshold: Annotated[str, typer.Argument(help="messages a day (mainland time) past which an alert is raised "
                                                  "(console overview, VolumeAlert webhook); 'off' for none")],
    data_dir: DataDir = None,
) -> None:
    """An account's daily volume alert (Alibaba's 发送总量预警)."""
    if threshold != "off" and not threshold.isdigit():
        raise fail(f"THRESHOLD: a whole number of messages or 'off', got {threshold!r}")
    value = None if threshold == "off" else int(threshold)

    async def work(svc: Services) -> None:
        await alerts.set_daily_alert(svc, await accounts.account_id(svc, account), value)

    run(load_settings(data_dir=data_dir), work)
    out.print(f"account {account}: daily volume alert {threshold}", highlight=False)


@domain_app.command("add")
def domain_add(
    account: str,
    domain: Annotated[str, typer.Argument(help="a host name served by this server, e.g. links.brand.com (its DNS "
                                               "and TLS certificate are yours to set up)")],
    default: Annotated[bool, typer.Option("--default", help="the account's new links go to this domain")] = False,
    data_dir: DataDir = None,
) -> None:
    """Register a link domain for an account (its first is its default)."""
    async def work(svc: Services) -> str:
        return await domains.add_domain(svc, await accounts.account_id(svc, account), domain, default)

    value = run(load_settings(data_dir=data_dir), work)
    out.print(f"account {account}: link domain {value} registered", highlight=False)


@domain_app.command("remove")
def domain_remove(account: str, domain: str, data_dir: DataDir = None) -> None:
    """Remove a link domain of an account (its links then open on the server's own link host)."""
    async def work(svc: Services) -> None:
        await domains.remove_domain(svc, await accounts.account_id(svc, account), domain)

    run(load_settings(data_dir=data_dir), work)
    out.print(f"account {account}: link domain {domain} removed", highlight=False)


@domain_app.command("default")
def domain_default(account: str, domain: str, data_dir: DataDir = None) -> None:
    """Make one of an account's link domains the one its new links go to."""
    async def work(svc: Services) -> None:
        await domains.set_default(svc, await accounts.account_id(svc, account), domain)

    run(load_settings(data_dir=data_dir), work)
    out.print(f"account {account}: new links go to {domain}", highlight=False)


@domain_app.command("list")
def domain_list(account: str, data_dir: DataDir = None) -> None:
    """An account's link domains, the default marked."""
    async def work(svc: Services) -> list[dict[str, object]]:
        return await domains.list_domains(svc, await accounts.account_id(svc, account))

    rows = run(load_settings(data_dir=data_dir), work)
    for r in rows:
        out.print(f"{r['domain']}{'  (default)' if r['is_default'] else ''}", highlight=False)
    if not rows:
        out.print(f"no link domain: links use {load_settings(data_dir=data_dir).link_base}", highlight=False)
