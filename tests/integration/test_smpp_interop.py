"""Interop: cardsms as the ESME against an SMSC it did not write (Debian's Net::SMPP, Perl), and cardsms's
simulated SMSC against an ESME it did not write (smpp34, Rust)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from alibabacloud_dysmsapi20170525 import models as m

from cardsms.domain import sms
from tests.conftest import BACKENDS, env_for, new_tenant
from tests.harness import cardsms_env, free_port, running_server
from tests.integration.helpers import approved_sign, eventually, text_template

PERL_SMSC = Path(__file__).parent.parent / "interop" / "net_smpp_smsc.pl"
SMPP34_ESME = Path(__file__).parent.parent / "interop" / "smpp34_esme.py"


def perl_has_net_smpp() -> bool:
    return shutil.which("perl") is not None and subprocess.run(
        ["perl", "-MNet::SMPP", "-e", "1"], capture_output=True).returncode == 0


def reassemble(log: Path) -> dict[str, list[str]]:
    """Complete messages per destination, joining concatenated parts by their UDH reference."""
    parts: dict[tuple[str, int], dict[int, str]] = defaultdict(dict)
    totals: dict[tuple[str, int], int] = {}
    out: dict[str, list[str]] = defaultdict(list)
    for line in log.read_text().splitlines():
        pdu = json.loads(line)
        payload = bytes.fromhex(pdu["sm"])
        if pdu["esm"] & 0x40:
            concat, body = sms.split_udh(payload)
            assert concat is not None, pdu
            ref, total, seq = concat
            parts[(pdu["dest"], ref)][seq] = sms.decode_payload(body, pdu["dc"])
            totals[(pdu["dest"], ref)] = total
        else:
            out[pdu["dest"]].append(sms.decode_payload(payload, pdu["dc"]))
    for key, got in parts.items():
        assert len(got) == totals[key], f"{key}: {len(got)} of {totals[key]} parts arrived"
        out[key[0]].append("".join(got[i] for i in sorted(got)))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_messages_reach_a_net_smpp_smsc_intact_and_receipts_match(backend: str,
                                                                   request: pytest.FixtureRequest) -> None:
    assert perl_has_net_smpp(), "libnet-smpp-perl is required (make test installs it)"
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    port = free_port()
    log = Path(env["CARDSMS_DATA_DIR"]) / "perl-smsc.jsonl"
    smsc = subprocess.Popen(["perl", str(PERL_SMSC), str(port), str(log)], stdout=subprocess.PIPE, text=True)
    try:
        assert smsc.stdout is not None and "listening" in smsc.stdout.readline()
        with running_server(env, backend, ("--smsc", f"smpp://cardsms:secret@127.0.0.1:{port}")) as server:
            tenant = new_tenant(server)
            c = tenant.client()
            sign = approved_sign(c, "互通测试")
            short = text_template(c, "验证码${code}，五分钟内有效。", template_type=0, name="code")
            long = text_template(c, "尊敬的${name}：您的订单已发货，" + "物流信息请在App内查看，感谢支持。" * 5,
                                 name="long")
            ascii_long = text_template(c, "Dear ${name}, " + "your parcel is on its way and will arrive soon. " * 5,
                                       name="ascii")
            base = 13700000000 + int(time.time()) % 1_000_000 * 10
            phones = [str(base + i) for i in range(30)]
            sends = [(phones[:10], short, {"code": "123456"}), (phones[10:20], long, {"name": "李雷"}),
                     (phones[20:], ascii_long, {"name": "Han"})]
            expected: dict[str, str] = {}
            for group, code, params in sends:
                body = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(group), sign_name=sign, template_code=code,
                                                   template_param=json.dumps(params, ensure_ascii=False))).body
                assert body.code == "OK", body.to_map()
                content = c.query_sms_template(m.QuerySmsTemplateRequest(template_code=code)).body.template_content
                for p in group:
                    text = "【互通测试】" + content
                    for k, v in params.items():
                        text = text.replace("${" + k + "}", v)
                    expected["86" + p] = text

            def all_delivered() -> bool:
                stats = c.query_send_statistics(m.QuerySendStatisticsRequest(
                    is_globe=1, start_date=time.strftime("%Y%m%d", time.gmtime(time.time() + 8 * 3600)),
                    end_date=time.strftime("%Y%m%d", time.gmtime(time.time() + 8 * 3600)),
                    page_index=1, page_size=10)).body
                rows = stats.data.target_list or []
                return bool(rows) and rows[0].responded_success_count == rows[0].total_count

            eventually(all_delivered, timeout=60)
        received = reassemble(log)
        assert sorted(received) == sorted(expected)  # every number, no stranger
        assert all(len(texts) == 1 for texts in received.values()), "a message arrived twice"
        for dest, texts in received.items():
            assert texts[0] == expected[dest]
        long_one = received["86" + phones[10]][0]
        assert "李雷" in long_one and sms.count_segments(long_one) > 1
        assert sms.count_segments(received["86" + phones[20]][0]) > 1  # GSM-7 concatenation too
    finally:
        smsc.kill()
        smsc.wait()


def test_an_smpp34_esme_gets_answers_and_receipts_from_the_simulated_smsc(tmp_path: Path) -> None:
    """The other direction: cardsms's SMSC (the simulator, own process) against an ESME it did not write."""
    port = free_port()
    log = tmp_path / "smsc.jsonl"
    smsc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", "smsc", "--port", str(port),
                             "--latency-ms", "5", "--fail-share", "20", "--log", str(log)],
                            env=cardsms_env(tmp_path, ""), stdout=subprocess.PIPE, text=True)
    try:
        assert smsc.stdout is not None and "listening" in smsc.stdout.readline()
        out = subprocess.run([sys.executable, str(SMPP34_ESME), str(port), "40"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout)
        assert len(set(result["ids"])) == 40 and set(result["receipts"]) == set(result["ids"])
        stats = Counter(result["receipts"].values())
        assert stats["DELIVRD"] + stats["UNDELIV"] == 40 and 0 < stats["UNDELIV"] < 40  # the fail share shows
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        assert [entry["id"] for entry in logged] == result["ids"]
        assert bytes.fromhex(logged[3]["sm"]) == b"interop message 3" and logged[3]["dest"] == "8613700000003"
    finally:
        smsc.kill()
        smsc.wait()
