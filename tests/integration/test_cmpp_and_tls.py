"""The carriers' protocol end to end: the README's card task over CMPP 2.0 and 3.0 to the simulated ISMG in
its own process (fallback, receipts, render receipts and opt-out by reply, as over SMPP), CMPP clients we did
not write against the simulated ISMG, the embedded default speaking CMPP, and SMPP over TLS."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m

from cardsms.delivery import cmpp_pdu as cp
from tests.conftest import BACKENDS, env_for, new_tenant
from tests.harness import cardsms_env, cli, free_port, running_server, stop_process
from tests.integration.helpers import approved_sign, eventually, legacy, text_template
from tests.integration.test_sending import TODAY
from tests.integration.test_webhooks_and_replies import Receiver


@contextmanager
def simulator(kind: str, env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """`cardsms simulator smsc|ismg|mmsc ARGS` in its own process, until it says it is listening. Its log goes
    to a file: a pipe nobody reads would fill up and stop the simulator in the middle of a test."""
    errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", kind, *args], env=env,
                            stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            errors.seek(0)
            raise AssertionError(f"the simulated {kind} did not start: {line}{errors.read()[-3000:]}")
        yield proc
    finally:
        stop_process(proc)  # type: ignore[arg-type]
        errors.close()


def logged_texts(log: Path) -> dict[str, str]:
    """The complete text each number got, from the ISMG's log of accepted CMPP_SUBMIT (parts joined)."""
    parts: dict[str, dict[int, str]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        content = bytes.fromhex(entry["content"])
        seq = 1
        if entry["udhi"]:
            seq = content[5]
            content = content[1 + content[0]:]
        parts.setdefault(entry["terminal"], {})[seq] = cp.decode_text(content, entry["fmt"])
    return {number: "".join(p[i] for i in sorted(p)) for number, p in parts.items()}


@pytest.mark.parametrize("version", ["2.0", "3.0"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_readme_card_task_over_cmpp(backend: str, version: str, request: pytest.FixtureRequest,
                                        tmp_path: Path) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_OPEN_SHARE="100",
                  CARDSMS_SIM_REPLY_SHARE="100", CARDSMS_WEBHOOK_RETRY_BASE_SECONDS="0.2")
    server_port, ismg_port = free_port(), free_port()
    secret = tmp_path / "cmpp.secret"
    secret.write_text("s3cret-ismg\n")
    log = tmp_path / "ismg.jsonl"
    url = (f"cmpp://901234@127.0.0.1:{ismg_port}?version={version}&secret_file={secret}&src_id=1069012345"
           f"&service_id=MCARD")
    receiver = Receiver(failures=0)
    with simulator("ismg", env, "--port", str(ismg_port), "--sp-id", "901234", "--secret", "s3cret-ismg",
                   "--latency-ms", "20", "--phones", f"http://127.0.0.1:{server_port}/s", "--log", str(log)), \
            running_server(env, backend, ("--smsc", url), port=server_port) as server:
        tenant = new_tenant(server)
        for kind in ("SmsReport", "SmsUp", "MnsCardVender"):
            cli(env, "webhook", "set", "--account", tenant.name, "--type", kind, "--url", receiver.url)
        c = tenant.client()
        sign = approved_sign(c, "卡片互通")
        promo = text_template(c, "双十二大促，全场五折，详情见店铺首页。", template_type=2, name="promo")
        phones = [str(13900000000 + int(time.time() * 10) % 10_000_000 * 10 + i) for i in range(30)]
        numbers = tmp_path / "numbers.txt"
        numbers.write_text("\n".join(phones) + "\n")
        done = cli(env, "task", "create", "--account", tenant.name, "--name", f"cmpp {version}", "--sign", sign,
                   "--template", "PUB_SERVICE_NOTICE", "--fallback", "SMS", "--fallback-template", promo,
                   "--file", str(numbers), "--wait")
        assert "completed" in done.stdout, done.stdout

        # every number gets its delivery report and replies R
        eventually(lambda: {r["phone_number"] for r in receiver.reports("SmsReport")} == set(phones), timeout=60)
        eventually(lambda: {r["phone_number"] for r in receiver.reports("SmsUp")} == set(phones), timeout=60)
        assert all(r["success"] for r in receiver.reports("SmsReport"))
        assert all(r["content"] == "R" and r["sign_name"] == sign for r in receiver.reports("SmsUp"))

        # the card phones got the card's link, the others the fallback text, in CMPP's encodings; every phone
        # that got a card rendered it (its render receipt)
        texts = logged_texts(log)
        assert sorted(texts) == sorted(phones)  # every number, as 11 digits, once
        card_phones = {p for p in phones if f"127.0.0.1:{server_port}/s/" in texts[p]}
        fallback = set(phones) - card_phones
        assert card_phones and fallback, "the handset population should give both kinds"
        assert all(texts[p].startswith(f"【{sign}】") for p in card_phones)
        assert all("双十二大促" in texts[p] and "/s/" not in texts[p] for p in fallback)
        eventually(lambda: {r["mobile"] for r in receiver.reports("MnsCardVender")} == card_phones, timeout=60)
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        assert {e["version"] for e in entries} == {"0x20" if version == "2.0" else "0x30"}
        assert {e["service_id"] for e in entries} == {"MCARD"}

        # the replies opted the numbers out: a promotional send skips them
        again = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones[:5]), sign_name=sign,
                                            template_code=promo)).body
        assert again.code == "OK" and "opted out" in again.message
        rows = legacy(tenant, "QuerySendDetails", PhoneNumber=phones[0], SendDate=TODAY(), PageSize="10",
                      CurrentPage="1")["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
        assert any(r["SendStatus"] == 3 for r in rows)  # the task's message, delivered per its CMPP report
        status = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        assert f'cardsms_connector_bound{{connector="smsc1",protocol="cmpp {version}"}} 1.0' in status
    receiver.http.shutdown()


INTEROP_CLIENT = textwrap.dedent('''
    """A CMPP client we did not write, in its own process: pycmpp (2.0: connect, submit, reports through its
    receive loop) or cmppy (3.0: connect, submit, terminate; it reads no reports, so it asks for none). Prints
    what the gateway answered as JSON."""
    import json, logging, struct, sys, threading, time

    kind, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out = {"submit_results": [], "msg_ids": [], "reports": {}}
    if kind == "cmppy":
        import cmppy
        from cmppy.response import SubmitRes
        for i in range(count):
            client = cmppy.Cmppy("127.0.0.1", port, "901234", "s3cret")
            res = client.request(cmppy.SubmitReq("901234", "互通测试 %d" % i, src_id="1069012345",
                                                 dest_terminal_id=["1380013%04d" % i], registered_delivery=0,
                                                 service_id="MCARD"))
            assert isinstance(res, SubmitRes), res
            out["submit_results"].append(res.result)
            out["msg_ids"].append(res.msg_id)
        print(json.dumps(out))
        sys.exit(0)

    from pycmpp import cmpp, handlers
    from pycmpp.cmpp_defines import CMPP_DELIVER_REQ, CMPP_SUBMIT_RESP
    from pycmpp.response import ConnectResponseInstance, SubmitResponseInstance
    from pycmpp.utils import Pack

    connected = threading.Event()

    class Connected(handlers.CmppConnectRespHandler):
        def __call__(self):
            resp = ConnectResponseInstance()
            resp.resolve(self.message)
            out["connect_status"] = resp.status
            connected.set()

    class Submitted(handlers.BaseHandler):
        command_id = CMPP_SUBMIT_RESP

        def __call__(self):
            resp = SubmitResponseInstance()
            resp.resolve(self.message)
            out["submit_results"].append(resp.status)
            out["msg_ids"].append(resp.msg_id)

    class Delivered(handlers.BaseHandler):
        """pycmpp reads every packet in its receive loop but has no DELIVER handler: this one reads the status
        report's Msg_Id and Stat (CMPP 2.0 layout) and acknowledges it."""
        command_id = CMPP_DELIVER_REQ

        def __call__(self):
            body = self.message[12:]
            seq = struct.unpack("!L", self.message[8:12])[0]
            content = body[8 + 21 + 10 + 3 + 21 + 2:]
            msg_id = struct.unpack("!Q", content[:8])[0]
            out["reports"][str(msg_id)] = content[8:15].rstrip(b"\\x00").decode()
            answer = body[:8] + Pack.get_unsigned_char_data(0)
            self.cmpp.send(Pack.get_unsigned_long_data(12 + len(answer)) + Pack.get_unsigned_long_data(0x80000005)
                           + Pack.get_unsigned_long_data(seq) + answer)

    client = cmpp.Cmpp("127.0.0.1", port, "901234", "s3cret", "1069012345", delivery=1, client_heartbeat=False)
    client.handlers.update({c.command_id: c for c in (Connected, Submitted, Delivered)})
    client.connect()
    client.auth()
    threading.Thread(target=client.receive, daemon=True).start()
    assert connected.wait(10), "no CMPP_CONNECT_RESP"
    for i in range(count):
        client.submit("互通测试 %d" % i, ["1380013%04d" % i])
    deadline = time.time() + 30
    while len(out["reports"]) < count and time.time() < deadline:
        time.sleep(0.05)
    print(json.dumps(out))
''')


@pytest.mark.parametrize("client", ["pycmpp", "cmppy"])
def test_a_foreign_cmpp_client_connects_submits_and_gets_reports_from_the_simulated_ismg(
        client: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "ismg.jsonl"
    script = tmp_path / "client.py"
    script.write_text(INTEROP_CLIENT)
    with simulator("ismg", cardsms_env(tmp_path, ""), "--port", str(port), "--sp-id", "901234", "--secret",
                   "s3cret", "--latency-ms", "5", "--fail-share", "30", "--log", str(log)):
        out = subprocess.run([sys.executable, str(script), client, str(port), "20"], capture_output=True, text=True,
                             timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["submit_results"] == [0] * 20 and len(set(result["msg_ids"])) == 20
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [int(e["id"]) for e in entries] == result["msg_ids"]
    assert [cp.decode_text(bytes.fromhex(e["content"]), e["fmt"]) for e in entries] == [
        f"互通测试 {i}" for i in range(20)]
    assert {e["version"] for e in entries} == {"0x20" if client == "pycmpp" else "0x30"}
    if client == "pycmpp":  # its receive loop got a report for every message, the fail share among them
        assert result["connect_status"] == 0
        assert set(result["reports"]) == {str(i) for i in result["msg_ids"]}
        stats = list(result["reports"].values())
        assert set(stats) == {"DELIVRD", "UNDELIV"}


def test_serve_speaks_cmpp_to_its_embedded_ismg(request: pytest.FixtureRequest) -> None:
    env = env_for("sqlite", request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_PROTOCOL="cmpp2")
    with running_server(env, "sqlite") as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "内置网关")
        code = text_template(c, "验证码${code}，五分钟内有效。", template_type=0, name="code")
        sent = c.send_sms(m.SendSmsRequest(phone_numbers="13700001111", sign_name=sign, template_code=code,
                                           template_param='{"code":"2468"}')).body
        assert sent.code == "OK", sent.to_map()

        def delivered() -> bool:
            rows = legacy(tenant, "QuerySendDetails", PhoneNumber="13700001111", SendDate=TODAY(), PageSize="10",
                          CurrentPage="1", BizId=sent.biz_id)["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
            return bool(rows) and rows[0]["SendStatus"] == 3

        eventually(delivered, timeout=30)
        health = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).json()
        assert "cmpp 2.0" in json.dumps(health, ensure_ascii=False), health


@pytest.mark.parametrize("backend", BACKENDS)
def test_smpp_over_tls_to_a_tls_smsc_with_a_client_certificate(backend: str, tls_files: dict[str, Path],
                                                              request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    port = free_port()
    log = tmp_path / "smsc.jsonl"
    f = tls_files
    url = f"smpps://cardsms:pw@127.0.0.1:{port}?ca={f['ca']}&cert={f['client_cert']}&key={f['client_key']}"
    untrusted = f"smpps://cardsms:pw@127.0.0.1:{port}"  # the system CAs do not know our test CA
    with simulator("smsc", env, "--port", str(port), "--tls-cert", str(f["cert"]), "--tls-key", str(f["key"]),
                   "--tls-client-ca", str(f["ca"]), "--latency-ms", "5", "--log", str(log)), \
            running_server(env, backend, ("--smsc", url, "--smsc", untrusted)) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "加密通道")
        code = text_template(c, "您的订单${no}已发货。", name="tls")
        phones = [str(13600000000 + i) for i in range(10)]
        sent = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones), sign_name=sign, template_code=code,
                                           template_param='{"no":"A-1"}')).body
        assert sent.code == "OK", sent.to_map()

        def delivered() -> bool:
            rows = [legacy(tenant, "QuerySendDetails", PhoneNumber=p, SendDate=TODAY(), PageSize="10",
                           CurrentPage="1", BizId=sent.biz_id)["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
                    for p in phones]
            return all(r and r[0]["SendStatus"] == 3 for r in rows)

        eventually(delivered, timeout=30)
        health = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).json()
        connectors = {c["name"]: c for c in health["delivery"]["connectors"]}
        assert connectors["smsc1"]["bound"] and connectors["smsc1"]["protocol"] == "smpps"
        assert not connectors["smsc2"]["bound"] and "CERTIFICATE_VERIFY_FAILED" in connectors["smsc2"]["last_error"]
    assert sorted(json.loads(line)["dest"] for line in log.read_text().splitlines()) == ["86" + p for p in phones]


