"""Digital messages for real: the README's card task with digital fallback over MM7 to `cardsms simulator
mmsc` in its own process (every part byte-equal at the MMSC, every delivery report back, an MO "R" opts the
number out), and what the server's MM7 inbound path does with hostile or unauthenticated requests."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import func, select

from cardsms.db.schema import early_receipts, message_events, messages
from cardsms.delivery import mm7_decode
from cardsms.delivery import mm7_wire as wire
from cardsms.services.core import Services
from tests.conftest import BACKENDS, env_for, new_tenant, run_with_services
from tests.harness import Server, cli, free_port, running_server
from tests.integration.helpers import approved_sign, b64, console_client, eventually, legacy, png, text_template
from tests.integration.test_cmpp_and_tls import simulator
from tests.integration.test_sending import card_records

VASP, SECRET = "VASP01", "s3cret-mm7"
TEXT = "您的订单已发货，点击查看物流详情。".encode()


def digital_template(client: object, parts: list[tuple[bytes, str, str]]) -> str:
    body = client.create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(  # type: ignore[attr-defined]
        template_name="物流通知", remark="test", template_contents=[
            m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64(data), file_name=name,
                                                              file_size=len(data), file_suffix=suffix)
            for data, name, suffix in parts])).body
    assert body.code == "OK", body.to_map()
    return str(body.template_code)


def mm7_url(port: int) -> str:
    return f"mm7://{VASP}:{SECRET}@127.0.0.1:{port}/mm7/submit?vasid=VAS01&service_code=10690123"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_readme_card_task_with_digital_fallback_over_mm7(backend: str, request: pytest.FixtureRequest,
                                                             tmp_path: Path) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    server_port, smsc_port, mmsc_port = free_port(), free_port(), free_port()
    smsc_log, mmsc_log = tmp_path / "smsc.jsonl", tmp_path / "mmsc.jsonl"
    image = png(320, 180)
    with simulator("smsc", env, "--port", str(smsc_port), "--latency-ms", "20", "--log", str(smsc_log)), \
            simulator("mmsc", env, "--port", str(mmsc_port), "--vasp-id", VASP, "--secret", SECRET,
                      "--report-url", f"http://127.0.0.1:{server_port}/mm7/mm7-1", "--report-user", VASP,
                      "--report-secret", SECRET, "--latency-ms", "20", "--reply-text", "R", "--log", str(mmsc_log)), \
            running_server(env, backend, ("--smsc", f"smpp://cardsms:pw@127.0.0.1:{smsc_port}",
                                          "--digital", mm7_url(mmsc_port)), port=server_port) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "数字回落")
        code = digital_template(c, [(TEXT, "正文", "txt"), (image, "图片", "png")])
        phones = [str(13700000000 + int(time.time() * 10) % 10_000_000 * 10 + i) for i in range(30)]
        numbers = tmp_path / "numbers.txt"
        numbers.write_text("\n".join(phones) + "\n")
        done = cli(env, "task", "create", "--account", tenant.name, "--name", "mm7", "--sign", sign,
                   "--template", "PUB_SERVICE_NOTICE", "--fallback", "DIGITALSMS", "--fallback-template", code,
                   "--file", str(numbers), "--wait")
        assert "completed" in done.stdout, done.stdout

        # the card phones got the card link by SMS; every other number one digital message at the MMSC
        card_phones = {json.loads(line)["dest"].removeprefix("86") for line in smsc_log.read_text().splitlines()}
        submits = [json.loads(line) for line in mmsc_log.read_text().splitlines()]
        digital_phones = [r.removeprefix("86") for s in submits for r in s["recipients"]]
        assert card_phones and digital_phones, "the handset population should give both kinds"
        assert sorted(digital_phones) == sorted(set(phones) - card_phones)  # each once
        for s in submits:
            assert s["vasp_id"] == VASP and s["vas_id"] == "VAS01" and s["sender"] == "10690123"
            assert s["schema"] == "REL-6-MM7-1-4" and s["delivery_report"] and s["expiry"]
            assert [(p["sha256"], p["location"]) for p in s["parts"]] == [
                (hashlib.sha256(TEXT).hexdigest(), "正文"), (hashlib.sha256(image).hexdigest(), "图片")]
            assert [p["type"].split(";")[0] for p in s["parts"]] == ["text/plain", "image/png"]

        # every digital message's delivery report arrived: delivered in GetCardSmsDetails
        def undelivered() -> list[str]:
            return [p for p in digital_phones if not any(
                r.receive_type == "DIGITAL_SMS" and r.send_status == 3 and r.template_code == code
                for r in card_records(c, phone_number=p))]

        eventually(lambda: not undelivered(), timeout=60)

        # QuerySendTimeline tells the digital leg's story, with the MMSC's MessageID
        async def digital_ids(svc: Services) -> list[tuple[str, str, int]]:
            async with svc.read() as conn:
                return [(r.phone, r.biz_id, r.task_id) for r in await conn.execute(
                    select(messages.c.phone, messages.c.biz_id, messages.c.task_id).where(
                        messages.c.channel == "digital"))]

        phone, biz_id, task_id = run_with_services(env, digital_ids)[0]
        (timeline,) = legacy(tenant, "QuerySendTimeline", BizId=biz_id, PhoneNumber=phone)["Messages"]
        assert timeline["State"] == "delivered"
        events = [(e["Event"], e.get("Detail", "")) for e in timeline["Events"]]
        # the MMSC may deliver the reply R before our submit outcome is recorded: the reply is its own event
        assert [k for k, _ in events if k != "replied"] == ["queued", "submitted", "delivered"], events
        assert ("replied", "R") in events, events
        assert any("mm7-1" in d and "MM" in d for k, d in events if k == "submitted"), events

        # the console's task page: the digital leg's figures and the digital message's preview
        web = console_client(server, env, tenant.name)
        page = web.get(f"/console/tasks/{task_id}").text
        assert re.search(rf'data-stat="fallback">{len(digital_phones)}<', page), page[-3000:]
        assert re.search(r'data-stat="delivered">30<', page)
        preview = page[page.index('id="digital-preview"'):]
        assert "点击查看物流详情" in preview and 'data-part="png"' in preview
        image_url = re.search(r'<img src="([^"]+)"', preview).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        assert httpx.get(image_url, timeout=10).content == image
        # the templates page links the digital template to its own preview
        assert f'href="/console/templates/digital/{code}"' in web.get("/console/templates").text
        detail = web.get(f"/console/templates/digital/{code}")
        assert detail.status_code == 200 and "点击查看物流详情" in detail.text and 'data-part="png"' in detail.text
        assert re.search(rf'data-stat="size">{len(TEXT) + len(image)}<', detail.text)
        assert web.get("/console/templates/digital/SMS_000000").status_code == 404
        export = list(csv.DictReader(io.StringIO(web.get(f"/console/tasks/{task_id}/export.csv").text)))
        assert sorted(r["phone"] for r in export if r["channel"] == "digital") == sorted(digital_phones)
        assert {r["state"] for r in export if r["channel"] == "digital"} == {"delivered"}
        links = web.get("/console/settings").text
        links = links[links.index('id="connectors"'):]
        assert "mm7-1" in links and "protocol=mm7" in links, links[:2000]
        status = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        assert 'cardsms_connector_bound{connector="mm7-1",protocol="mm7"} 1.0' in status

        # each digital recipient replied R: opted out, so a promotional send skips them
        promo = text_template(c, "双十二大促，全场五折，详情见店铺首页。", template_type=2, name="promo")

        def opted_out() -> bool:
            again = c.send_sms(m.SendSmsRequest(phone_numbers=digital_phones[0], sign_name=sign,
                                                template_code=promo)).body
            assert again.code == "OK", again.to_map()
            return "opted out" in str(again.message)

        eventually(opted_out, timeout=60)


def _report(message_id: str = "MID-unknown") -> tuple[str, bytes]:
    return wire.encode_delivery_report(wire.DeliveryReportReq(
        "tx-1", message_id, "8613700000001", "10690123", datetime.now(UTC), "Retrieved"))


def test_the_mm7_inbound_path_refuses_hostile_and_unauthenticated_requests(request: pytest.FixtureRequest) -> None:
    env = env_for("sqlite", request, CARDSMS_SIM_REVIEW_SECONDS="0")
    mmsc_port = free_port()  # nothing listens there: only the inbound side is exercised
    with running_server(env, "sqlite", ("--digital", mm7_url(mmsc_port))) as server:
        url = f"http://127.0.0.1:{server.port}/mm7/mm7-1"
        auth = "Basic " + base64.b64encode(f"{VASP}:{SECRET}".encode()).decode()
        ctype, body = _report()
        # no or wrong credentials
        assert httpx.post(url, content=body, headers={"content-type": ctype}).status_code == 401
        wrong = "Basic " + base64.b64encode(f"{VASP}:nope".encode()).decode()
        assert httpx.post(url, content=body, headers={"content-type": ctype, "authorization": wrong}
                          ).status_code == 401
        # an unknown link
        assert httpx.post(url.replace("mm7-1", "other"), content=body,
                          headers={"content-type": ctype, "authorization": auth}).status_code == 404
        hostile = {
            b"<<<not xml": wire.FORMAT_CORRUPT,
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>':
                wire.FORMAT_CORRUPT,
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;</l>': wire.FORMAT_CORRUPT,
        }
        for bad, status in hostile.items():
            resp = httpx.post(url, content=bad, headers={"content-type": "text/xml", "authorization": auth})
            assert resp.status_code == 400, resp.text
            answer = mm7_decode.response(mm7_decode.decode(resp.headers["content-type"], resp.content))
            assert answer.fault and answer.kind == "VASPErrorRsp" and answer.status == status
        # a 100 MB attachment is refused at the route's limit
        big = httpx.post(url, content=b"x" * (100 * 1024 * 1024),
                         headers={"content-type": "multipart/related; boundary=b", "authorization": auth})
        assert big.status_code == 413
        # a well-formed report of a MessageID this link never got is refused (2005), and nothing is kept
        unknown = httpx.post(url, content=body, headers={"content-type": ctype, "authorization": auth})
        assert unknown.status_code == 400
        assert mm7_decode.response(mm7_decode.decode(unknown.headers["content-type"], unknown.content)).status == \
            wire.MESSAGE_ID_NOT_FOUND
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200

    async def kept(svc: Services) -> int:
        async with svc.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(early_receipts)) or 0)

    assert run_with_services(env, kept) == 0  # a report taken would wait here for its submit


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_during_a_burst_of_mm7_reports_loses_none_and_applies_none_twice(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Every number falls back to a digital message; the server is killed (SIGKILL) while the MMSC's delivery
    reports stream in. The MMSC sends again what was not acknowledged; the journal holds what was: after the
    restart every message is delivered, with exactly one delivered event."""
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_CARD_SHARE="0")
    total = 400
    server_port, smsc_port, mmsc_port = free_port(), free_port(), free_port()
    acked, submitted = tmp_path / "acked.jsonl", tmp_path / "submitted.jsonl"
    args = ("--smsc", f"smpp://cardsms:pw@127.0.0.1:{smsc_port}", "--digital", mm7_url(mmsc_port))
    with simulator("smsc", env, "--port", str(smsc_port)), \
            simulator("mmsc", env, "--port", str(mmsc_port), "--report-url",
                      f"http://127.0.0.1:{server_port}/mm7/mm7-1", "--report-user", VASP, "--report-secret",
                      SECRET, "--latency-ms", "3000", "--report-log", str(acked), "--log", str(submitted)):
        with running_server(env, backend, args, port=server_port) as server:
            tenant = new_tenant(server)
            c = tenant.client()
            sign = approved_sign(c, "断电测试")
            code = digital_template(c, [(TEXT, "正文", "txt")])
            numbers = tmp_path / "numbers.txt"
            numbers.write_text("".join(f"{13600000000 + i}\n" for i in range(total)))
            cli(env, "task", "create", "--account", tenant.name, "--name", "kill", "--sign", sign,
                "--template", "PUB_SERVICE_NOTICE", "--fallback", "DIGITALSMS", "--fallback-template", code,
                "--file", str(numbers))
            # every message has reached the MMSC (the reports come 3 s after each): then kill in their burst
            eventually(lambda: submitted.exists() and sum(1 for _ in submitted.open()) >= total, timeout=120)
            eventually(lambda: acked.exists() and sum(1 for _ in acked.open()) >= total // 5, timeout=120,
                       interval=0.01)
            server.proc.kill()
            server.proc.wait()
        at_kill = sum(1 for _ in acked.open())
        assert at_kill < total, "every report was in before the kill: the test proves nothing"
        with running_server(env, backend, args, port=server_port) as again:
            try:
                eventually(lambda: sum(1 for _ in acked.open()) >= total, timeout=180, interval=0.5)
            except AssertionError:
                raise AssertionError((Path(env["CARDSMS_DATA_DIR"]) / f"serve-{again.port}.log").read_text()[-3000:]
                                     ) from None

            async def delivered(svc: Services) -> tuple[int, int, list[int]]:
                async with svc.read() as conn:
                    done = await conn.scalar(select(func.count()).select_from(messages).where(
                        messages.c.channel == "digital", messages.c.state == "delivered"))
                    counts = (await conn.execute(select(message_events.c.message_id, func.count()).where(
                        message_events.c.kind == "delivered").group_by(message_events.c.message_id))).all()
                return int(done or 0), len(counts), sorted({n for _, n in counts})

            eventually(lambda: run_with_services(env, delivered)[0] == total, timeout=60)
            done, with_event, per_message = run_with_services(env, delivered)
    assert (done, with_event, per_message) == (total, total, [1]), (done, with_event, per_message)
    print(f"kill -9 during MM7 reports: {at_kill} of {total} acknowledged before the kill; all delivered once")


