"""Accounts, AccessKeys, console users, the parser key and webhooks from the terminal."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from cardsms.cli.common import DataDir, app, fail, load_settings, out, run
from cardsms.domain.errors import CardsmsError
from cardsms.services import accounts
from cardsms.services.core import Services

account_app = typer.Typer(help="Accounts (tenants).", no_args_is_help=True)
key_app = typer.Typer(help="API AccessKeys.", no_args_is_help=True)
user_app = typer.Typer(help="Console users.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(key_app, name="accesskey")
app.add_typer(user_app, name="user")
webhook_app = typer.Typer(help="Per-account webhooks (delivery reports, replies, card renders).",
                          no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")


@account_app.command("create")
def account_create(
    name: str,
    qps: Annotated[int | None, typer.Option(help="API requests per second for this account", min=1)] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an account. An existing name is an error and changes nothing."""
    account_id = run(load_settings(data_dir=data_dir), lambda svc: accounts.create_account(svc, name, qps))
    out.print(f"created account {name} (id {account_id})", highlight=False)


@account_app.command("list")
def account_list(data_dir: DataDir = None) -> None:
    """List accounts."""
    rows = run(load_settings(data_dir=data_dir), accounts.list_accounts)
    table = Table("id", "name", "qps limit", "created")
    for r in rows:
        table.add_row(str(r["id"]), str(r["name"]), str(r["qps_limit"] or "default"), str(r["created_at"]))
    out.print(table)


@account_app.command("set-qps")
def account_set_qps(
    name: str,
    qps: Annotated[int, typer.Argument(help="requests per second; 0 = the server default", min=0)],
    data_dir: DataDir = None,
) -> None:
    """Set an account's API QPS limit."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.set_qps_limit(svc, name, qps or None))
    out.print(f"account {name}: qps limit {qps or 'default'}", highlight=False)


@account_app.command("set-window")
def account_set_window(
    name: str,
    window: Annotated[str, typer.Argument(help="HH:MM-HH:MM (Asia/Shanghai), 00:00-24:00 for always, or 'default' "
                                               "for the server's CARDSMS_SEND_WINDOW")],
    hold_api_sends: Annotated[bool | None, typer.Option(
        "--hold-api-sends/--no-hold-api-sends",
        help="also hold the account's API sends (not verification codes) until the window opens")] = None,
    data_dir: DataDir = None,
) -> None:
    """Set the hours in which an account's mass tasks send (quiet hours outside them)."""
    async def work(svc: Services) -> None:
        try:
            await accounts.set_send_window(svc, name, window, hold_api_sends)
        except CardsmsError as exc:  # the window's rule
            raise fail(f"WINDOW: {exc.message}") from None

    run(load_settings(data_dir=data_dir), work)
    held = "" if hold_api_sends is None else f"; API sends {'held' if hold_api_sends else 'not held'}"
    out.print(f"account {name}: send window {window}{held}", highlight=False)


