"""Public templates: platform-provided card templates, pre-approved by every vendor, that every
account can test-send and use in mass tasks (SPEC.md "Public templates and test send").

They live in the `templates` table under the reserved account id 0 with codes starting `PUB_`;
`templates.get_template` falls back to them for card lookups.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from sqlalchemy import select, update

from cardsms.db.schema import templates
from cardsms.domain.card import parse_card_template
from cardsms.domain.vendors import Vendor
from cardsms.services import review
from cardsms.services.core import Services
from cardsms.services.templates import PUBLIC_ACCOUNT
from cardsms.vendors.gateway import ReviewState

PREFIX = "PUB_"

# (code, name, purpose, colour of the generated cover image, template)
_PRESETS: list[tuple[str, str, str, tuple[int, int, int], dict[str, Any]]] = [
    ("PUB_ORDER_SHIPPED", "订单发货通知", "Order shipped / 物流通知", (37, 99, 235), {
        "cardType": 5, "cardSignName": "Public",
        "extendInfo": {"scene": "order", "purpose": "1", "params": [{"name": "${name}", "type": 1, "example": "李"}]},
        "templateContent": {"pages": [{"tmpCards": [
            {"type": "IMAGE", "srcType": 2, "src": "{base}/console/static/public/PUB_ORDER_SHIPPED.png",
             "positionNumber": 1},
            {"type": "TEXT", "isTextTitle": True, "content": "您的订单已发货", "positionNumber": 2},
            {"type": "TEXT", "isTextTitle": False, "content": "${name}，您好！您购买的商品已发出，点击查看物流进度。",
             "positionNumber": 3},
            {"type": "BUTTON", "content": "查看物流", "actionType": "OPEN_BROWSER",
             "action": {"target": "https://example.com/track", "merchantName": "cardsms"}, "positionNumber": 4},
        ]}]},
    }),
    ("PUB_MEMBER_DAY", "会员日活动", "Promotion / 营销活动", (219, 39, 119), {
        "cardType": 5, "cardSignName": "Public",
        "extendInfo": {"scene": "marketing", "purpose": "1", "params": []},
        "templateContent": {"pages": [{"tmpCards": [
            {"type": "IMAGE", "srcType": 2, "src": "{base}/console/static/public/PUB_MEMBER_DAY.png",
             "positionNumber": 1},
            {"type": "TEXT", "isTextTitle": True, "content": "会员日 全场8折", "positionNumber": 2},
            {"type": "TEXT", "isTextTitle": False, "content": "本周六会员日，凭短信到店享受全场8折优惠。",
             "positionNumber": 3},
            {"type": "BUTTON", "content": "立即查看", "actionType": "OPEN_BROWSER",
             "action": {"target": "https://example.com/member", "merchantName": "cardsms"}, "positionNumber": 4},
            {"type": "BUTTON", "content": "联系客服", "actionType": "DIAL_PHONE",
             "action": {"target": "4000000000", "merchantName": "cardsms"}, "positionNumber": 5},
        ]}]},
    }),
    ("PUB_SERVICE_NOTICE", "服务通知", "Notification / 服务通知", (5, 150, 105), {
        "cardType": 3, "cardSignName": "Public",
        "extendInfo": {"scene": "service", "purpose": "1", "params": []},
        "templateContent": {"pages": [{"tmpCards": [
            {"type": "TEXT", "isTextTitle": True, "content": "系统维护通知", "positionNumber": 1},
            {"type": "TEXT", "isTextTitle": False, "content": "我们将于本周日 02:00-04:00 进行系统维护，期间服务暂停。",
             "positionNumber": 2},
            {"type": "BUTTON", "content": "了解详情", "actionType": "OPEN_BROWSER",
             "action": {"target": "https://example.com/notice", "merchantName": "cardsms"}, "positionNumber": 3},
        ]}]},
    }),
]
PURPOSES = {code: purpose for code, _, purpose, _, _ in _PRESETS}


def cover_png(code: str) -> bytes | None:
    """A 640x360 two-tone PNG for a preset's image (generated, so no binary files in the repository)."""
    colour = next((c for k, _, _, c, _ in _PRESETS if k == code), None)
    if colour is None:
        return None
    width, height = 640, 360
    light = tuple(min(255, v + 90) for v in colour)
    rows = b"".join(b"\x00" + bytes(colour if y < height * 2 // 3 else light) * width for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def _materialise(value: Any, base: str) -> Any:
    """A copy of the template with `{base}` in every string replaced by the server's base URL."""
    if isinstance(value, dict):
        return {k: _materialise(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialise(v, base) for v in value]
    return value.replace("{base}", base) if isinstance(value, str) else value


async def ensure_public_templates(svc: Services) -> None:
    """Create (or refresh the media URLs of) the preset templates; every vendor approves them."""
    from cardsms.services.templates import insert_template

    async with svc.hold_writer() as conn:
        for code, name, purpose, _, raw in _PRESETS:
            card = parse_card_template(name, _materialise(raw, svc.settings.base_url), {})
            row = (await conn.execute(select(templates.c.id).where(
                templates.c.account_id == PUBLIC_ACCOUNT, templates.c.code == code))).first()
            if row is not None:
                await conn.execute(update(templates).where(templates.c.id == row[0]).values(body=card.to_wire()))
                continue
            template_id, _ = await insert_template(conn, svc, PUBLIC_ACCOUNT, "card", {
                "name": name, "template_type": card.card_type, "content": "", "sign_name": card.sign_name,
                "remark": purpose, "factorys": ",".join(v.value for v in Vendor), "body": card.to_wire()})
            await conn.execute(update(templates).where(templates.c.id == template_id).values(code=code))
            await review.submit(conn, svc, PUBLIC_ACCOUNT, "template", template_id,
                                {v.value: (ReviewState.APPROVED, "") for v in Vendor})


async def list_public(svc: Services) -> list[Any]:
    async with svc.read() as conn:
        return list((await conn.execute(select(templates).where(
            templates.c.account_id == PUBLIC_ACCOUNT, templates.c.kind == "card").order_by(templates.c.id)
        )).mappings().all())
