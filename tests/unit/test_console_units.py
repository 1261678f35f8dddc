"""Console building blocks: sessions, login limits, the designer's form model, schedule rules, and
that every string the console shows has a Chinese translation."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cardsms.console.auth import LoginLimiter, Session, SessionCodec
from cardsms.console.designer import Design
from cardsms.console.i18n import ZH
from cardsms.domain.card import parse_card_template
from cardsms.domain.schedule import CHINA, can_revoke, check_schedule, check_task_name

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "cardsms" / "console" / "templates"


def session() -> Session:
    return Session(1, 2, "shop", "ops", "operator", "csrf-token", int(time.time()) + 60)


def test_session_cookie_is_signed_and_expires() -> None:
    codec = SessionCodec("secret-one")
    cookie = codec.encode(session())
    assert codec.decode(cookie) == session()
    assert SessionCodec("secret-two").decode(cookie) is None  # another server's key
    payload, mac = cookie.rsplit(".", 1)
    tampered = payload.replace(payload[5], "A" if payload[5] != "A" else "B") + "." + mac
    assert codec.decode(tampered) is None
    old = Session(1, 2, "shop", "ops", "admin", "t", int(time.time()) - 1)
    assert codec.decode(codec.encode(old)) is None
    assert codec.decode("garbage") is None and codec.decode(None) is None


def test_roles_rank() -> None:
    assert session().may("viewer") and session().may("operator") and not session().may("admin")


def test_login_limiter_blocks_after_five_failures() -> None:
    limiter = LoginLimiter(limit=5, window=60)
    for _ in range(5):
        assert not limiter.blocked("ip:1", "user:a")
        limiter.failed("ip:1", "user:a")
    assert limiter.blocked("ip:1") and limiter.blocked("user:a") and not limiter.blocked("ip:2")
    limiter.succeeded("ip:1", "user:a")
    assert not limiter.blocked("ip:1", "user:a")


def test_designer_form_round_trip_and_edits() -> None:
    d = Design.starter()
    form = {"name": "Sale", "card_type": "5", "sign": "Shop", "scene": "sale", "purpose": "1", "pages": "1",
            "p0_n": "4", "p0_e0_type": "IMAGE", "p0_e0_src": "https://img.example/a.png",
            "p0_e1_type": "TEXT", "p0_e1_content": "Hi ${name}", "p0_e1_title": "1",
            "p0_e2_type": "TEXT", "p0_e2_content": "Body, line two",
            "p0_e3_type": "BUTTON", "p0_e3_content": "Go", "p0_e3_action": "OPEN_APP", "p0_e3_target": "shop://x",
            "p0_e3_package": "com.shop.app, com.shop.lite", "p0_e3_floor": "https://shop.example"}
    d = Design.from_form(form)
    wire = d.to_template()
    assert d.params() == ["name"] and wire["extendInfo"]["params"][0]["name"] == "${name}"
    button = wire["templateContent"]["pages"][0]["tmpCards"][3]
    assert button["action"]["packageName"] == ["com.shop.app", "com.shop.lite"]
    card = parse_card_template("Sale", wire, {})  # what the designer builds passes the API's own validation
    assert card.card_type == 5
    d.apply("add:0:TEXT")
    d.apply("up:0:1")
    d.apply("del:0:9")  # out of range: ignored
    d.apply("delpage:0")  # the last page stays
    d.apply("addpage")
    assert [e.type for e in d.pages[0]] == ["TEXT", "IMAGE", "TEXT", "BUTTON", "TEXT"] and len(d.pages) == 2
    bad = Design.from_form({"pages": "999", "p0_n": "x", "card_type": "-3"})
    assert len(bad.pages) == 10 and bad.pages[0] == []


def test_schedule_window_and_revoke_limit() -> None:
    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    at = lambda h, m=0: datetime(2026, 11, 27, h, m, tzinfo=CHINA)  # noqa: E731
    assert check_schedule(at(8), now) is None and check_schedule(at(21, 59), now) is None
    assert "22:00 is outside" in (check_schedule(at(22), now) or "")
    assert "07:59" in (check_schedule(at(7, 59), now) or "")
    assert "22:01" in (check_schedule(at(22, 1), now) or "")
    assert "future" in (check_schedule(now - timedelta(minutes=1), now) or "")
    assert can_revoke(now + timedelta(minutes=5), now) and not can_revoke(now + timedelta(minutes=4), now)
    assert not can_revoke(None, now)
    assert check_task_name("a" * 30) is None and "30" in (check_task_name("a" * 31) or "")
    assert check_task_name("   ") is not None


def test_every_console_string_has_a_chinese_translation() -> None:
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        used |= set(re.findall(r"_\('([^']*)'\)", text)) | set(re.findall(r'_\("([^"]*)"\)', text))
    missing = sorted(s for s in used if s not in ZH)
    assert not missing, missing
    assert len(used) > 150
