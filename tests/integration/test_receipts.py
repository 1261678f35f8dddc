"""Receipt policy per link (`receipts=all|first|last|any` on a connector URL) against SMSCs that report
only one part of a long message: with the matching policy the long messages end delivered; with `all` (the
default) they wait for receipts that never come and end `NO_RECEIPT` at CARDSMS_RECEIPT_TIMEOUT_HOURS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import select

from cardsms.db.schema import messages
from cardsms.services.core import Services
from tests.conftest import BACKENDS, env_for, new_tenant, run_with_services
from tests.harness import free_port, running_server
from tests.integration.helpers import approved_sign, eventually, text_template
from tests.integration.test_cmpp_and_tls import simulator

LONG = "尊敬的客户：您的订单已发货，" + "物流信息请在App内查看，感谢您的支持与信任。" * 5  # 3 parts in UCS-2


async def _states(svc: Services) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    async with svc.read() as conn:
        for phone, state, code in await conn.execute(select(messages.c.phone, messages.c.state, messages.c.error_code)):
            key = (phone[:3], state, code)
            out[key] = out.get(key, 0) + 1
    return out


@pytest.mark.parametrize(("backend", "protocol", "part"), [(b, "smpp", "first") for b in BACKENDS] +
                         [("sqlite", "cmpp", "last")])
def test_a_one_part_receipt_smsc_settles_long_messages_only_under_its_policy(
        backend: str, protocol: str, part: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    port = free_port()
    kind, base = ("smsc", f"smpp://cardsms:pw@127.0.0.1:{port}") if protocol == "smpp" else \
        ("ismg", f"cmpp://901234:pw@127.0.0.1:{port}?version=3.0&src_id=1069")
    sep = "&" if "?" in base else "?"
    links = json.dumps([{"url": f"{base}{sep}receipts={part}", "name": "one-part", "prefixes": ["+86137"]},
                        {"url": base, "name": "every-part", "prefixes": ["+86138"]}])
    phones = [f"1370000{i:04d}" for i in range(5)] + [f"1380000{i:04d}" for i in range(5)]
    with simulator(kind, env, "--port", str(port), "--latency-ms", "10", "--receipts", part):
        with running_server({**env, "CARDSMS_SMSC": links}, backend) as server:
            tenant = new_tenant(server)
            c = tenant.client()
            sign = approved_sign(c, "长短信")
            code = text_template(c, LONG, name="long")
            sent = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones), sign_name=sign,
                                               template_code=code)).body
            assert sent.code == "OK", sent.to_map()
            # the one-part link's messages are delivered by the one receipt; the others wait for the rest
            eventually(lambda: run_with_services(env, _states).get(("137", "delivered", "")) == 5, timeout=60)
            states = run_with_services(env, _states)
            assert states.get(("138", "submitted", "")) == 5, states
        # a restart with a short receipt timeout closes what still waits: NO_RECEIPT, as without the policy
        with running_server({**env, "CARDSMS_SMSC": links, "CARDSMS_RECEIPT_TIMEOUT_HOURS": "0.0001"}, backend):
            eventually(lambda: run_with_services(env, _states).get(("138", "failed", "NO_RECEIPT")) == 5,
                       timeout=60)
            assert run_with_services(env, _states).get(("137", "delivered", "")) == 5


def test_receipt_policies_are_checked_in_the_url() -> None:
    from cardsms.domain.connectors import parse_connectors

    (cfg,) = parse_connectors(["smpp://a:b@h:1?receipts=any"], window=10, tps=0, system_type="")
    assert cfg.receipts == "any"
    assert parse_connectors(["cmpp://901234:pw@h:1"], window=10, tps=0, system_type="")[0].receipts == "all"
    with pytest.raises(ValueError, match=r"smsc\[1\]: receipts must be one of all, first, last, any"):
        parse_connectors(["smpp://a:b@h:1?receipts=most"], window=10, tps=0, system_type="")
