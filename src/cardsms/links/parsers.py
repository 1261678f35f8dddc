"""Who may mark a card rendered: vendor parsers that prove it, and a bound on what one address can count.

A vendor's parser fetches a card with `X-Card-Parser: <vendor>`; on a group link it names the recipient in
`X-Card-Mobile`, and that fetch is the recipient's render receipt. Anyone holding the link could send those
headers, so a fetch counts as a render only when it carries `X-Card-Parser-Signature`: the HMAC-SHA256 of
`<code>\\n<mobile>` under the vendor's key, which `cardsms parser-key --vendor V` prints for the operator to
give that vendor (keys derive from CARDSMS_PARSER_SECRET, by default from the server's secret key). Other
fetches still get the card, counted as an open of the link, not as anyone's render.

`OpenLimiter` bounds the opens one address can add to one link's counts (CARDSMS_LINK_OPENS_PER_MINUTE): more
are answered as usual but not counted, so a script cannot inflate a link's statistics or flood the writer."""

from __future__ import annotations

import hashlib
import hmac

from cardsms.domain.recent import RecentEvents

SIGNATURE_HEADER = "x-card-parser-signature"


def parser_key(secret: str, vendor: str) -> str:
    """The key of one vendor's parser."""
    return hmac.new(secret.encode(), f"card-parser:{vendor}".encode(), hashlib.sha256).hexdigest()[:40]


def parser_signature(key: str, code: str, mobile: str) -> str:
    return hmac.new(key.encode(), f"{code}\n{mobile}".encode(), hashlib.sha256).hexdigest()


def verified(secret: str, vendor: str, code: str, mobile: str, signature: str) -> bool:
    """True when `signature` proves the fetch came from `vendor`'s parser, for this link and recipient."""
    if not vendor or not signature:
        return False
    return hmac.compare_digest(parser_signature(parser_key(secret, vendor), code, mobile), signature.lower())


class OpenLimiter:
    """At most `per_minute` counted opens per (link, address) in any 60 seconds; at most `max_keys` pairs kept
    (domain/recent.py); `per_minute` 0 = no limit."""

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self.per_minute = per_minute
        self._opens = RecentEvents(60.0, max_keys)

    def admit(self, link_id: int, address: str) -> bool:
        if self.per_minute <= 0:
            return True
        if self._opens.count((link_id, address)) >= self.per_minute:
            return False
        self._opens.add((link_id, address))
        return True
