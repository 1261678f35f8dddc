"""Alibaba's official Node.js SDK (@alicloud/dysmsapi20170525 4.6.0, installed by `make test` from the npm
registry into tests/node) drives the real server: current signature and template operations, a text and a
card send, the details read back. Both databases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from tests.conftest import Tenant

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def test_the_node_sdk_creates_a_signature_and_template_and_sends_text_and_card(tenant: Tenant) -> None:
    node = shutil.which("node")
    assert node, "node is not installed: `make test` installs it"
    assert (NODE_DIR / "node_modules" / "@alicloud" / "dysmsapi20170525").is_dir(), \
        "the Node.js SDK is not installed: run `make test` (npm ci in tests/node)"
    base = uuid.uuid4().int % 10_000_000
    phone, card_phone = f"136{base:08d}", f"135{base:08d}"
    env = {**os.environ, "CARDSMS_ENDPOINT": tenant.server.endpoint, "KEY_ID": tenant.key_id,
           "KEY_SECRET": tenant.secret, "PHONE": phone, "CARD_PHONE": card_phone,
           "BIG_BASE": str(13_400_000_000 + base % 5_000_000)}
    run = subprocess.run([node, "flow.js"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["qualification"]["success"] is True and out["sign"]["code"] == "OK", out
    assert out["signStatus"] == 1 and out["template"]["code"] == "OK" and out["templateStatus"] == "1", out
    assert out["sms"]["code"] == "OK" and out["card"]["code"] == "OK" and out["card"]["success"] is True, out
    assert out["details"] and out["details"][0]["content"] == "【Node签名】订单A-1已发货", out
    assert out["details"][0]["sendStatus"] == 3, out
    assert out["cardDetails"]["code"] == "OK" and out["cardDetails"]["records"] == 1, out
    # the documented maximums through this SDK too: 1,000 CardObjects, 10,000 link numbers, 1,000 PhoneNumbers
    assert out["bigCard"] == {"code": "OK", "success": True, "numbers": 1000}, out
    assert out["bigLinks"]["success"] is True and out["bigLinks"]["links"] == out["bigLinks"]["phones"] > 0, out
    assert out["bigSms"]["code"] == "OK", out