@key_app.command("create")
def key_create(
    account: Annotated[str, typer.Option("--account", help="account name")],
    as_json: Annotated[bool, typer.Option("--json", help="print {AccessKeyId, AccessKeySecret} as JSON")] = False,
    description: Annotated[str, typer.Option(help="what the key is for")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create an AccessKey. The secret is shown once here and stored encrypted."""
    key_id, secret = run(load_settings(data_dir=data_dir),
                         lambda svc: accounts.create_access_key(svc, account, description))
    if as_json:
        sys.stdout.write(json.dumps({"AccessKeyId": key_id, "AccessKeySecret": secret}) + "\n")
    else:
        out.print(f"AccessKeyId:     {key_id}\nAccessKeySecret: {secret}", highlight=False)


@key_app.command("list")
def key_list(account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """List an account's AccessKeys (secrets are not shown)."""
    keys = run(load_settings(data_dir=data_dir), lambda svc: accounts.list_access_keys(svc, account))
    table = Table("AccessKeyId", "status", "created")
    for k in keys:
        table.add_row(k.key_id, "enabled" if k.enabled else "disabled", k.created_at.isoformat(timespec="seconds"))
    out.print(table)


@key_app.command("disable")
def key_disable(key_id: str, data_dir: DataDir = None) -> None:
    """Disable an AccessKey (requests signed with it are refused)."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.set_access_key_enabled(svc, key_id, False))
    out.print(f"disabled {key_id}", highlight=False)


@key_app.command("enable")
def key_enable(key_id: str, data_dir: DataDir = None) -> None:
    """Enable a disabled AccessKey."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.set_access_key_enabled(svc, key_id, True))
    out.print(f"enabled {key_id}", highlight=False)


@key_app.command("delete")
def key_delete(key_id: str, data_dir: DataDir = None) -> None:
    """Delete an AccessKey for good."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.delete_access_key(svc, key_id))
    out.print(f"deleted {key_id}", highlight=False)


@user_app.command("create")
def user_create(
    username: str,
    account: Annotated[str, typer.Option("--account", help="account name")],
    role: Annotated[str, typer.Option(help="admin, operator or viewer")] = "operator",
    password: Annotated[str | None, typer.Option(help="password (asked for when omitted; at least 8 chars)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a console user."""
    if role not in accounts.ROLES:
        raise fail(f"--role must be one of {', '.join(accounts.ROLES)}, got {role!r}")
    if password is None:
        password = getpass.getpass("password: ")
    run(load_settings(data_dir=data_dir), lambda svc: accounts.create_user(svc, account, username, password, role))
    out.print(f"created {role} {username} in account {account}", highlight=False)


@app.command("parser-key")
def parser_key_command(
    vendor: Annotated[str, typer.Option("--vendor", help="the handset vendor, e.g. HuaWei")],
    data_dir: DataDir = None,
) -> None:
    """Print the key a vendor's card parser signs its fetches with (X-Card-Parser-Signature, docs/api.md): give
    it to that vendor; only signed fetches count as render receipts."""
    from cardsms.domain.vendors import Vendor
    from cardsms.links.parsers import parser_key

    names = [v.value for v in Vendor]
    if vendor not in names:
        raise fail(f"--vendor must be one of {', '.join(names)}, got {vendor!r}")
    sys.stdout.write(parser_key(load_settings(data_dir=data_dir).resolved_parser_secret(), vendor) + "\n")


@webhook_app.command("set")
def webhook_set(
    account: Annotated[str, typer.Option("--account", help="account name")],
    kind: Annotated[str, typer.Option("--type", help="SmsReport, SmsUp or MnsCardVender")],
    url: Annotated[str, typer.Option("--url", help="the receiver's http(s) URL")],
    data_dir: DataDir = None,
) -> None:
    """Create or replace a webhook; prints the secret that signs its x-cardsms-signature header."""
    from cardsms.services import webhooks

    async def work(svc: Services) -> str:
        return await webhooks.set_webhook(svc, await accounts.account_id(svc, account), kind, url)

    secret = run(load_settings(data_dir=data_dir), work)
    sys.stdout.write(json.dumps({"type": kind, "url": url, "secret": secret}) + "\n")


@webhook_app.command("list")
def webhook_list(account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List webhooks with their outbox counts (pending, delivered, failed) and last error."""
    from cardsms.services import webhooks

    async def work(svc: Services) -> list[dict[str, Any]]:
        return await webhooks.list_webhooks(svc, await accounts.account_id(svc, account))

    rows = run(load_settings(data_dir=data_dir), work)
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    table = Table("type", "url", "pending", "delivered", "failed", "last error")
    for r in rows:
        table.add_row(r["type"], r["url"], str(r["pending"]), str(r["delivered"]), str(r["failed"]), r["last_error"])
    out.print(table)


@webhook_app.command("remove")
def webhook_remove(account: Annotated[str, typer.Option("--account")],
                   kind: Annotated[str, typer.Option("--type")], data_dir: DataDir = None) -> None:
    """Remove a webhook (its pending reports are then given up)."""
    from cardsms.services import webhooks

    async def work(svc: Services) -> bool:
        return await webhooks.remove_webhook(svc, await accounts.account_id(svc, account), kind)

    if not run(load_settings(data_dir=data_dir), work):
        raise fail(f"account {account} has no {kind} webhook", 1)
    out.print(f"removed the {kind} webhook of {account}", highlight=False)


