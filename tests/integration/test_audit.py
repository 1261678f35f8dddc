"""The audit log names who changed what: API keys, the CLI, console users (the browser test covers those);
each account sees its own entries only. Both databases."""

from __future__ import annotations

from alibabacloud_dysmsapi20170525 import models as m

from cardsms.services import accounts, audit
from cardsms.services.core import Services
from tests.conftest import Tenant, new_tenant, run_with_services
from tests.harness import cli
from tests.integration.helpers import text_template


def test_api_cli_and_other_accounts_in_the_audit_log(tenant: Tenant) -> None:
    c = tenant.client()
    code = text_template(c, "您的订单已发货。")
    assert c.delete_sms_template(m.DeleteSmsTemplateRequest(template_code=code)).body.code == "OK"
    env = tenant.server.env
    cli(env, "webhook", "set", "--account", tenant.name, "--type", "SmsUp", "--url", "http://127.0.0.1:9/x")
    key = cli(env, "accesskey", "create", "--account", tenant.name).stdout
    other = new_tenant(tenant.server)

    async def read(svc: Services) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        mine = await audit.entries(svc, await accounts.account_id(svc, tenant.name))
        theirs = await audit.entries(svc, await accounts.account_id(svc, other.name))
        return ([(r["actor"], r["action"], r["subject"]) for r in mine],
                [(r["actor"], r["action"], r["subject"]) for r in theirs])

    mine, theirs = run_with_services(env, read)
    api = f"api:{tenant.key_id}"
    assert (api, "template.submit", f"{code} (#") in [(a, b, s[:len(code) + 3]) for a, b, s in mine]
    assert (api, "template.delete", code) in mine
    assert ("cli", "webhook.set", "SmsUp") in mine
    assert any(a == "cli" and b == "accesskey.create" and s in key for a, b, s in mine)
    assert not any(code in s for _, _, s in theirs)  # another account sees none of it