@pytest.mark.parametrize("backend", BACKENDS)
def test_digital_links_fail_over_slow_down_when_throttled_and_speak_tls(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path, tls_files: dict[str, Path]) -> None:
    """The first link's MMSC cannot be reached: the second takes every message. That one is MM7 over HTTPS with
    a client certificate, and answers 30% of the submits 4006 (service unavailable): nothing fails for it."""
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_CARD_SHARE="0")
    server_port, smsc_port, mmsc_port, dead_port = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "mmsc.jsonl"
    tls = (f"mm7s://{VASP}:{SECRET}@127.0.0.1:{mmsc_port}/mm7?service_code=10690123&ca={tls_files['ca']}"
           f"&cert={tls_files['client_cert']}&key={tls_files['client_key']}")
    args = ("--smsc", f"smpp://cardsms:pw@127.0.0.1:{smsc_port}", "--digital", mm7_url(dead_port), "--digital", tls)
    with simulator("smsc", env, "--port", str(smsc_port)), \
            simulator("mmsc", env, "--port", str(mmsc_port), "--vasp-id", VASP, "--secret", SECRET,
                      "--report-url", f"http://127.0.0.1:{server_port}/mm7/mm7-2", "--report-user", VASP,
                      "--report-secret", SECRET, "--latency-ms", "20", "--throttle-share", "30",
                      "--tls-cert", str(tls_files["cert"]), "--tls-key", str(tls_files["key"]),
                      "--tls-client-ca", str(tls_files["ca"]), "--log", str(log)), \
            running_server(env, backend, args, port=server_port) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "链路切换")
        code = digital_template(c, [(TEXT, "正文", "txt")])
        phones = [str(13500000000 + i) for i in range(40)]
        numbers = tmp_path / "numbers.txt"
        numbers.write_text("\n".join(phones) + "\n")
        done = cli(env, "task", "create", "--account", tenant.name, "--name", "failover", "--sign", sign,
                   "--template", "PUB_SERVICE_NOTICE", "--fallback", "DIGITALSMS", "--fallback-template", code,
                   "--file", str(numbers), "--wait")
        assert "completed" in done.stdout, done.stdout

        async def states(svc: Services) -> list[tuple[str, str, str]]:
            async with svc.read() as conn:
                return [(r.state, r.connector, r.error_code) for r in await conn.execute(
                    select(messages.c.state, messages.c.connector, messages.c.error_code).where(
                        messages.c.channel == "digital"))]

        eventually(lambda: {s for s, _, _ in run_with_services(env, states)} == {"delivered"}, timeout=60)
        assert {(s, link) for s, link, _ in run_with_services(env, states)} == {("delivered", "mm7-2")}
        accepted = sorted(r.removeprefix("86") for line in log.read_text().splitlines()
                          for r in json.loads(line)["recipients"])
        assert accepted == sorted(phones)  # each once: a 4006 is not a submit
        metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        assert 'cardsms_connector_bound{connector="mm7-2",protocol="mm7s"} 1.0' in metrics
        assert 'cardsms_connector_bound{connector="mm7-1",protocol="mm7"} 0.0' in metrics


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_embedded_default_speaks_mm7_to_its_own_mmsc(backend: str, request: pytest.FixtureRequest) -> None:
    """`cardsms serve` with no SMSC: the digital fallback goes over MM7 to the simulated MMSC inside the server,
    whose reports come back to the server's own /mm7/sim-mm7."""
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_CARD_SHARE="0")
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "内置彩信")
        code = digital_template(c, [(TEXT, "正文", "txt")])
        phones = [str(13400000000 + i) for i in range(5)]
        sent = c.send_card_sms(m.SendCardSmsRequest(
            card_template_code="PUB_SERVICE_NOTICE", sign_name=sign, fallback_type="DIGITALSMS",
            digital_template_code=code, card_objects=[m.SendCardSmsRequestCardObjects(mobile=p) for p in phones])).body
        assert sent.code == "OK", sent.to_map()
        eventually(lambda: all(any(r.receive_type == "DIGITAL_SMS" and r.send_status == 3
                                   for r in card_records(c, phone_number=p)) for p in phones), timeout=60)
        metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        assert 'cardsms_connector_bound{connector="sim-mm7",protocol="mm7"} 1.0' in metrics

    async def links(svc: Services) -> set[str]:
        async with svc.read() as conn:
            return {r.connector for r in await conn.execute(select(messages.c.connector).where(
                messages.c.channel == "digital"))}

    assert run_with_services(env, links) == {"sim-mm7"}


