"""Link domains per account: two accounts with their own domains; each one's card links, short links and
card messages carry its domain, GetCardSmsLink and AddShortUrl accept only its domains, and a code opens
on its own account's domain (and the server's link host), not on the other's."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import select

from cardsms.db.schema import messages
from cardsms.services.core import Services
from tests.conftest import BACKENDS, env_for, new_tenant, run_with_services
from tests.harness import cli, running_server
from tests.integration.helpers import approved_card, approved_sign, console_client, eventually, legacy


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_accounts_links_carry_their_own_domain_and_open_only_there(
        backend: str, request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_CARD_SHARE="100",
                  CARDSMS_SIM_OPEN_SHARE="0")
    with running_server(env, backend) as server:
        a, b = new_tenant(server), new_tenant(server)
        cli(env, "domain", "add", a.name, "Links.Brand-A.test")
        cli(env, "domain", "add", a.name, "go.brand-a.test")
        cli(env, "domain", "add", b.name, "links.brand-b.test")
        taken = cli(env, "domain", "add", b.name, "go.brand-a.test", check=False)
        assert taken.returncode != 0 and "already registered (by another account)" in taken.stderr + taken.stdout
        bad = cli(env, "domain", "add", b.name, "https://x.test/s", check=False)
        assert bad.returncode != 0 and "without scheme or path" in bad.stderr + bad.stdout
        assert "links.brand-a.test  (default)" in cli(env, "domain", "list", a.name).stdout

        server_base = f"http://127.0.0.1:{server.port}"
        opened: dict[str, list[str]] = {}
        for tenant, own, other in ((a, "links.brand-a.test", "links.brand-b.test"),
                                   (b, "links.brand-b.test", "links.brand-a.test")):
            c = tenant.client()
            sign = approved_sign(c, "域名")
            card = approved_card(c)
            phones = [f"1390000{i:04d}" for i in range(10)]
            links = c.get_card_sms_link(m.GetCardSmsLinkRequest(
                card_template_code=card, phone_number_json=json.dumps(phones), sign_name_json=json.dumps([sign]),
                card_code_type=2, card_link_type=1)).body
            assert links.success, links.to_map()
            urls = links.data.card_sms_links.split(",")
            assert urls and all(u.startswith(f"http://{own}/s/") for u in urls), urls
            # Domain: only the account's own
            refused = legacy(tenant, "GetCardSmsLink", CardTemplateCode=card, PhoneNumberJson=json.dumps(phones),
                             SignNameJson=json.dumps([sign]), CardCodeType="1", Domain=other)
            assert refused["Success"] is False and "not a link domain registered for this account" in \
                refused["Message"], refused
            short = c.add_short_url(m.AddShortUrlRequest(source_url="https://shop.example/a", short_url_name="店",
                                                         effective_days="7")).body
            assert short.code == "OK" and short.data.short_url.startswith(f"http://{own}/s/"), short.to_map()
            wrong = legacy(tenant, "AddShortUrl", SourceUrl="https://shop.example/b", ShortUrlName="店",
                           EffectiveDays="7", Domain=other)
            assert wrong["Code"] == "isv.INVALID_PARAMETERS" and other in wrong["Message"], wrong
            # a card message's text carries the account's domain
            sent = c.send_card_sms(m.SendCardSmsRequest(
                card_template_code=card, sign_name=sign, fallback_type="NONE",
                card_objects=[m.SendCardSmsRequestCardObjects(mobile=p) for p in phones[:3]])).body
            assert sent.code == "OK" and sent.data.media_mobiles, sent.to_map()

            async def contents(svc: Services, biz: str = str(sent.data.biz_card_id)) -> list[str]:
                async with svc.read() as conn:
                    return [r[0] for r in await conn.execute(select(messages.c.content).where(
                        messages.c.biz_id == biz, messages.c.channel == "card", messages.c.state != "skipped"))]

            texts = run_with_services(env, contents)
            assert texts and all(re.search(rf"http://{re.escape(own)}/s/[A-Za-z0-9]+", t) for t in texts), texts
            # the codes open on the account's domain and the server's link host, not on the other account's
            code = urls[0].rsplit("/", 1)[1]
            page = f"{server_base}/s/{code}"
            browser = {"User-Agent": "Mozilla/5.0 Mobile"}
            assert httpx.get(page, headers={**browser, "Host": own}).status_code == 200
            assert httpx.get(page, headers={**browser, "Host": other}).status_code == 404
            assert httpx.get(page, headers=browser).status_code == 200
            short_code = short.data.short_url.rsplit("/", 1)[1]
            assert httpx.get(f"{server_base}/s/{short_code}", headers={"Host": other}).status_code == 404
            assert httpx.get(f"{server_base}/s/{short_code}", headers={"Host": own}).status_code == 302
            opened[tenant.name] = texts

            # the simulated phones render the card from the account's domain (their parser fetch names the host)
            async def rendered(svc: Services, biz: str = str(sent.data.biz_card_id)) -> int:
                async with svc.read() as conn:
                    return len((await conn.execute(select(messages.c.id).where(
                        messages.c.biz_id == biz, messages.c.render_status == 1))).all())

            want = len(texts)
            eventually(lambda want=want, rendered=rendered: run_with_services(env, rendered) == want,  # type: ignore[misc]
                       timeout=30)

        # the console: register, make default, remove; a bad domain is named
        web = console_client(server, env, a.name)
        token = re.search(r'name="csrf" value="([^"]+)"', web.get("/console/settings").text).group(1)  # type: ignore[union-attr]
        assert web.post("/console/settings/domain", data={"csrf": token, "domain": "m.brand-a.test"}
                        ).status_code == 303
        assert web.post("/console/settings/domain-default", data={"csrf": token, "domain": "m.brand-a.test"}
                        ).status_code == 303
        bad_form = web.post("/console/settings/domain", data={"csrf": token, "domain": "not a domain"})
        assert bad_form.status_code == 400 and 'data-error="domain"' in bad_form.text
        assert "m.brand-a.test  (default)" in cli(env, "domain", "list", a.name).stdout
        fresh = a.client().add_short_url(m.AddShortUrlRequest(source_url="https://shop.example/c",
                                                              short_url_name="店", effective_days="7")).body
        assert fresh.data.short_url.startswith("http://m.brand-a.test/s/"), fresh.to_map()
        assert web.post("/console/settings/domain-remove", data={"csrf": token, "domain": "m.brand-a.test"}
                        ).status_code == 303
        assert "links.brand-a.test  (default)" in cli(env, "domain", "list", a.name).stdout
        audit = web.get("/console/audit").text
        assert "domain.add" in audit and "domain.default" in audit and "domain.remove" in audit