def test_connector_urls_refuse_bad_options_naming_them(tmp_path: Path) -> None:
    env = cardsms_env(tmp_path, "")
    for url, needle in (
        ("cmpp://1234567@127.0.0.1:7890", "SPID"),
        ("cmpp://901234:s@127.0.0.1:7890?version=2.5", "version must be 2.0 or 3.0"),
        ("cmpp://901234:s@127.0.0.1:7890?encoding=big5", "encoding must be ucs2 or gbk"),
        ("cmpp://901234:s@127.0.0.1:7890?src_id=10690x", "src_id must be digits"),
        ("cmpp://901234:s@127.0.0.1:7890?secret_file=/nonexistent/secret", "secret_file"),
        ("cmpp://901234:s@127.0.0.1:7890?ca=/tmp/x", "unknown URL options ['ca']"),
        ("smpps://esme:pw@127.0.0.1:2775?cert=/tmp/c.pem", "needs both cert= and key="),
        ("smpps://esme:pw@127.0.0.1:2775?ca=/nonexistent.pem", "ca=/nonexistent.pem is not a readable file"),
        ("smpps://esme:pw@127.0.0.1:2775?verify=maybe", "verify must be true or false"),
        ("sms://esme:pw@127.0.0.1:2775", "smpp://, smpps:// or cmpp://"),
    ):
        out = cli(env, "worker", "--smsc", url, check=False)
        said = " ".join((out.stderr + out.stdout).split())  # the console wraps long lines
        assert out.returncode == 2 and needle in said, (url, said[-800:])
