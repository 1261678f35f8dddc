"""Settings: webhooks, link domains, frequency control, alerts and the account's send window."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from cardsms.console.auth import (
    Session,
)
from cardsms.console.pages.forms import text_form
from cardsms.domain import frequency as freq_rules
from cardsms.domain.errors import CardsmsError
from cardsms.services import (
    accounts,
    alerts,
    domains,
    frequency,
    suppression,
    webhooks,
)

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def _settings_context(console: Console, session: Session) -> dict[str, Any]:
    keys = await accounts.list_access_keys(console.svc, session.account)
    hooks = await webhooks.list_webhooks(console.svc, session.account_id)
    total, suppressed = await suppression.list_suppressed(console.svc, session.account_id)
    connectors = console.delivery.status()["connectors"] if console.delivery is not None else []
    own, hold = await accounts.window_settings(console.svc, session.account_id)
    return {"keys": keys, "hooks": hooks, "kinds": webhooks.KINDS, "suppressed": suppressed,
            "suppressed_total": total, "connectors": connectors, "own_window": own, "hold_api_sends": hold,
            "server_window": console.svc.settings.send_window,
            "freq": await frequency.describe(console.svc, session.account_id),
            "domains": await domains.list_domains(console.svc, session.account_id),
            "daily_alert": await alerts.daily_alert(console.svc, session.account_id),
            "link_base": console.svc.settings.link_base}


async def settings_page(console: Console, request: Request, session: Session) -> Response:
    return console.render(request, "settings.html", session, errors={}, created=None,
                       **await _settings_context(console, session))


async def _create_key(console: Console, session: Session, form: dict[str, str]) -> tuple[str, str] | None:
    return await accounts.create_access_key(console.svc, session.account, form.get("description", "")[:200])


async def _toggle_key(console: Console, session: Session, form: dict[str, str]) -> None:
    await accounts.set_access_key_enabled(console.svc, form.get("key_id", ""), form.get("enable") == "1",
                                          account_id=session.account_id)


async def _set_alert(console: Console, session: Session, form: dict[str, str]) -> None:
    raw = form.get("daily_alert", "").strip()
    if raw and not raw.isdigit():
        raise CardsmsError("isv.INVALID_PARAMETERS", f"daily_alert: a whole number of messages, or empty for none; "
                           f"got {raw[:20]!r}")
    await alerts.set_daily_alert(console.svc, session.account_id, int(raw) if raw else None)


Section = Callable[[Any, Session, dict[str, str]], Awaitable[Any]]  # (console, session, form)
SECTIONS: dict[str, Section] = {
    "keys": _create_key,
    "keys-toggle": _toggle_key,
    "webhook": lambda c, s, f: webhooks.set_webhook(c.svc, s.account_id, f.get("kind", ""), f.get("url", "")),
    "webhook-remove": lambda c, s, f: webhooks.remove_webhook(c.svc, s.account_id, f.get("kind", "")),
    "suppress": lambda c, s, f: suppression.add_suppressed(c.svc, s.account_id, f.get("phone", ""),
                                                           f.get("detail", "")),
    "unsuppress": lambda c, s, f: suppression.remove_suppressed(c.svc, s.account_id, f.get("phone", "")),
    "alert": _set_alert,
    "domain": lambda c, s, f: domains.add_domain(c.svc, s.account_id, f.get("domain", ""), f.get("default") == "1"),
    "domain-remove": lambda c, s, f: domains.remove_domain(c.svc, s.account_id, f.get("domain", "")),
    "domain-default": lambda c, s, f: domains.set_default(c.svc, s.account_id, f.get("domain", "")),
    "frequency": lambda c, s, f: _frequency_post(c, s, f),
    "window": lambda c, s, f: accounts.set_send_window(c.svc, s.account, f.get("window", "").strip() or "default",
                                                       f.get("hold_api_sends") == "1"),
}


async def settings_post(console: Console, request: Request, session: Session) -> Response:
    """One settings section's form (admins): the section's change, then the page again (with a new AccessKey's
    secret shown once, or the section's error)."""
    form = await text_form(request)
    section = request.path_params["section"]
    if section not in SECTIONS:
        return PlainTextResponse(f"unknown settings section {section!r}", 404)
    errors: dict[str, str] = {}
    created = None
    try:
        result = await SECTIONS[section](console, session, form)
        created = result if section == "keys" else None
    except CardsmsError as exc:
        errors[section] = exc.message
    except accounts.AccountError as exc:
        errors[section] = str(exc)
    if not errors and created is None:
        return RedirectResponse("/console/settings", 303)
    return console.render(request, "settings.html", session, 400 if errors else 200, errors=errors,
                          created=created, **await _settings_context(console, session))


async def _frequency_post(console: Console, session: Session, form: dict[str, str]) -> None:
    """The frequency control form: one field per kind and window (empty: the default), the exempt numbers
    and the duplicate-content seconds. Everything is checked before anything is changed."""
    current = await frequency.describe(console.svc, session.account_id)
    changes: list[tuple[str, str, int | None]] = []
    for row in current["limits"]:
        raw = form.get(f"limit_{row['kind']}_{row['period']}", "").strip()
        value = None if raw == "" else int(raw) if raw.isdigit() else -1
        if value is not None and (value < 0 or value > freq_rules.MAX_LIMIT):
            raise CardsmsError("isv.INVALID_PARAMETERS", f"limit_{row['kind']}_{row['period']}: a whole "
                               f"number 0 (no limit) to {freq_rules.MAX_LIMIT}, or empty for the default; "
                               f"got {raw[:20]!r}")
        if value != (row["limit"] if row["own"] else None):
            changes.append((row["kind"], row["period"], value))
    raw_seconds = form.get("duplicate_seconds", "").strip() or "0"
    if not raw_seconds.isdigit() or int(raw_seconds) > freq_rules.MAX_DUPLICATE_SECONDS:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"duplicate_seconds: 0 (off) to "
                           f"{freq_rules.MAX_DUPLICATE_SECONDS} seconds; got {raw_seconds[:20]!r}")
    exempt = freq_rules.parse_exempt([form.get("exempt", "")])
    if sorted(set(exempt)) != current["exempt"]:
        await frequency.set_exempt(console.svc, session.account_id, exempt)  # checks every number first
    for kind, period, value in changes:
        await frequency.set_limit(console.svc, session.account_id, kind, period, value)
    if int(raw_seconds) != current["duplicate_seconds"]:
        await frequency.set_duplicate_seconds(console.svc, session.account_id, int(raw_seconds))
