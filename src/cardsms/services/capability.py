"""Card capability: can this number show this card template?

A number supports the card when its handset renders cards and its vendor approved the template.
"""

from __future__ import annotations

import re

from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, normalise_mainland_mobile
from cardsms.domain.vendors import approved_vendors, shows_card
from cardsms.services import review
from cardsms.services.core import Services
from cardsms.services.templates import get_template

MAX_MOBILES = 1000
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")


async def template_vendors(svc: Services, account_id: int, template_code: str) -> frozenset[str]:
    """The vendors that approved the account's card template."""
    async with svc.read() as conn:
        row = await get_template(conn, account_id, template_code, ("card",))
        return approved_vendors(await review.vendor_reviews(conn, account_id, "template", row["id"]))


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
    vendors = await template_vendors(svc, account_id, template_code)
    return [(raw, shows_card(svc.handsets.lookup(digest), vendors))
            for raw, digest in zip(mobiles, hashes, strict=True)]
