"""The card types (cardType 1-20): their names, what a page of each holds (TYPE_RULES), and the table of
docs/cards.md made from them."""

from __future__ import annotations

from dataclasses import dataclass

CARD_TYPE_NAMES: dict[int, str] = {
    1: "horizontal-slide 1", 2: "horizontal-slide 2", 3: "general notification", 4: "video",
    5: "image-text", 6: "trip notification", 7: "multi image-text", 8: "red packet", 9: "news",
    10: "e-commerce", 11: "carousel 16:9", 12: "carousel 1:1", 13: "carousel 48:65",
    14: "video image-text", 15: "long text", 16: "personalised red packet",
    17: "e-commerce multi-product", 18: "image-text video", 19: "single coupon", 20: "multi coupon",
}

TEMPLATE_NAME_MAX = 19  # "param templateName length must < 20"
TITLE_MAX = 30
BODY_MAX = 200
LONG_BODY_MAX = 1000
BUTTON_MAX = 16
MAX_PARAMS = 20
MAX_VARS_PER_TEXT = 3
TARGET_MAX = 1000


@dataclass(frozen=True, slots=True)
class TypeRule:
    """What one page of a card type holds: (min, max) counts of each element kind."""

    pages: tuple[int, int]
    images: tuple[int, int]
    videos: tuple[int, int]
    titles: tuple[int, int]
    bodies: tuple[int, int]
    buttons: tuple[int, int]
    max_lines: int  # 1 = line breaks not allowed
    ratio: str | None  # the image ratio the type requires
    body_max: int = BODY_MAX
    same_count: tuple[str, ...] = ()  # element kinds that come in sets (one title and one price per product)
    personal: bool = False  # the title or a body must hold a parameter (filled per recipient)
    button_max: int = BUTTON_MAX


# Per page, (min, max) of: pages, images, videos, titles, bodies, buttons. Types 3, 4, 5, 7, 11-13 and 15 follow
# Alibaba's samples; the others are our reading of each type's name and sample picture (docs/cards.md):
# horizontal-slide cards are 2-10 swipeable pages of a square picture with a title (type 1 also a line of
# text); a trip notification is a title and up to 6 lines of details; a red packet a picture, a title, a line
# and one button (personalised: with the recipient's own value in it); news up to 4 picture-and-headline
# items; e-commerce one square product picture with its name, price lines and buttons (multi-product: 2-4
# products, a name and a price each); video image-text and image-text video a video and a 16:9 picture with
# their text; a coupon a title with its value and terms and a button to claim it (multi: 2-4 coupons, a name
# and a value each).
TYPE_RULES: dict[int, TypeRule] = {
    1: TypeRule((2, 10), (1, 1), (0, 0), (1, 1), (0, 1), (0, 1), 1, "oneToOne"),
    2: TypeRule((2, 10), (1, 1), (0, 0), (1, 1), (0, 0), (0, 1), 1, "oneToOne"),
    3: TypeRule((1, 1), (0, 1), (0, 0), (1, 1), (1, 3), (0, 2), 1, None),
    4: TypeRule((1, 1), (0, 0), (1, 1), (1, 1), (0, 1), (0, 2), 1, None),
    5: TypeRule((1, 1), (1, 1), (0, 0), (1, 1), (1, 1), (1, 2), 1, "sixteenToNine"),
    6: TypeRule((1, 1), (0, 1), (0, 0), (1, 1), (1, 6), (0, 2), 1, "threeToOne"),
    7: TypeRule((1, 1), (2, 4), (0, 0), (1, 4), (0, 4), (0, 2), 1, None),
    8: TypeRule((1, 1), (1, 1), (0, 0), (1, 1), (0, 1), (1, 1), 1, "fortyEightToSixtyFive", button_max=8),
    9: TypeRule((1, 1), (1, 4), (0, 0), (1, 4), (0, 4), (0, 1), 1, "sixteenToNine", same_count=("images", "titles")),
    10: TypeRule((1, 1), (1, 1), (0, 0), (1, 1), (1, 2), (1, 2), 1, "oneToOne"),
    11: TypeRule((2, 5), (1, 1), (0, 0), (1, 1), (0, 1), (0, 2), 11, "sixteenToNine"),
    12: TypeRule((2, 5), (1, 1), (0, 0), (1, 1), (0, 1), (0, 2), 11, "oneToOne"),
    13: TypeRule((2, 5), (1, 1), (0, 0), (1, 1), (0, 1), (0, 2), 11, "fortyEightToSixtyFive"),
    14: TypeRule((1, 1), (1, 1), (1, 1), (1, 1), (0, 1), (0, 2), 1, "sixteenToNine"),
    15: TypeRule((1, 1), (0, 1), (0, 0), (1, 1), (1, 1), (0, 2), 30, None, LONG_BODY_MAX),
    16: TypeRule((1, 1), (1, 1), (0, 0), (1, 1), (0, 1), (1, 1), 1, "fortyEightToSixtyFive", personal=True,
                 button_max=8),
    17: TypeRule((1, 1), (2, 4), (0, 0), (2, 4), (2, 4), (0, 2), 1, "oneToOne",
                 same_count=("images", "titles", "bodies")),
    18: TypeRule((1, 1), (1, 1), (1, 1), (1, 1), (0, 1), (0, 2), 1, "sixteenToNine"),
    19: TypeRule((1, 1), (0, 1), (0, 0), (1, 1), (1, 2), (1, 1), 1, "oneToOne", button_max=8),
    20: TypeRule((1, 1), (0, 1), (0, 0), (2, 4), (2, 4), (1, 2), 1, "oneToOne", same_count=("titles", "bodies"),
                 button_max=8),
}
SUPPORTED_CARD_TYPES = frozenset(TYPE_RULES)


def types_table() -> str:
    """docs/cards.md's table of the card types, made from TYPE_RULES and the vendor matrix (a test keeps the
    document in step with this data)."""
    from cardsms.domain.vendors import CARD_TYPE_SUPPORT, Vendor

    order = (Vendor.HUAWEI, Vendor.HONOR, Vendor.XIAOMI, Vendor.OPPO, Vendor.VIVO, Vendor.MEIZU)
    kinds = {"images": "images", "titles": "titles", "bodies": "texts"}

    def span(pair: tuple[int, int]) -> str:
        return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"

    rows = ["| cardType | type | pages | images | videos | titles | texts | buttons | image ratio | also | vendors |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in sorted(CARD_TYPE_NAMES):
        k = TYPE_RULES[t]
        extra = []
        if k.same_count:
            extra.append("as many " + " as ".join(kinds[c] for c in k.same_count))
        if k.personal:
            extra.append("a parameter in the title or text")
        if k.max_lines > 1:
            extra.append(f"line breaks, ≤{k.max_lines} lines")
        if k.body_max != BODY_MAX:
            extra.append(f"text ≤{k.body_max} chars")
        if k.button_max != BUTTON_MAX:
            extra.append(f"button labels ≤{k.button_max} chars")
        vendors = ", ".join(v.value for v in order if v in CARD_TYPE_SUPPORT[t])
        rows.append(f"| {t} | {CARD_TYPE_NAMES[t]} | {span(k.pages)} | {span(k.images)} | {span(k.videos)} | "
                    f"{span(k.titles)} | {span(k.bodies)} | {span(k.buttons)} | {k.ratio or '–'} | "
                    f"{'; '.join(extra) or '–'} | {vendors} |")
    return "\n".join(rows) + "\n"
