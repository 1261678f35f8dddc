"""Card capability: can this number show this card template?

A number supports the card when its handset renders cards and its vendor approved the template.
"""

from __future__ import annotations

import re

from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, normalise_mainland_mobile
from cardsms.services import review
from cardsms.services.core import Services
from cardsms.services.templates import get_template
from cardsms.vendors.gateway import ReviewState

MAX_MOBILES = 1000
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")


async def approved_vendors(svc: Services, account_id: int, template_code: str) -> set[str]:
    async with svc.read() as conn:
        row = await get_template(conn, account_id, template_code, ("card",))
        rows = await review.vendor_reviews(conn, account_id, "template", row["id"])
    return {r["vendor"] for r in rows if r["state"] == ReviewState.APPROVED}


async def card_support(
    svc: Services, account_id: int, template_code: str, mobiles: list[str], encrypt_type: str = "NORMAL"
) -> list[tuple[str, bool]]:
    """(mobile as given, supported) for each number, in order."""
    if not mobiles:
        raise CardsmsError("MissingParameter", "param Mobiles is required (at least one number)")
    if len(mobiles) > MAX_MOBILES:
        raise CardsmsError("InvalidParameter", f"param Mobiles: at most {MAX_MOBILES} numbers per call, "
                           f"got {len(mobiles)}")
    if encrypt_type not in ("NORMAL", "SHA1"):
        raise CardsmsError("InvalidParameter", f"param EncryptType must be NORMAL or SHA1, got {encrypt_type!r}")
    hashes = []
    for i, raw in enumerate(mobiles, 1):
        if encrypt_type == "SHA1":
            if not _SHA1.fullmatch(raw):
                raise CardsmsError("InvalidParameter", f"param Mobiles[{i}] {raw!r} is not a SHA1 hex digest")
            hashes.append(raw.lower())
        else:
            try:
                hashes.append(normalise_mainland_mobile(raw).sha1)
            except InvalidNumber as exc:
                raise CardsmsError("InvalidParameter", f"param Mobiles[{i}]: {exc}") from None
    vendors = await approved_vendors(svc, account_id, template_code)
    out = []
    for raw, digest in zip(mobiles, hashes, strict=True):
        handset = svc.handsets.lookup(digest)
        ok = handset.card_capable and handset.vendor is not None and handset.vendor.value in vendors
        out.append((raw, ok))
    return out