@pytest.mark.parametrize("layout", ["sqlite-serve", "postgresql-api-and-worker"])
def test_reports_that_overtake_their_submit_answer_are_taken_on_the_mmscs_next_try(
        layout: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The MMSC posts each delivery report before its SubmitRsp goes out (--report-first): the report names a
    MessageID the server has not stored yet. It is answered 3000 (not 2005: a digital submit is on its way),
    the MMSC sends it again, and it is taken. In the scale-out layout the worker submits and `cardsms api`
    takes the reports and the replies, storing each before it answers."""
    from tests.integration.test_scale_out import _healthy, process, wait_for

    backend = layout.split("-")[0]
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_CARD_SHARE="0",
                  CARDSMS_WORKER_LEASE_SECONDS="3")
    total = 40
    server_port, smsc_port, mmsc_port = free_port(), free_port(), free_port()
    acked = tmp_path / "acked.jsonl"
    smsc, digital = ("--smsc", f"smpp://cardsms:pw@127.0.0.1:{smsc_port}"), ("--digital", mm7_url(mmsc_port))
    with contextlib.ExitStack() as stack:
        stack.enter_context(simulator("smsc", env, "--port", str(smsc_port)))
        stack.enter_context(simulator(
            "mmsc", env, "--port", str(mmsc_port), "--report-url", f"http://127.0.0.1:{server_port}/mm7/mm7-1",
            "--report-user", VASP, "--report-secret", SECRET, "--latency-ms", "0", "--report-first",
            "--reply-text", "R", "--report-log", str(acked)))
        if layout == "sqlite-serve":
            server = stack.enter_context(running_server(env, backend, (*smsc, *digital), port=server_port))
        else:
            api = stack.enter_context(process(["api", "--port", str(server_port), *digital], env,
                                              tmp_path / "api.log"))
            stack.enter_context(process(["worker", *smsc, *digital], env, tmp_path / "worker.log"))
            wait_for(lambda: _healthy(server_port), 60, "the api")
            server = Server(server_port, env, api, backend)
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "抢先回执")
        code = digital_template(c, [(TEXT, "正文", "txt")])
        numbers = tmp_path / "numbers.txt"
        numbers.write_text("".join(f"{13500000000 + i}\n" for i in range(total)))
        cli(env, "task", "create", "--account", tenant.name, "--name", "first", "--sign", sign,
            "--template", "PUB_SERVICE_NOTICE", "--fallback", "DIGITALSMS", "--fallback-template", code,
            "--file", str(numbers))

        async def digital_states(svc: Services) -> dict[str, int]:
            async with svc.read() as conn:
                return dict((await conn.execute(select(messages.c.state, func.count()).where(
                    messages.c.channel == "digital").group_by(messages.c.state))).all())

        try:
            eventually(lambda: run_with_services(env, digital_states) == {"delivered": total}, timeout=120)
        except AssertionError:
            raise AssertionError(f"{run_with_services(env, digital_states)}") from None
        # the server stores a report before it answers; the MMSC logs the answer after it reads it
        eventually(lambda: len(acked.read_text().splitlines()) >= total, timeout=30)
        reports = [json.loads(line) for line in acked.read_text().splitlines()]
        assert sorted(r["recipient"] for r in reports) == sorted(f"86{13500000000 + i}" for i in range(total))
        assert min(r["attempts"] for r in reports) >= 2  # each overtook its answer: the first try was refused

        # each recipient replied R (a DeliverReq): opted out
        promo = text_template(c, "双十二大促，全场五折，详情见店铺首页。", template_type=2, name="promo")

        def opted_out() -> bool:
            again = c.send_sms(m.SendSmsRequest(phone_numbers="13500000000", sign_name=sign,
                                                template_code=promo)).body
            assert again.code == "OK", again.to_map()
            return "opted out" in str(again.message)

        eventually(opted_out, timeout=60)
